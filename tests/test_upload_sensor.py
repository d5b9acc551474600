"""Upload sensors: the Dagster sensor over real folders, S3 and manifests, and under the daemon.

The listing, cursor and decision logic is tested on its own in test_upload_watch.py.
"""

from __future__ import annotations

import json
import os
import textwrap
import time
from pathlib import Path

import dagster as dg
import pytest

from flux_depth_assets.defs.resources import CatalogsResource
from flux_depth_assets.defs.upload_sensors import build_upload_sensor
from flux_depth_assets.sources import SourceError

# --------------------------------------------------------------------------- the Dagster sensor


def write_config(
    tmp_path: Path, source_yaml: str, sensor_yaml: str = "{settle_seconds: 30}"
) -> Path:
    cfg = tmp_path / "cfg"
    (cfg / "catalogs").mkdir(parents=True, exist_ok=True)
    (cfg / "catalogs" / "c.yml").write_text(
        textwrap.dedent(f"""
        catalogs:
          - name: shop
            source: {source_yaml}
            upload_sensor: {sensor_yaml}
    """)
    )
    return cfg


def age(path: Path, seconds: float) -> None:
    t = time.time() - seconds
    os.utime(path, (t, t))


class Ticker:
    """Evaluates a catalog's sensor like the daemon does: cursor in, cursor out."""

    def __init__(self, cfg: Path, instance: dg.DagsterInstance, name: str = "shop"):
        from flux_depth_assets.config import load_project

        catalog = load_project(cfg).catalog(name)
        job = dg.define_asset_job("catalog_job")  # the real one is wired in build.py
        self.sensor = build_upload_sensor(catalog, job)
        self.resources = {"catalogs": CatalogsResource(config_dir=str(cfg))}
        self.instance = instance
        self.cursor: str | None = None

    def __call__(self) -> dg.SensorResult:
        ctx = dg.build_sensor_context(
            cursor=self.cursor, instance=self.instance, resources=self.resources
        )
        result = self.sensor(ctx)
        assert isinstance(result, dg.SensorResult)
        if result.cursor is not None:
            self.cursor = result.cursor
        return result


def skip_text(result: dg.SensorResult) -> str:
    assert not result.run_requests, result.run_requests
    assert result.skip_reason is not None
    return result.skip_reason.skip_message or ""


@pytest.fixture
def instance():
    return dg.DagsterInstance.ephemeral()


def test_local_folder_across_first_run_nothing_new_some_new_uploading_all_new_deleted(
    tmp_path, instance
):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(3):
        (photos / f"p{i}.jpg").write_bytes(b"x" * (i + 1))
        age(photos / f"p{i}.jpg", 3600)
    (photos / ".hidden.jpg").write_bytes(b"h")
    (photos / "notes.txt").write_bytes(b"n")
    ticker = Ticker(write_config(tmp_path, "{type: local_dir, path: photos}"), instance)

    # first run: one request, partition registered in the same result, catalog-tagged
    r = ticker()
    [req] = r.run_requests
    assert req.partition_key == "shop" and req.run_key.startswith("upload:shop:1:")
    assert req.partition_key == "shop" and req.tags["flux_depth/new_objects"] == "3"
    assert [p.partition_keys for p in r.dynamic_partitions_requests] == [["shop"]]
    instance.add_dynamic_partitions("catalog", ["shop"])  # what the daemon does with the request

    # nothing new
    assert skip_text(ticker()).startswith("no new, changed or deleted objects")

    # some new
    (photos / "new.jpg").write_bytes(b"n1")
    age(photos / "new.jpg", 120)
    r = ticker()
    assert len(r.run_requests) == 1 and r.run_requests[0].tags["flux_depth/new_objects"] == "1"
    assert not r.dynamic_partitions_requests

    # still uploading: the fresh file waits
    (photos / "uploading.jpg").write_bytes(b"partial")
    assert "waiting for uploads to settle" in skip_text(ticker())
    age(photos / "uploading.jpg", 120)
    assert ticker().run_requests

    # all new: every file replaced by new ones
    for p in photos.glob("*.jpg"):
        p.unlink()
    for i in range(4):
        (photos / f"batch2_{i}.jpg").write_bytes(b"y")
        age(photos / f"batch2_{i}.jpg", 60)
    r = ticker()
    assert r.run_requests and r.run_requests[0].tags["flux_depth/new_objects"] == "4"

    # deleted
    (photos / "batch2_0.jpg").unlink()
    r = ticker()
    assert r.run_requests and r.run_requests[0].tags["flux_depth/new_objects"] == "0"
    assert skip_text(ticker()).startswith("no new")

    keys = json.loads(ticker.cursor)
    assert keys["n"] == 3 and keys["g"] == 5


def test_missing_source_fails_the_tick_and_removed_catalog_skips(tmp_path, instance):
    cfg = write_config(tmp_path, "{type: local_dir, path: nowhere}")
    ticker = Ticker(cfg, instance)
    with pytest.raises(SourceError, match="nowhere"):
        ticker()
    (cfg / "catalogs" / "c.yml").write_text(
        "catalogs:\n  - {name: other, source: {type: local_dir, path: x}}\n"
    )
    assert "no longer declared" in skip_text(ticker())
    (cfg / "catalogs" / "c.yml").write_text("catalogs: [\n")
    assert "config invalid" in skip_text(ticker())


def test_s3_prefix_sensor_against_moto(tmp_path, instance, s3_env):
    cfg = write_config(
        tmp_path,
        f"{{type: s3_prefix, bucket: {s3_env.bucket}, prefix: drop}}",
        "{settle_seconds: 0}",
    )
    ticker = Ticker(cfg, instance)
    assert "no objects" in skip_text(ticker())
    s3_env.put("drop/a.jpg", b"a")
    s3_env.put("drop/b.jpg", b"b")
    s3_env.put("elsewhere/c.jpg", b"c")
    r = ticker()
    assert r.run_requests[0].tags["flux_depth/new_objects"] == "2"
    assert skip_text(ticker()).startswith("no new")
    s3_env.put("drop/a.jpg", b"a2")  # overwritten: new ETag and LastModified
    assert ticker().run_requests
    s3_env.delete("drop/b.jpg")
    assert ticker().run_requests
    assert json.loads(ticker.cursor)["n"] == 1


def test_url_manifest_sensor_watches_the_manifest_file(tmp_path, instance):
    manifest = tmp_path / "urls.csv"
    manifest.write_text("url\nhttp://127.0.0.1:9/a.jpg\n")
    age(manifest, 600)
    ticker = Ticker(write_config(tmp_path, f"{{type: url_manifest, path: {manifest}}}"), instance)
    assert ticker().run_requests
    assert skip_text(ticker()).startswith("no new")
    manifest.write_text("url\nhttp://127.0.0.1:9/a.jpg\nhttp://127.0.0.1:9/b.jpg\n")
    age(manifest, 300)
    assert ticker().run_requests


# --------------------------------------------------------------------------- under the sensor daemon


@pytest.mark.slow
def test_sensor_daemon_launches_one_run_and_a_retried_tick_does_not_double_it(tmp_path):
    """The real daemon loop: sensor tick → partition added → run queued → run succeeds.
    Then the cursor is put back (a tick that crashed after requesting its run): the re-evaluated
    tick asks for the same run key and Dagster launches nothing new."""
    import datetime as dt
    import logging

    from dagster._core.remote_origin import InProcessCodeLocationOrigin
    from dagster._core.scheduler.instigation import SensorInstigatorData
    from dagster._core.storage.dagster_run import DagsterRunStatus, RunsFilter
    from dagster._core.test_utils import InProcessTestWorkspaceLoadTarget, freeze_time
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._daemon.sensor import execute_sensor_iteration

    from tests import images
    from tests.test_backfill import drain_queue
    from tests.test_concurrency import QUEUE_LIMITS

    photos = tmp_path / "photos"
    photos.mkdir()
    for seed in (1, 2):
        (photos / f"p{seed}.jpg").write_bytes(images.jpeg(seed=seed))
    cfg = write_config(
        tmp_path,
        "{type: local_dir, path: photos}",
        "{settle_seconds: 0, minimum_interval_seconds: 30}",
    )
    code = tmp_path / "sensor_defs.py"
    code.write_text(
        textwrap.dedent(f"""
        from flux_depth_assets.defs.build import build_definitions
        from flux_depth_assets.defs.resources import CatalogsResource, StorageResource
        from tests.fakes import CountingProviderResource

        defs = build_definitions({{
            "catalogs": CatalogsResource(config_dir={str(cfg)!r}),
            "storage": StorageResource(root={str(tmp_path / "home")!r}),
            "depth_provider": CountingProviderResource(),
        }})
    """)
    )
    overrides = {
        "run_launcher": {
            "module": "dagster._core.launcher.sync_in_memory_run_launcher",
            "class": "SyncInMemoryRunLauncher",
        },
        **QUEUE_LIMITS,
    }
    logger = logging.getLogger("test_upload_sensor")
    start = dt.datetime.now(dt.UTC)
    with dg.instance_for_test(overrides=overrides) as instance:
        origin = InProcessCodeLocationOrigin(
            LoadableTargetOrigin(
                python_file=str(code), attribute="defs", working_directory=str(Path.cwd())
            )
        )
        with WorkspaceProcessContext(instance, InProcessTestWorkspaceLoadTarget(origin)) as wpc:

            def tick_at(minutes: float) -> None:
                with freeze_time(start + dt.timedelta(minutes=minutes)):
                    list(execute_sensor_iteration(wpc, logger, None, None))
                drain_queue(wpc)

            def runs():
                return instance.get_runs(RunsFilter(tags={"flux_depth/trigger": "upload_sensor"}))

            def sensor_state():
                [state] = [
                    s for s in instance.all_instigator_state() if s.name == "shop__upload_sensor"
                ]
                return state

            tick_at(0)
            [run] = runs()
            assert run.status == DagsterRunStatus.SUCCESS
            assert run.tags["dagster/partition"] == "shop" and "flux_depth/catalog" not in run.tags
            assert instance.has_dynamic_partition("catalog", "shop")

            tick_at(1)  # nothing new
            assert len(runs()) == 1

            (photos / "p3.jpg").write_bytes(images.jpeg(seed=3))
            age(photos / "p3.jpg", 5)
            before_second = sensor_state().instigator_data.cursor
            tick_at(2)
            assert len(runs()) == 2
            second_key = runs()[0].tags["dagster/run_key"]
            after_second = sensor_state().instigator_data.cursor

            # The crash-after-request case: the cursor is the one before the second request.
            state = sensor_state()
            instance.update_instigator_state(
                state.with_data(
                    SensorInstigatorData(
                        last_tick_timestamp=state.instigator_data.last_tick_timestamp,
                        min_interval=state.instigator_data.min_interval,
                        cursor=before_second,
                        sensor_type=state.instigator_data.sensor_type,
                    )
                )
            )
            tick_at(3)
            assert len(runs()) == 2  # same run key: Dagster did not launch it again
            assert runs()[0].tags["dagster/run_key"] == second_key
            assert sensor_state().instigator_data.cursor == after_second  # same decision again

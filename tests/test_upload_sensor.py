"""Upload sensors: the pure tick logic, then the Dagster sensor over real folders, S3 and manifests."""

from __future__ import annotations

import json
import os
import random
import textwrap
import time
from pathlib import Path

import dagster as dg
import pytest

from flux_depth_assets.config.models import LocalDirSource, UploadSensorConfig
from flux_depth_assets.defs.constants import CATALOG_TAG
from flux_depth_assets.defs.resources import CatalogsResource
from flux_depth_assets.defs.upload_sensors import (
    EDGE_CAP,
    PENDING_CAP,
    Fingerprint,
    UploadCursor,
    build_upload_sensor,
    evaluate_tick,
    walk_local_dir,
)
from flux_depth_assets.sources import SourceError, list_objects
from tests.moto_s3 import moto_endpoint, s3_env  # noqa: F401  (fixtures)

NOW = 1_800_000_000.0
SETTINGS = UploadSensorConfig(settle_seconds=30, first_tick_max_files=1000)


def fps(n: int, start: int = 0, mtime: float = NOW - 10**6, size: int = 100) -> list[Fingerprint]:
    return [Fingerprint(f"img_{i:06d}.jpg", size, mtime + i) for i in range(start, start + n)]


def tick(listing, prev=None, now=NOW, settings=SETTINGS):
    return evaluate_tick("shop", listing, prev, settings, now)


# --------------------------------------------------------------------------- pure tick logic


def test_first_tick_requests_a_run_then_nothing_new_skips():
    listing = fps(10)
    first = tick(listing)
    assert first.run_key and first.run_key.startswith("upload:shop:1:") and first.new == 10
    again = tick(listing, first.cursor)
    assert again.run_key is None and again.skip_reason.startswith("no new, changed or deleted")
    assert again.cursor == first.cursor


def test_some_new_objects_request_one_new_run_with_a_new_key():
    first = tick(fps(10))
    second = tick(fps(13), first.cursor)
    assert second.run_key and second.run_key != first.run_key and second.new == 3
    assert not second.other_changes and second.cursor.gen == 2


def test_all_new_replacing_every_object():
    first = tick(fps(10))
    replaced = tick(fps(10, start=100), first.cursor)
    assert replaced.run_key and replaced.new == 10 and replaced.other_changes  # old ones went away


def test_a_still_uploading_object_waits_for_settle_seconds():
    first = tick(fps(5))
    uploading = fps(5) + [Fingerprint("big.jpg", 1000, NOW - 2)]
    wait = tick(uploading, first.cursor)
    assert wait.run_key is None and "waiting for uploads to settle" in wait.skip_reason
    assert wait.settling == 1 and wait.cursor.n == first.cursor.n  # state not advanced
    grown = fps(5) + [Fingerprint("big.jpg", 5000, NOW - 2)]
    still = tick(grown, wait.cursor, now=NOW + 60)  # old enough now, but bigger than last tick
    assert still.run_key is None and still.settling == 1
    done = tick(grown, still.cursor, now=NOW + 90)
    assert done.run_key and done.new == 1


def test_an_object_still_growing_with_an_old_mtime_is_not_taken():
    first = tick(fps(5))
    young = tick(fps(5) + [Fingerprint("slow.jpg", 10, NOW - 1)], first.cursor)
    assert young.cursor.pending  # its size is remembered
    grew = tick(fps(5) + [Fingerprint("slow.jpg", 20, NOW - 600)], young.cursor, now=NOW + 5)
    assert grew.run_key is None and grew.settling == 1
    stable = tick(fps(5) + [Fingerprint("slow.jpg", 20, NOW - 600)], grew.cursor, now=NOW + 10)
    assert stable.run_key and stable.new == 1


def test_settling_wait_is_bounded_by_max_settle_wait_seconds():
    settings = UploadSensorConfig(settle_seconds=30, max_settle_wait_seconds=120)
    first = tick(fps(5), settings=settings)
    busy = lambda t: fps(6) + [Fingerprint(f"live{t}.jpg", 1, t - 1)]  # noqa: E731
    w1 = tick(busy(NOW), first.cursor, now=NOW, settings=settings)
    assert w1.run_key is None
    w2 = tick(busy(NOW + 60), w1.cursor, now=NOW + 60, settings=settings)
    assert w2.run_key is None
    go = tick(busy(NOW + 121), w2.cursor, now=NOW + 121, settings=settings)
    assert go.run_key and go.new >= 1 and go.settling == 1


def test_deleted_objects_request_a_refresh_unless_ignored():
    first = tick(fps(10))
    deleted = tick(fps(8), first.cursor)
    assert deleted.run_key and deleted.new == 0 and deleted.other_changes
    ignore = UploadSensorConfig(on_delete="ignore")
    skipped = tick(fps(8), first.cursor, settings=ignore)
    assert skipped.run_key is None and "2 objects deleted" in skipped.skip_reason
    assert tick(fps(8), skipped.cursor, settings=ignore).skip_reason.startswith("no new")


def test_a_late_object_with_an_old_mtime_is_still_detected():
    first = tick(fps(10))
    moved_in = fps(10) + [Fingerprint("archive/old.jpg", 77, NOW - 100 * 86400)]  # `mv` keeps mtime
    late = tick(moved_in, first.cursor)
    assert late.run_key and late.new == 0 and late.other_changes


def test_in_place_change_with_the_same_mtime_is_detected_by_size_or_etag():
    first = tick(fps(3))
    changed = fps(3)
    changed[1] = Fingerprint(changed[1].key, changed[1].size, changed[1].mtime, etag="v2")
    assert tick(changed, first.cursor).run_key


def test_a_new_object_at_exactly_the_high_water_mark_counts_as_new():
    same = NOW - 100
    first = tick([Fingerprint("a.jpg", 1, same)])
    second = tick([Fingerprint("a.jpg", 1, same), Fingerprint("b.jpg", 1, same)], first.cursor)
    assert second.run_key and second.new == 1 and not second.other_changes


def test_listing_order_never_changes_the_cursor_or_the_run_key():
    listing = fps(500) + [Fingerprint("same-a.jpg", 1, NOW - 50), Fingerprint("same-b.jpg", 2, NOW - 50)]
    base = tick(listing)
    for seed in range(5):
        shuffled = listing[:]
        random.Random(seed).shuffle(shuffled)
        other = tick(shuffled)
        assert other.cursor.to_json() == base.cursor.to_json() and other.run_key == base.run_key
        nxt = shuffled + fps(3, start=9000)
        assert tick(nxt, other.cursor).run_key == tick(sorted(nxt, key=lambda f: f.key),
                                                       base.cursor).run_key


def test_a_retried_tick_asks_for_the_same_run_key():
    first = tick(fps(10))
    a = tick(fps(12), first.cursor)
    b = tick(fps(12), UploadCursor.from_json(first.cursor.to_json()))  # cursor not committed
    assert a.run_key == b.run_key


def test_state_returning_to_an_earlier_listing_gets_a_fresh_key():
    k1 = tick(fps(10))
    k2 = tick(fps(11), k1.cursor)
    k3 = tick(fps(10), k2.cursor)  # the new file was deleted again
    k4 = tick(fps(11), k3.cursor)  # and re-uploaded unchanged
    keys = [k.run_key for k in (k1, k2, k3, k4)]
    assert all(keys) and len(set(keys)) == 4


def test_first_tick_over_a_large_catalog_records_a_baseline_only():
    settings = UploadSensorConfig(first_tick_max_files=100)
    first = tick(fps(150), settings=settings)
    assert first.run_key is None and "first_tick_max_files=100" in first.skip_reason
    assert "backfill catalog 'shop'" in first.skip_reason
    later = tick(fps(152), first.cursor, settings=settings)
    assert later.run_key and later.new == 2


def test_first_tick_waits_for_uploads_then_runs():
    listing = fps(3) + [Fingerprint("up.jpg", 5, NOW - 1)]
    first = tick(listing)
    assert first.run_key is None and first.skip_reason.startswith("first tick: waiting")
    assert first.cursor.n == -1
    run = tick(listing, UploadCursor.from_json(first.cursor.to_json()), now=NOW + 60)
    assert run.run_key and run.new == 4


def test_empty_source_first_tick_then_uploads():
    empty = tick([])
    assert empty.run_key is None and "no objects" in empty.skip_reason
    assert tick(fps(2), empty.cursor).new == 2


def test_cursor_is_compact_json_and_bounded_for_100k_objects():
    listing = fps(100_000)
    first = tick(listing, settings=UploadSensorConfig(first_tick_max_files=10))
    text = first.cursor.to_json()
    assert json.loads(text)["n"] == 100_000 and len(text) < 300
    # Worst cases: many objects sharing the newest mtime, many objects still uploading.
    flat = [Fingerprint(f"k{i}", 1, NOW - 100) for i in range(5000)]
    uploading = [Fingerprint(f"u{i}", 1, NOW - 1) for i in range(5000)]
    worst = tick(flat + uploading).cursor
    assert len(worst.edge) == EDGE_CAP and len(worst.pending) == PENDING_CAP
    assert len(worst.to_json()) < 10_000


@pytest.mark.parametrize("text", ["", "not json", '{"v": 99}', '{"v": 1, "n": "x"}', "[]"])
def test_unreadable_cursors_mean_first_tick(text):
    assert UploadCursor.from_json(text) is None


def test_cursor_json_round_trip():
    cur = tick(fps(3) + [Fingerprint("u.jpg", 1, NOW - 1)], tick(fps(3)).cursor).cursor
    assert UploadCursor.from_json(cur.to_json()) == cur


# --------------------------------------------------------------------------- the Dagster sensor


def write_config(tmp_path: Path, source_yaml: str, sensor_yaml: str = "{settle_seconds: 30}") -> Path:
    cfg = tmp_path / "cfg"
    (cfg / "catalogs").mkdir(parents=True, exist_ok=True)
    (cfg / "catalogs" / "c.yml").write_text(textwrap.dedent(f"""
        catalogs:
          - name: shop
            source: {source_yaml}
            upload_sensor: {sensor_yaml}
    """))
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
        ctx = dg.build_sensor_context(cursor=self.cursor, instance=self.instance,
                                      resources=self.resources)
        result = self.sensor(ctx)
        assert isinstance(result, dg.SensorResult)
        if result.cursor is not None:
            self.cursor = result.cursor
        return result


def skip_text(result: dg.SensorResult) -> str:
    assert not result.run_requests, result.run_requests
    return result.skip_reason.skip_message


@pytest.fixture
def instance():
    return dg.DagsterInstance.ephemeral()


def test_local_folder_across_first_run_nothing_new_some_new_uploading_all_new_deleted(tmp_path, instance):
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
    assert req.tags[CATALOG_TAG] == "shop" and req.tags["flux_depth/new_objects"] == "3"
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


def test_walk_agrees_with_the_local_dir_listing(tmp_path):
    root = tmp_path / "photos"
    (root / "sub" / ".hidden_dir").mkdir(parents=True)
    outside = tmp_path / "outside.jpg"
    outside.write_bytes(b"o")
    for rel in ["a.jpg", "B.PNG", "sub/c.webp", "sub/.d.jpg", "sub/.hidden_dir/e.jpg", "f.gif"]:
        (root / rel).write_bytes(b"1")
    (root / "link_in.jpg").symlink_to(root / "a.jpg")
    (root / "link_out.jpg").symlink_to(outside)
    (root / "dangling.jpg").symlink_to(root / "nope.jpg")
    for recursive in (True, False):
        src = LocalDirSource(path=str(root), recursive=recursive)
        walked = sorted((f.key, f.size) for f in walk_local_dir(src))
        listed = sorted((o.key, o.size) for o in list_objects(src) if o.rejected is None)
        assert walked == listed and walked
    with pytest.raises(SourceError, match="does not exist"):
        walk_local_dir(LocalDirSource(path=str(tmp_path / "missing")))


def test_missing_source_fails_the_tick_and_removed_catalog_skips(tmp_path, instance):
    cfg = write_config(tmp_path, "{type: local_dir, path: nowhere}")
    ticker = Ticker(cfg, instance)
    with pytest.raises(SourceError, match="nowhere"):
        ticker()
    (cfg / "catalogs" / "c.yml").write_text(
        "catalogs:\n  - {name: other, source: {type: local_dir, path: x}}\n")
    assert "no longer declared" in skip_text(ticker())
    (cfg / "catalogs" / "c.yml").write_text("catalogs: [\n")
    assert "config invalid" in skip_text(ticker())


def test_s3_prefix_sensor_against_moto(tmp_path, instance, s3_env):
    cfg = write_config(tmp_path, f"{{type: s3_prefix, bucket: {s3_env.bucket}, prefix: drop}}",
                       "{settle_seconds: 0}")
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


def test_new_objects_are_counted_exactly_when_thousands_share_the_mark():
    same = NOW - 5000
    crowd = [Fingerprint(f"c{i}.jpg", 1, same) for i in range(3000)]  # e.g. one bulk `cp -p`
    first = tick(crowd)
    assert first.cursor.hn == 3000 and len(first.cursor.edge) == EDGE_CAP
    more = tick(crowd + [Fingerprint(f"n{i}.jpg", 1, same) for i in range(7)], first.cursor)
    assert more.run_key and more.new == 7 and not more.other_changes
    newer = tick(crowd + [Fingerprint("later.jpg", 1, same + 1)], first.cursor)
    assert newer.new == 1 and not newer.other_changes
    fewer = tick(crowd[1:], first.cursor)
    assert fewer.run_key and fewer.new == 0 and fewer.other_changes


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
    cfg = write_config(tmp_path, "{type: local_dir, path: photos}",
                       "{settle_seconds: 0, minimum_interval_seconds: 30}")
    code = tmp_path / "sensor_defs.py"
    code.write_text(textwrap.dedent(f"""
        from flux_depth_assets.defs.build import build_definitions
        from flux_depth_assets.defs.resources import CatalogsResource, StorageResource
        from tests.fakes import CountingProviderResource

        defs = build_definitions({{
            "catalogs": CatalogsResource(config_dir={str(cfg)!r}),
            "storage": StorageResource(root={str(tmp_path / "home")!r}),
            "depth_provider": CountingProviderResource(),
        }})
    """))
    overrides = {"run_launcher": {"module": "dagster._core.launcher.sync_in_memory_run_launcher",
                                  "class": "SyncInMemoryRunLauncher"}, **QUEUE_LIMITS}
    logger = logging.getLogger("test_upload_sensor")
    start = dt.datetime.now(dt.timezone.utc)
    with dg.instance_for_test(overrides=overrides) as instance:
        origin = InProcessCodeLocationOrigin(LoadableTargetOrigin(
            python_file=str(code), attribute="defs", working_directory=str(Path.cwd())))
        with WorkspaceProcessContext(instance, InProcessTestWorkspaceLoadTarget(origin)) as wpc:
            def tick_at(minutes: float) -> None:
                with freeze_time(start + dt.timedelta(minutes=minutes)):
                    list(execute_sensor_iteration(wpc, logger, None, None))
                drain_queue(wpc)

            def runs():
                return instance.get_runs(RunsFilter(tags={"flux_depth/trigger": "upload_sensor"}))

            def sensor_state():
                [state] = [s for s in instance.all_instigator_state()
                           if s.name == "shop__upload_sensor"]
                return state

            tick_at(0)
            [run] = runs()
            assert run.status == DagsterRunStatus.SUCCESS
            assert run.tags[CATALOG_TAG] == "shop" and run.tags["dagster/partition"] == "shop"
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
            instance.update_instigator_state(state.with_data(SensorInstigatorData(
                last_tick_timestamp=state.instigator_data.last_tick_timestamp,
                min_interval=state.instigator_data.min_interval,
                cursor=before_second, sensor_type=state.instigator_data.sensor_type)))
            tick_at(3)
            assert len(runs()) == 2  # same run key: Dagster did not launch it again
            assert runs()[0].tags["dagster/run_key"] == second_key
            assert sensor_state().instigator_data.cursor == after_second  # same decision again

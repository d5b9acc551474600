"""Two runs of one catalog at once: the run queue keeps them apart, and storage stays whole anyway."""

from __future__ import annotations

import shutil
import textwrap
import threading
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest
import yaml
from dagster._core.storage.dagster_run import DagsterRunStatus
from dagster._core.test_utils import create_run_for_test

from flux_depth_assets.defs.runner import materialize_catalog

DOC = Path(__file__).resolve().parents[1] / "docs" / "sensors_and_s3.md"
MARKER = "<!-- dagster.yaml: run queue"


def documented_queue_limits() -> dict:
    """The dagster.yaml block the docs tell people to use, so docs and test cannot drift."""
    text = DOC.read_text()
    block = text[text.index(MARKER) :]
    block = block[block.index("```yaml") + len("```yaml") :]
    return yaml.safe_load(block[: block.index("```")])


# At most one run per catalog at a time, keyed on Dagster's own `dagster/partition` tag (= the
# catalog), which runs of catalog_job and of the implicit asset job (asset-graph backfills) carry.
QUEUE_LIMITS = documented_queue_limits()


def test_documented_limits_key_on_the_catalog_tag():
    limits = QUEUE_LIMITS["concurrency"]["runs"]["tag_concurrency_limits"]
    assert [lim["key"] for lim in limits] == ["dagster/partition"]
    assert all(
        lim["limit"] == 1 and lim["value"] == {"applyLimitPerUniqueValue": True} for lim in limits
    )


def test_run_queue_allows_one_run_per_catalog(tmp_path):
    from dagster._core.remote_origin import (
        RegisteredCodeLocationOrigin,
        RemoteJobOrigin,
        RemoteRepositoryOrigin,
    )
    from dagster._core.test_utils import MockedRunLauncher  # records launches, executes nothing
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import EmptyWorkspaceTarget
    from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import (
        QueuedRunCoordinatorDaemon,
    )

    overrides = {
        **QUEUE_LIMITS,
        "run_launcher": {"module": "dagster._core.test_utils", "class": "MockedRunLauncher"},
    }
    with dg.instance_for_test(overrides=overrides) as instance:
        assert isinstance(instance.run_launcher, MockedRunLauncher)
        origin = RemoteJobOrigin(
            RemoteRepositoryOrigin(
                RegisteredCodeLocationOrigin("flux_depth_assets"), "__repository__"
            ),
            "catalog_job",
        )
        runs = {}
        for name, catalog in [("a1", "a"), ("a2", "a"), ("b1", "b"), ("other", None)]:
            tags = {"dagster/partition": catalog} if catalog else {}
            runs[name] = create_run_for_test(
                instance,
                job_name="catalog_job",
                tags=tags,
                status=DagsterRunStatus.QUEUED,
                remote_job_origin=origin,
            )
        with WorkspaceProcessContext(instance, EmptyWorkspaceTarget()) as wpc:
            daemon = QueuedRunCoordinatorDaemon(interval_seconds=1)

            def launched() -> set[str]:
                ids = {r.run_id for r in instance.run_launcher.queue()}
                return {k for k, r in runs.items() if r.run_id in ids}

            list(daemon.run_iteration(wpc))
            assert launched() == {"a1", "b1", "other"}  # a2 waits for a1
            list(daemon.run_iteration(wpc))
            assert launched() == {"a1", "b1", "other"}
            instance.report_run_failed(instance.get_run_by_id(runs["a1"].run_id))
            list(daemon.run_iteration(wpc))
            assert launched() == {"a1", "a2", "b1", "other"}


def catalog_config(tmp_path, demo_dir):
    shutil.copytree(demo_dir, tmp_path / "photos")
    cfg = tmp_path / "cfg"
    (cfg / "catalogs").mkdir(parents=True)
    (cfg / "catalogs" / "c.yml").write_text(
        textwrap.dedent("""
        catalogs:
          - {name: shop, source: {type: local_dir, path: photos}}
    """)
    )
    return cfg


@pytest.mark.slow
def test_two_runs_of_one_catalog_at_once_leave_consistent_storage(tmp_path, demo_dir):
    """Without the queue (e.g. two `flux-depth materialize` in two shells) nothing is corrupted:
    every file and table is replaced atomically and outputs are content-addressed."""
    cfg = catalog_config(tmp_path, demo_dir)
    outcomes = []
    barrier = threading.Barrier(2)

    def run():
        with dg.DagsterInstance.ephemeral() as instance:  # disposed in the thread that made it
            barrier.wait()
            outcomes.append(
                materialize_catalog(
                    "shop",
                    config_dir=cfg,
                    instance=instance,
                    assets=["source_images", "depth_maps"],
                )
            )

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=240)
    assert len(outcomes) == 2 and all(o.success for o in outcomes), [o.error for o in outcomes]
    home = tmp_path / "home"
    assert not [p for p in home.rglob("*") if ".tmp-" in p.name]  # no temp files left behind
    src = pq.read_table(home / "tables/source_images/catalog=shop/part-0.parquet").to_pylist()
    depth = pq.read_table(home / "tables/depth_maps/catalog=shop/part-0.parquet").to_pylist()
    n = len(list(demo_dir.iterdir()))
    assert len(src) == n and len(depth) == n
    assert {r["image_id"] for r in depth} == {r["image_id"] for r in src}
    for row in depth:
        assert (home / row["depth_path"]).read_bytes().startswith(b"\x89PNG")
    # A third run sees a complete cache: it pays for nothing.
    third = materialize_catalog(
        "shop",
        config_dir=cfg,
        instance=dg.DagsterInstance.ephemeral(),
        assets=["source_images", "depth_maps"],
    )
    assert third.success and third.materialized["depth_maps"]["new"] == 0

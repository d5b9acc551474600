"""Backfills over catalog partitions, launched through Dagster's GraphQL API (what the UI calls).

A code location is loaded in-process from a small definitions file, runs execute synchronously
(`SyncInMemoryRunLauncher`), and the counting provider shows what every run paid for.
"""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.storage.dagster_run import DagsterRunStatus, RunsFilter
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import QueuedRunCoordinatorDaemon
from dagster_graphql.test.utils import execute_dagster_graphql, infer_repository_selector

from tests import images
from tests.fakes import CALLS
from tests.test_concurrency import QUEUE_LIMITS

CATALOG_TAG = "dagster/partition"  # what the run queue's per-catalog limit keys on

pytestmark = pytest.mark.slow

LAUNCH = """
mutation($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId launchedRunIds }
    ... on PythonError { message stack }
    ... on PartitionSetNotFoundError { message }
    ... on UnauthorizedError { message }
  }
}
"""

PRICE = 0.05


def make_project(tmp: Path) -> Path:
    """Catalogs a, b (sharing one photo with a) and `late`, whose folder does not exist yet."""
    for name, seeds in {"a": [1, 2, 3], "b": [3, 4]}.items():
        (tmp / name).mkdir()
        for s in seeds:
            (tmp / name / f"img{s}.jpg").write_bytes(images.jpeg(seed=s))
    cfg = tmp / "cfg"
    (cfg / "catalogs").mkdir(parents=True)
    (cfg / "catalogs" / "c.yml").write_text(
        textwrap.dedent("""
        catalogs:
          - {name: a, source: {type: local_dir, path: a}}
          - {name: b, source: {type: local_dir, path: b}}
          - {name: late, source: {type: local_dir, path: late}}
    """)
    )
    code = tmp / "backfill_defs.py"
    code.write_text(
        textwrap.dedent(f"""
        import dagster as dg
        from flux_depth_assets.defs.build import build_definitions
        from flux_depth_assets.defs.resources import CatalogsResource, StorageResource
        from tests.fakes import CountingProviderResource

        defs = dg.Definitions.merge(
            build_definitions({{
                "catalogs": CatalogsResource(config_dir={str(cfg)!r}),
                "storage": StorageResource(root={str(tmp / "home")!r}),
                "depth_provider": CountingProviderResource(price_usd={PRICE}),
            }}),
            dg.Definitions(executor=dg.in_process_executor),  # asset backfills: no subprocesses
        )
    """)
    )
    return code


@pytest.fixture
def workspace(tmp_path):
    CALLS.clear()
    code = make_project(tmp_path)
    overrides = {
        "run_launcher": {
            "module": "dagster._core.launcher.sync_in_memory_run_launcher",
            "class": "SyncInMemoryRunLauncher",
        },
        **QUEUE_LIMITS,  # the documented per-catalog run queue limits, as in production
    }
    with dg.instance_for_test(overrides=overrides) as instance:
        instance.add_dynamic_partitions("catalog", ["a", "b", "late"])
        origin = InProcessCodeLocationOrigin(
            LoadableTargetOrigin(
                python_file=str(code), attribute="defs", working_directory=str(Path.cwd())
            )
        )
        with WorkspaceProcessContext(instance, InProcessWorkspaceLoadTarget(origin)) as wpc:
            yield tmp_path, instance, wpc


def drain_queue(wpc) -> None:
    """What the daemon's run queue does: dequeue (here: run, synchronously) what the limits allow."""
    daemon = QueuedRunCoordinatorDaemon(interval_seconds=1)
    for _ in range(20):
        if not wpc.instance.get_runs(RunsFilter(statuses=[DagsterRunStatus.QUEUED])):
            return
        list(daemon.run_iteration(wpc))
    raise AssertionError("runs still queued")


def launch(wpc, **params) -> dict:
    ctx = wpc.create_request_context()
    result = execute_dagster_graphql(ctx, LAUNCH, {"params": params})
    assert not result.errors, result.errors
    data = result.data["launchPartitionBackfill"]
    assert data["__typename"] == "LaunchBackfillSuccess", data
    drain_queue(wpc)
    return data


def runs_of(instance, backfill_id: str) -> dict[str, dg.DagsterRun]:
    runs = instance.get_runs(RunsFilter(tags={"dagster/backfill": backfill_id}))
    return {r.tags["dagster/partition"]: r for r in runs}


def depth_cost(instance, run_id: str) -> float:
    for rec in instance.get_records_for_run(run_id).records:
        ev = rec.event_log_entry.dagster_event
        if ev and ev.is_step_materialization and ev.asset_key == dg.AssetKey("depth_maps"):
            return ev.materialization.metadata["cost_usd"].value
    raise AssertionError("no depth_maps materialization in run")


def test_job_backfill_from_the_ui_pays_once_and_relaunches_after_failure(workspace):
    tmp, instance, wpc = workspace
    selector = {
        "partitionSetName": "catalog_job_partition_set",
        "repositorySelector": infer_repository_selector(wpc.create_request_context()),
    }
    everything = {
        "selector": selector,
        "partitionNames": ["a", "b", "late"],
        "forceSynchronousSubmission": True,
    }

    # 1. Backfill three catalogs: `late` has no folder yet, so its run fails; a and b succeed.
    first = launch(wpc, **everything)
    runs = runs_of(instance, first["backfillId"])
    assert {k: r.status for k, r in runs.items()} == {
        "a": DagsterRunStatus.SUCCESS,
        "b": DagsterRunStatus.SUCCESS,
        "late": DagsterRunStatus.FAILURE,
    }
    assert all(r.tags[CATALOG_TAG] == k for k, r in runs.items())  # the queue limit keys on this
    assert len(CALLS) == 4 and set(CALLS.values()) == {
        1
    }  # 4 distinct photos, img3 shared: paid once
    assert depth_cost(instance, runs["a"].run_id) + depth_cost(
        instance, runs["b"].run_id
    ) == pytest.approx(4 * PRICE)

    # 2. The data arrives; re-launch from failure: only `late` runs, and only its new photo is paid.
    (tmp / "late").mkdir()
    (tmp / "late" / "again.jpg").write_bytes(images.jpeg(seed=1))  # same bytes as a/img1.jpg
    (tmp / "late" / "new.jpg").write_bytes(images.jpeg(seed=9))
    retry = launch(wpc, **everything, fromFailure=True)
    [late] = runs_of(instance, retry["backfillId"]).values()
    assert late.status == DagsterRunStatus.SUCCESS and late.tags[CATALOG_TAG] == "late"
    assert late.parent_run_id == runs["late"].run_id
    assert len(CALLS) == 5 and set(CALLS.values()) == {1}
    assert depth_cost(instance, late.run_id) == pytest.approx(PRICE)

    # 3. Re-launching the whole backfill re-runs every catalog and pays for nothing.
    again = runs_of(instance, launch(wpc, **everything)["backfillId"])
    assert {r.status for r in again.values()} == {DagsterRunStatus.SUCCESS}
    assert len(CALLS) == 5 and set(CALLS.values()) == {1}
    assert sum(depth_cost(instance, r.run_id) for r in again.values()) == 0


@pytest.mark.filterwarnings(
    "ignore:Function `AssetSelection.sources` is deprecated"
)  # dagster-internal
def test_asset_backfill_from_the_asset_graph(workspace):
    """The other UI path: select assets and catalog partitions; the daemon submits the runs."""
    from dagster._core.execution.backfill import BulkActionStatus
    from dagster._daemon.backfill import execute_backfill_iteration

    _tmp, instance, wpc = workspace
    data = launch(
        wpc,
        assetSelection=[{"path": ["source_images"]}, {"path": ["depth_maps"]}],
        partitionNames=["a", "b"],
    )
    logger = logging.getLogger("test_backfill")
    for _ in range(10):
        list(execute_backfill_iteration(wpc, logger))
        drain_queue(wpc)
        backfill = instance.get_backfill(data["backfillId"])
        if backfill.status != BulkActionStatus.REQUESTED:
            break
    assert backfill.status == BulkActionStatus.COMPLETED_SUCCESS
    runs = instance.get_runs(RunsFilter(tags={"dagster/backfill": data["backfillId"]}))
    assert {r.tags["dagster/partition"] for r in runs} == {"a", "b"}
    assert all(r.status == DagsterRunStatus.SUCCESS for r in runs)
    assert len(CALLS) == 4 and set(CALLS.values()) == {1}
    # Asset backfills run Dagster's implicit asset job: its runs carry `dagster/partition` (the
    # catalog), not our job's tag; the documented queue limits cover both keys.
    assert all(r.tags.get("dagster/partition") in ("a", "b") for r in runs)

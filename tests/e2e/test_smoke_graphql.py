"""The GraphQL half of docker/smoke_test.py, run against a local `dagster dev`.

No Docker engine runs here, so the compose stack itself is never started on these machines; this
test proves that the smoke test's own queries and mutation work against this Dagster version:
the code location loads, `catalog_registry_sensor` (run by the daemon) adds the `demo` partition,
`launchRun` queues `catalog_job` for it with the catalog tags, and the daemon dequeues and runs it
to SUCCESS.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

SMOKE = Path(__file__).resolve().parents[2] / "docker" / "smoke_test.py"


def _smoke_module():
    spec = importlib.util.spec_from_file_location("flux_depth_docker_smoke", SMOKE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_smoke_test_graphql_flow_against_dagster_dev(dagster_dev_sensor_only, tmp_path):
    smoke = _smoke_module()
    dev = dagster_dev_sensor_only
    stack = smoke.Stack(tmp_path / "unused.env", int(dev.url.rsplit(":", 1)[1]))
    assert stack.url == dev.url

    assert stack.wait_for("the code location", stack.location_loaded, 60, interval=0.5)
    assert stack.wait_for(
        "the registry sensor to add demo", stack.has_demo_partition, 120, interval=1
    )
    run_id = stack.launch_demo_run()

    def finished():
        status = stack.run_status(run_id)
        return status if status in ("SUCCESS", "FAILURE", "CANCELED") else None

    status = stack.wait_for(f"run {run_id}", finished, 180, interval=1)
    assert status == "SUCCESS", dev.log_tail()
    tags = {
        t["key"]: t["value"]
        for t in stack.graphql(smoke.RUN_QUERY, {"runId": run_id})["runOrError"]["tags"]
    }
    assert tags["dagster/partition"] == "demo" and "flux_depth/catalog" not in tags
    pngs = list((dev.flux_depth_home / "catalogs" / "demo" / "depth_maps").glob("*.png"))
    assert len(pngs) == 6

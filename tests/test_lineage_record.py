"""`lineage.record.record_lineage` (plain) and its Dagster caller's code-version lookup."""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg
import pytest

from flux_depth_assets.defs.lineage import code_version
from flux_depth_assets.lineage import queries
from flux_depth_assets.lineage.record import record_lineage
from flux_depth_assets.lineage.writer import calls_from_rows
from flux_depth_assets.storage.store import Storage

STARTED = datetime(2026, 5, 4, 3, 2, 1, tzinfo=UTC)


def test_calls_set_cost_and_count_and_both_tables_agree(tmp_path) -> None:
    store = Storage(str(tmp_path / "root"))
    rows = [
        {"image_id": "a", "status": "succeeded", "cost_usd": 0.05},
        {"image_id": "b", "status": "succeeded", "cost_usd": 0.05},
        {"image_id": "c", "status": "cached", "cost_usd": 0.05},
        {"image_id": "d", "status": "skipped_budget", "cost_usd": 0.05},
    ]
    calls = calls_from_rows(rows, run_id="r1", asset="depth_maps", default_time=STARTED)
    rec = record_lineage(
        store, run_id="r1", asset="depth_maps", catalog="shop", counts={"images": 4, "cached": 1},
        seconds=2.0, started_at=STARTED, calls=calls, code_version="3",
    )  # fmt: skip
    assert rec.cost_usd == pytest.approx(0.10) and rec.provider_calls == 2 and rec.cached == 1
    assert rec.provider_calls_rel and store.exists(rec.provider_calls_rel)
    [row] = queries.read(store, "materializations").to_pylist()
    assert row["run_id"] == "r1" and row["catalog"] == "shop" and row["code_version"] == "3"
    assert row["cost_usd"] == pytest.approx(0.10) and row["provider_calls"] == 2
    assert queries.read(store, "provider_calls").num_rows == 4


def test_a_step_without_calls_writes_no_provider_calls_file(tmp_path) -> None:
    store = Storage(str(tmp_path / "root"))
    rec = record_lineage(
        store, run_id="r2", asset="normal_maps", catalog="shop", counts={"images": 0},
        seconds=0.1, started_at=STARTED,
    )  # fmt: skip
    assert rec.provider_calls_rel is None and rec.cost_usd == 0 and rec.provider_calls == 0
    assert store.exists(rec.materializations_rel)
    assert queries.read(store, "provider_calls").num_rows == 0


def test_code_version_of_an_asset_and_of_an_op_without_an_assets_definition() -> None:
    @dg.asset(code_version="9")
    def versioned(context):  # no annotation: `from __future__ import annotations`
        return code_version(context)

    @dg.op
    def plain_op(context):
        return code_version(context)  # an op's context: no assets definition

    assert versioned(dg.build_asset_context()) == "9"
    assert plain_op(dg.build_op_context()) is None

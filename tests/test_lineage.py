"""Lineage tables as a contract: schemas, the writer, readers without the project, compaction."""

from __future__ import annotations

import shutil
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from flux_depth_assets.lineage import queries
from flux_depth_assets.lineage.compact import compact
from flux_depth_assets.lineage.schemas import (
    MATERIALIZATIONS,
    PROVIDER_CALLS,
    TABLES,
    conform,
    full_schema,
)
from flux_depth_assets.lineage.summary import stat_distributions, summarize_catalog
from flux_depth_assets.lineage.writer import (
    calls_from_rows,
    config_hash,
    materialization_row,
    redact,
    rows_to_table,
    write_rows,
)
from flux_depth_assets.paths import UnsafePathError
from flux_depth_assets.storage.store import Storage

T0 = datetime(2026, 3, 1, 23, 30, tzinfo=UTC)


def put(store, table: str, run_id: str, rows: list[dict], catalog: str = "shop", day=None):
    """`write_rows` for the `depth_maps` asset of `catalog` (the shop) on T0's day by default."""
    return write_rows(
        store,
        table,
        catalog=catalog,
        day=day or T0.date(),
        run_id=run_id,
        asset="depth_maps",
        rows=rows,
    )


def call(
    run: str, image: str, *, status: str = "succeeded", cost: float = 0.05, at: datetime = T0, **kw
) -> dict:
    return {
        "run_id": run,
        "asset": "depth_maps",
        "image_id": image,
        "source_sha256": "s" * 64,
        "output_sha256": "o" * 64,
        "output_path": f"catalogs/c/depth_maps/{image}.png",
        "provider": "fake",
        "model": "paid",
        "model_version": "1",
        "params_hash": "p" * 16,
        "cache_key": "k" * 64,
        "prediction_id": f"pred-{image}",
        "status": status,
        "cached": status == "cached",
        "attempts": 0 if status == "cached" else 1,
        "http_status": 200,
        "latency_s": 1.5,
        "cost_usd": 0.0 if status == "cached" else cost,
        "started_at": at,
        "finished_at": at + timedelta(seconds=1.5),
        "error": None,
        "resumed": False,
        "uncertain_attempts": 0,
        "uncertain_cost_usd": 0.0,
        "host": "replicate",
        **kw,
    }


def mat(run: str, asset: str = "depth_maps", cost: float = 0.1, at: datetime = T0) -> dict:
    return materialization_row(
        run_id=run,
        asset=asset,
        counts={"images": 2, "new": 2, "cached": 0, "failed": 0, "skipped_budget": 0},
        cost_usd=cost,
        seconds=3.0,
        started_at=at,
        finished_at=at + timedelta(seconds=3),
        provider_calls=2,
        code_version="1",
        config_hash="c" * 16,
    )


@pytest.fixture
def store(tmp_path) -> Storage:
    return Storage(str(tmp_path / "root"))


def root_of(store: Storage) -> Path:
    return Path(store.base)


def populate(store: Storage) -> int:
    """3 runs over 2 catalogs and 2 days; returns the provider_calls row count."""
    n = 0
    for run, cat, day_offset, images in (
        ("r1", "shop", 0, 3),
        ("r2", "shop", 0, 2),
        ("r3", "rooms", 1, 4),
    ):
        at = T0 + timedelta(days=day_offset)
        rows = [
            call(run, f"{run}-img{i}", at=at, status="cached" if i == 0 else "succeeded")
            for i in range(images)
        ]
        put(store, "provider_calls", run, rows, catalog=cat, day=at.date())
        put(
            store,
            "materializations",
            run,
            [mat(run, cost=0.05 * (images - 1), at=at)],
            catalog=cat,
            day=at.date(),
        )
        n += images
    return n


# --------------------------------------------------------------------------- schemas and writer


def test_schema_round_trip_is_exact(store):
    rows = [
        call("run-a", "img1"),
        call("run-a", "img2", status="cached"),
        call(
            "run-a",
            "img3",
            status="failed",
            output_sha256=None,
            output_path=None,
            http_status=500,
            error="HTTP 500 from host",
        ),
        call(
            "run-a",
            "img4",
            status="skipped_budget",
            prediction_id=None,
            http_status=None,
            latency_s=None,
            cost=0.0,
        ),
    ]
    rel = put(store, "provider_calls", "run-a", rows)
    assert (
        rel
        == "tables/lineage/provider_calls/catalog=shop/date=2026-03-01/part-run-a-depth_maps.parquet"
    )
    back = pq.read_table(root_of(store) / rel)
    assert back.schema.equals(PROVIDER_CALLS)  # declared types, nothing inferred
    assert "catalog" not in back.column_names and "date" not in back.column_names
    assert back.to_pylist() == rows
    m = put(store, "materializations", "run-a", [mat("run-a")])
    back = pq.read_table(root_of(store) / m)
    assert back.schema.equals(MATERIALIZATIONS) and back.to_pylist() == [mat("run-a")]


def test_rewriting_the_same_run_and_asset_replaces_its_file(store):
    for _ in range(2):
        put(store, "provider_calls", "r", [call("r", "a"), call("r", "b")])
    assert queries.read(store, "provider_calls").num_rows == 2
    files = list(root_of(store).rglob("*"))
    assert not [f for f in files if ".tmp-" in f.name]  # atomic writes leave no temp file


def test_writer_refuses_bad_rows_and_unsafe_names(store):
    with pytest.raises(ValueError, match="unknown status"):
        rows_to_table([call("r", "a", status="done")], "provider_calls")
    with pytest.raises(ValueError, match="'run_id' is required"):
        rows_to_table([call(None, "a")], "provider_calls")
    with pytest.raises(UnsafePathError):
        put(store, "provider_calls", "r", [call("r", "a")], catalog="../etc")
    assert put(store, "provider_calls", "r", []) is None


def test_conform_reads_older_files_with_the_current_schema():
    old = pa.table(
        {
            "run_id": ["r"],
            "asset": ["depth_maps"],
            "status": ["succeeded"],
            "cost_usd": pa.array([1], pa.int64()),
        }
    )
    t = conform(old, MATERIALIZATIONS)
    assert t.schema.equals(MATERIALIZATIONS)
    assert t.to_pylist()[0]["cost_usd"] == 1.0 and t.to_pylist()[0]["images_in"] is None


@pytest.mark.parametrize(
    "text, secrets, leaked",
    [
        ("create failed: api_key=sk-live-abc123 rejected", [], "sk-live-abc123"),
        ("HTTP 401 Authorization: Bearer abcdefghijklmnop", [], "abcdefghijklmnop"),
        ('{"X-API-Key": "k-999-secret"}', [], "k-999-secret"),
        ("server echoed my-very-own-key in its body", ["my-very-own-key"], "my-very-own-key"),
    ],
)
def test_errors_never_keep_a_secret(text, secrets, leaked):
    out = redact(text, secrets)
    assert leaked not in out and "***" in out


def test_redact_keeps_ordinary_errors_and_cuts_long_ones():
    assert redact("corrupt or truncated JPEG", []) == "corrupt or truncated JPEG"
    assert redact(None) is None
    assert len(redact("x" * 5000)) == 1000


def test_calls_from_rows_marks_cache_hits_free():
    at = T0
    rows = [
        {
            "image_id": "a",
            "status": "cached",
            "cost_usd": 0.05,
            "depth_path": "p/a.png",
            "seconds": 0.01,
            "attempts": 0,
        },
        {
            "image_id": "b",
            "status": "succeeded",
            "cost_usd": 0.05,
            "depth_path": "p/b.png",
            "seconds": 2.0,
            "attempts": 2,
            "started_at": at,
            "finished_at": at + timedelta(seconds=2),
        },
        {"image_id": "c", "status": "skipped_budget", "cost_usd": None},
    ]
    out = calls_from_rows(rows, run_id="r", asset="depth_maps", default_time=at)
    assert [(c["cached"], c["cost_usd"]) for c in out] == [(True, 0.0), (False, 0.05), (False, 0.0)]
    assert out[0]["output_path"] == "p/a.png" and out[1]["attempts"] == 2
    assert out[2]["started_at"] == at and out[2]["finished_at"] == at
    rows_to_table(out, "provider_calls")  # valid against the contract


def test_config_hash_is_stable_and_sensitive():
    assert config_hash({"a": 1, "b": [1, 2]}) == config_hash({"b": [1, 2], "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})
    assert len(config_hash("x")) == 16


# --------------------------------------------------------------------------- readers without the project


def test_pyarrow_dataset_pandas_and_duckdb_see_partitions_as_columns(store):
    n = populate(store)
    base = root_of(store) / "tables/lineage/provider_calls"
    # pyarrow.dataset, plain hive discovery, as a notebook would do it
    t = ds.dataset(base, partitioning="hive").to_table()
    assert t.num_rows == n and t.column_names.count("catalog") == 1 and "date" in t.column_names
    # with the declared schema: `date` is a real date
    typed = queries.read(store, "provider_calls")
    assert typed.schema.equals(full_schema("provider_calls"))
    assert set(typed["date"].to_pylist()) == {date(2026, 3, 1), date(2026, 3, 2)}
    # pandas
    df = pd.read_parquet(base)
    assert len(df) == n and {"catalog", "date"} <= set(df.columns)
    assert sorted(df["catalog"].astype(str).unique()) == ["rooms", "shop"]
    # DuckDB
    con = duckdb.connect()
    rel = con.sql(f"SELECT * FROM read_parquet('{base}/*/*/*.parquet', hive_partitioning=true)")
    assert rel.columns.count("catalog") == 1 and "date" in rel.columns
    got = con.sql(f"""
        SELECT catalog, CAST(date AS VARCHAR) AS day, count(*) AS calls, round(sum(cost_usd), 6) AS usd
        FROM read_parquet('{base}/*/*/*.parquet', hive_partitioning=true)
        GROUP BY ALL ORDER BY ALL""").fetchall()
    assert got == [("rooms", "2026-03-02", 4, 0.15), ("shop", "2026-03-01", 5, 0.15)]


def test_costs_by_catalog_asset_and_day(store):
    populate(store)
    t = queries.costs(store).to_pylist()
    assert [(r["catalog"], r["date"], r["runs"], round(r["cost_usd"], 6)) for r in t] == [
        ("shop", date(2026, 3, 1), 2, 0.15),
        ("rooms", date(2026, 3, 2), 1, 0.15),
    ]
    assert queries.costs(store, catalog="rooms").num_rows == 1
    assert queries.costs(store, since=date(2026, 3, 2)).column("catalog").to_pylist() == ["rooms"]
    assert queries.costs(Storage(str(root_of(store) / "empty"))).num_rows == 0


def test_calls_by_catalog_day(store):
    populate(store)
    out = queries.calls_by_catalog_day(queries.dataset(store, "provider_calls")).to_pylist()
    assert [(r["catalog"], r["calls"], r["paid_calls"], r["cached"]) for r in out] == [
        ("rooms", 4, 3, 1),
        ("shop", 5, 3, 2),
    ]


# --------------------------------------------------------------------------- compaction


def snapshot(store: Storage, table: str) -> list[dict]:
    rows = queries.read(store, table).to_pylist()
    return sorted(
        rows, key=lambda r: (r["catalog"], r["run_id"], r["asset"], r.get("image_id") or "")
    )


def parquet_files(store: Storage) -> list[Path]:
    return sorted(p for p in root_of(store).rglob("*.parquet"))


def test_compaction_preserves_every_row_exactly(store):
    populate(store)
    before = {t: snapshot(store, t) for t in TABLES}
    assert len(parquet_files(store)) == 6
    reports = compact(store, today=date(2026, 4, 1))
    assert {r.partition for r in reports if r.output} == {
        "provider_calls/catalog=shop/date=2026-03-01",
        "materializations/catalog=shop/date=2026-03-01",
    }
    assert {t: snapshot(store, t) for t in TABLES} == before
    files = parquet_files(store)
    assert len(files) == 4 and sum(f.name.startswith("compacted-") for f in files) == 2
    # the compacted file keeps the declared schema
    shop = root_of(store) / "tables/lineage/provider_calls/catalog=shop/date=2026-03-01"
    assert (
        pq.read_schema(next(shop.glob("*.parquet")))
        .remove_metadata()
        .equals(PROVIDER_CALLS.remove_metadata())
    )
    # a second pass changes nothing
    assert not [r for r in compact(store, today=date(2026, 4, 1)) if r.output]
    assert parquet_files(store) == files


def test_compaction_skips_today_and_dry_run_changes_nothing(store):
    populate(store)
    files = parquet_files(store)
    reports = compact(store, today=date(2026, 3, 1))
    assert all(r.skipped for r in reports) and parquet_files(store) == files
    reports = compact(store, today=date(2026, 4, 1), dry_run=True)
    assert any(r.rows == 5 for r in reports) and parquet_files(store) == files


def test_an_interrupted_compaction_is_repaired_without_duplicates(store):
    populate(store)
    before = snapshot(store, "provider_calls")
    part = root_of(store) / "tables/lineage/provider_calls/catalog=shop/date=2026-03-01"
    saved = {p.name: p.read_bytes() for p in part.glob("*.parquet")}
    compact(store, tables=["provider_calls"], today=date(2026, 4, 1))
    # simulate a crash after the merged file was written, before its inputs were deleted
    for name, data in saved.items():
        (part / name).write_bytes(data)
    # readers would double count now; the next compaction removes the leftovers unread
    reports = [
        r for r in compact(store, tables=["provider_calls"], today=date(2026, 4, 1)) if r.output
    ]
    assert sorted(reports[0].leftovers_removed) == sorted(saved)
    assert snapshot(store, "provider_calls") == before
    assert len(list(part.glob("*.parquet"))) == 1


def test_a_rewritten_run_file_supersedes_its_compacted_rows(store):
    populate(store)
    compact(store, tables=["provider_calls"], today=date(2026, 4, 1))
    # a retried step of run r1 rewrites its file with different rows after compaction
    put(store, "provider_calls", "r1", [call("r1", "retried", cost=0.07)])
    reports = [
        r for r in compact(store, tables=["provider_calls"], today=date(2026, 4, 1)) if r.output
    ]
    assert reports[0].superseded_rows == 3
    rows = queries.read(store, "provider_calls", catalog="shop").to_pylist()
    assert sorted(r["image_id"] for r in rows if r["run_id"] == "r1") == ["retried"]
    assert len([r for r in rows if r["run_id"] == "r2"]) == 2


def test_write_read_and_compact_on_an_object_store_root():
    """The same code through an fsspec object-store-like filesystem (what an s3:// root uses)."""
    store = Storage(f"memory://lineage-{uuid.uuid4().hex}")
    assert not store.is_local
    try:
        n = populate(store)
        before = {t: snapshot(store, t) for t in TABLES}
        assert len(before["provider_calls"]) == n
        compact(store, today=date(2026, 4, 1))
        assert {t: snapshot(store, t) for t in TABLES} == before
        assert round(sum(r["cost_usd"] for r in queries.costs(store).to_pylist()), 6) == 0.3
    finally:
        store.fs.rm(store.base, recursive=True)


# --------------------------------------------------------------------------- summary


def test_stat_distributions_ignore_nan_and_non_float_columns():
    t = pa.table(
        {
            "image_id": ["a", "b", "c", "d"],
            "width": [1, 2, 3, 4],
            "valid_ratio": [1.0, 0.5, float("nan"), None],
            "p50": [0.1, 0.2, 0.3, 0.4],
        }
    )
    out = {d["stat"]: d for d in stat_distributions(t)}
    assert set(out) == {"valid_ratio", "p50"}
    assert out["valid_ratio"]["count"] == 2 and out["valid_ratio"]["mean"] == 0.75
    assert out["p50"]["min"] == 0.1 and out["p50"]["max"] == 0.4


def test_summary_tolerates_missing_tables(store):
    row = summarize_catalog(store, "ghost")
    assert row["total_cost_usd"] == 0.0 and row.get("images") is None
    assert row.get("depth_stats") is None


def test_summary_reads_depth_stats_when_present(store):
    populate(store)
    store.write_table(
        "tables/depth_stats/catalog=shop/part-0.parquet",
        pa.table({"image_id": ["a", "b"], "valid_ratio": [0.9, 1.0]}),
    )
    row = summarize_catalog(store, "shop")
    assert row["depth_stats_images"] == 2 and row["depth_stats"][0]["stat"] == "valid_ratio"
    assert round(row["total_cost_usd"], 6) == 0.15 and row["runs"] == 2
    shutil.rmtree(root_of(store) / "tables/depth_stats")
    assert summarize_catalog(store, "shop").get("depth_stats") is None


# --------------------------------------------------------------------------- the call any asset makes


def test_record_materialization_from_any_partitioned_asset(tmp_path):
    import dagster as dg

    from flux_depth_assets.defs.lineage import record_materialization

    root = str(tmp_path / "rec")

    @dg.asset(partitions_def=dg.StaticPartitionsDefinition(["shop"]), code_version="7")
    def normal_maps_like(
        context,
    ):  # no annotations: this module has `from __future__ import annotations`
        started = datetime.now(UTC)
        meta = record_materialization(
            Storage(root),
            context,
            counts={"images": 3, "new": 1, "cached": 2, "failed": 0},
            seconds=0.5,
            started_at=started,
            row_count=3,
        )
        return dg.MaterializeResult(metadata=meta)

    result = dg.materialize(
        [normal_maps_like], partition_key="shop", instance=dg.DagsterInstance.ephemeral()
    )
    meta = result.asset_materializations_for_node("normal_maps_like")[0].metadata
    assert meta["cost_usd"].value == 0 and meta["provider_calls"].value == 0
    assert meta["cached"].value == 2 and meta["dagster/row_count"].value == 3
    rows = queries.read(Storage(root), "materializations").to_pylist()
    assert (
        len(rows) == 1 and rows[0]["asset"] == "normal_maps_like" and rows[0]["catalog"] == "shop"
    )
    assert rows[0]["run_id"] == result.run_id and rows[0]["code_version"] == "7"
    assert rows[0]["images_cached"] == 2 and rows[0]["images_rejected"] is None
    assert queries.read(Storage(root), "provider_calls").num_rows == 0

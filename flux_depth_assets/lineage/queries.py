"""Read the lineage tables back: the dataset, spend by catalog/asset/day, per-catalog totals.

Everything goes through `pyarrow.dataset` with the declared schemas and hive partitioning, the same
way a notebook would (see `docs/lineage.md`).
"""

from __future__ import annotations

from datetime import date

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from flux_depth_assets.lineage.schemas import PARTITION_SCHEMA, ROOT, TABLES, full_schema
from flux_depth_assets.storage.store import Storage


def table_dir(table: str) -> str:
    if table not in TABLES:
        raise KeyError(f"unknown lineage table {table!r}; known: {', '.join(TABLES)}")
    return f"{ROOT}/{table}"


def partitioning() -> ds.Partitioning:
    return ds.partitioning(PARTITION_SCHEMA, flavor="hive")


def dataset(store: Storage, table: str) -> ds.Dataset | None:
    """The whole table as a dataset with `catalog` and `date` columns; None when nothing is written."""
    rel = table_dir(table)
    if not store.exists(rel):
        return None
    # Local roots use Arrow's native filesystem (fast); object stores go through the fsspec one.
    fs = None if store.is_local else store.fs
    return ds.dataset(
        store.full(rel),
        format="parquet",
        filesystem=fs,
        partitioning=partitioning(),
        schema=full_schema(table),
        exclude_invalid_files=False,
    )


def filter_expr(
    catalog: str | None = None, since: date | None = None, until: date | None = None
) -> ds.Expression | None:
    expr = None
    for part in (
        (ds.field("catalog") == catalog) if catalog else None,
        (ds.field("date") >= pa.scalar(since, pa.date32())) if since else None,
        (ds.field("date") <= pa.scalar(until, pa.date32())) if until else None,
    ):
        if part is not None:
            expr = part if expr is None else expr & part
    return expr


def read(
    store: Storage,
    table: str,
    catalog: str | None = None,
    since: date | None = None,
    until: date | None = None,
    columns: list[str] | None = None,
) -> pa.Table:
    """Rows of a lineage table (empty, with the full schema, when nothing was written)."""
    data = dataset(store, table)
    schema = full_schema(table)
    if data is None:
        empty = schema.empty_table()
        return empty.select(columns) if columns else empty
    return data.to_table(columns=columns, filter=filter_expr(catalog, since, until))


#: the `materializations` columns `costs` sums per catalog, asset and day
SUMMED = [
    "images_new",
    "images_cached",
    "images_failed",
    "images_skipped_budget",
    "provider_calls",
    "cost_usd",
]
COST_KEYS = ["catalog", "asset", "date"]
COST_COLUMNS = [*COST_KEYS, "runs", "materializations", *SUMMED]


def costs(
    store: Storage, catalog: str | None = None, since: date | None = None, until: date | None = None
) -> pa.Table:
    """Spend by catalog, asset and UTC day, from `materializations` (every asset has rows there).

    `cost_usd` of a materialization is the sum of its `provider_calls` rows, written together.
    """
    t = read(
        store, "materializations", catalog, since, until, columns=[*COST_KEYS, "run_id", *SUMMED]
    )
    out = t.group_by(COST_KEYS).aggregate(
        [("run_id", "count_distinct"), ("run_id", "count"), *((c, "sum") for c in SUMMED)]
    )
    out = out.rename_columns(
        {
            "run_id_count_distinct": "runs",
            "run_id_count": "materializations",
            **{f"{c}_sum": c for c in SUMMED},
        }
    )
    out = out.select(COST_COLUMNS)
    return out.sort_by([("date", "ascending"), ("catalog", "ascending"), ("asset", "ascending")])


def calls_by_catalog_day(data: ds.Dataset | pa.Table) -> pa.Table:
    """`provider_calls` aggregated by catalog and day: rows, paid calls, cached, failed, cost."""
    return calls_by(data, ["catalog", "date"])


def calls_by(data: ds.Dataset | pa.Table, keys: list[str]) -> pa.Table:
    """`provider_calls` aggregated by `keys` (e.g. catalog and day, or catalog and `host`):
    rows, paid calls, cached, failed, cost."""
    t = (
        data.to_table(columns=[*keys, "status", "cached", "cost_usd"])
        if isinstance(data, ds.Dataset)
        else data
    )
    t = t.append_column(
        "paid", pc.and_(pc.invert(t["cached"]), pc.not_equal(t["status"], "skipped_budget"))
    )
    t = t.append_column("failed", pc.equal(t["status"], "failed"))
    out = t.group_by(keys).aggregate(
        [
            ("cost_usd", "count"),
            ("cost_usd", "sum"),
            ("paid", "sum"),
            ("cached", "sum"),
            ("failed", "sum"),
        ]
    )
    return (
        out.rename_columns(
            {
                "cost_usd_count": "calls",
                "cost_usd_sum": "cost_usd",
                "paid_sum": "paid_calls",
                "cached_sum": "cached",
                "failed_sum": "failed",
            }
        )
        .select([*keys, "calls", "paid_calls", "cached", "failed", "cost_usd"])
        .sort_by([(k, "ascending") for k in keys])
    )


def calls_by_host(table: pa.Table) -> pa.Table:
    """`provider_calls` by catalog and host. Rows without a `host` (cache hits, budget skips,
    local models, files written before the column) count under their `provider` instead."""
    host = pc.coalesce(table["host"], table["provider"])
    t = table.drop_columns(["host"]).append_column("host", host)
    return calls_by(t, ["catalog", "host"])


def catalog_totals(store: Storage, catalog: str) -> dict:
    """All-time spend and the last run of one catalog (zeros/None when nothing was recorded)."""
    mats = read(
        store,
        "materializations",
        catalog,
        columns=["run_id", "asset", "status", "cost_usd", "provider_calls", "finished_at"],
    )
    if mats.num_rows == 0:
        return {
            "total_cost_usd": 0.0,
            "provider_calls": 0,
            "runs": 0,
            "last_run_id": None,
            "last_run_at": None,
        }
    last = mats.sort_by([("finished_at", "descending")]).slice(0, 1).to_pylist()[0]
    return {
        "total_cost_usd": float(pc.sum(mats["cost_usd"]).as_py() or 0.0),
        "provider_calls": int(pc.sum(mats["provider_calls"]).as_py() or 0),
        "runs": int(pc.count_distinct(mats["run_id"]).as_py()),
        "last_run_id": last["run_id"],
        "last_run_at": last["finished_at"],
    }

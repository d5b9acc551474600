"""Per-catalog rollup behind the `catalog_summary` asset: images, depth coverage, spend, stats.

Reads only tables: `source_images`, `depth_maps`, the lineage tables, and `depth_stats` when it
exists (built by another asset; its absence only leaves the distribution columns empty).
"""

from __future__ import annotations

import posixpath
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc

from flux_depth_assets.lineage.queries import catalog_totals
from flux_depth_assets.lineage.schemas import CATALOG_SUMMARY
from flux_depth_assets.paths import safe_segment
from flux_depth_assets.storage.store import Storage

SUMMARY_REL = "tables/catalog_summary/part-0.parquet"
DEPTH_STATS = "depth_stats"


def known_catalogs(store: Storage, declared: list[str]) -> list[str]:
    """Declared catalogs plus any that still have tables (removed from YAML, data kept)."""
    found = set(declared)
    for table in ("tables/source_images", "tables/lineage/materializations"):
        for d in store.list(table):
            name = posixpath.basename(d)
            if name.startswith("catalog="):
                found.add(name.split("=", 1)[1])
    return sorted(found)


def _read_dir(store: Storage, rel_dir: str) -> pa.Table | None:
    """Every Parquet file under `rel_dir` (any depth), concatenated; None when there is none."""
    full = store.full(rel_dir)
    if not store.fs.exists(full):
        return None
    prefix = store.base + "/"
    files = sorted(
        p.removeprefix(prefix)
        for p in store.fs.find(full)
        if p.endswith(".parquet") and not posixpath.basename(p).startswith((".", "_"))
    )
    if not files:
        return None
    tables = [store.read_table(f) for f in files]
    return pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]


def stat_distributions(table: pa.Table) -> list[dict]:
    """count/mean/min/p10/p50/p90/max of every floating-point column, NaN and nulls ignored."""
    out = []
    for f in table.schema:
        if not pa.types.is_floating(f.type):
            continue
        col = pc.drop_null(table.column(f.name).cast(pa.float64()))
        col = col.filter(pc.is_finite(col)) if len(col) else col
        if len(col) == 0:
            out.append({"stat": f.name, "count": 0})
            continue
        q = pc.quantile(col, q=[0.1, 0.5, 0.9]).to_pylist()
        mm = pc.min_max(col).as_py()
        out.append(
            {
                "stat": f.name,
                "count": len(col),
                "mean": pc.mean(col).as_py(),
                "min": mm["min"],
                "p10": q[0],
                "p50": q[1],
                "p90": q[2],
                "max": mm["max"],
            }
        )
    return out


def summarize_catalog(store: Storage, catalog: str, now: datetime | None = None) -> dict:
    row: dict = {"catalog": catalog, "summarized_at": now or datetime.now(UTC)}
    src = store.read_partition("source_images", catalog)
    if src is not None:
        status = src.column("status")
        row["images"] = int(pc.sum(pc.equal(status, "accepted")).as_py() or 0)
        row["rejected"] = int(pc.sum(pc.equal(status, "rejected")).as_py() or 0)
    depth = store.read_partition("depth_maps", catalog)
    if depth is not None:
        status = depth.column("status")
        ok = pc.or_(pc.equal(status, "succeeded"), pc.equal(status, "cached"))
        row["depth_maps"] = int(pc.sum(ok).as_py() or 0)
        row["depth_failed"] = int(pc.sum(pc.equal(status, "failed")).as_py() or 0)
        row["depth_skipped_budget"] = int(pc.sum(pc.equal(status, "skipped_budget")).as_py() or 0)
    if row.get("images"):
        row["depth_coverage"] = (row.get("depth_maps") or 0) / row["images"]
    row.update(catalog_totals(store, catalog))
    if row.get("depth_maps"):
        row["cost_per_image"] = row["total_cost_usd"] / row["depth_maps"]
    stats = _read_dir(store, f"tables/{DEPTH_STATS}/catalog={safe_segment(catalog)}")
    if stats is not None:
        row["depth_stats_images"] = stats.num_rows
        row["depth_stats"] = stat_distributions(stats)
    return row


def summarize(store: Storage, catalogs: list[str]) -> pa.Table:
    now = datetime.now(UTC)
    rows = [summarize_catalog(store, c, now) for c in catalogs]
    return pa.Table.from_pylist(
        [{f.name: r.get(f.name) for f in CATALOG_SUMMARY} for r in rows], schema=CATALOG_SUMMARY
    )


def write_summary(store: Storage, table: pa.Table) -> str:
    return store.write_table(SUMMARY_REL, table)


def read_summary(store: Storage) -> pa.Table | None:
    return store.read_table(SUMMARY_REL) if store.exists(SUMMARY_REL) else None


__all__ = [
    "SUMMARY_REL",
    "known_catalogs",
    "read_summary",
    "stat_distributions",
    "summarize",
    "summarize_catalog",
    "write_summary",
]

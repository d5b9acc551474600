"""`catalog_summary`: one row per catalog (images, depth coverage, spend, depth-stat distributions).

Not partitioned: it reads every catalog's tables and rewrites `tables/catalog_summary/part-0.parquet`.
It runs by declarative automation after `depth_maps` or `depth_stats` update (the Dagster daemon's
automation sensor must be on), or on demand.
"""

import dagster as dg

from flux_depth_assets.defs.assets.depth import depth_maps
from flux_depth_assets.defs.assets.derived import depth_stats
from flux_depth_assets.defs.constants import ANALYTICS_GROUP
from flux_depth_assets.defs.metadata import preview_table
from flux_depth_assets.defs.resources import CatalogsResource, StorageResource
from flux_depth_assets.lineage.summary import known_catalogs, summarize, write_summary

ASSET = "catalog_summary"

# Like `eager()`, but without "no dependency partition missing": with one upstream partition per
# catalog, a catalog that has never run must not block the summary of the others.
SUMMARY_AUTOMATION = (
    dg.AutomationCondition.any_deps_updated().since_last_handled()
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
).with_label("after depth_maps / depth_stats update")


@dg.asset(
    name=ASSET,
    deps=[depth_maps, depth_stats],
    group_name=ANALYTICS_GROUP,
    kinds={"python", "parquet"},
    code_version="1",
    automation_condition=SUMMARY_AUTOMATION,
    description=(
        "One row per catalog: accepted images, depth maps and coverage, all-time provider spend "
        "and cost per image (from tables/lineage/), last run, and distributions (mean, p10/p50/p90) "
        "of every depth_stats column. Table: "
        "tables/catalog_summary/part-0.parquet (`catalog` is a column)."
    ),
)
def catalog_summary(
    context: dg.AssetExecutionContext, storage: StorageResource, catalogs: CatalogsResource
) -> dg.MaterializeResult:
    store = storage.get()
    names = known_catalogs(store, list(catalogs.load().catalogs))
    table = summarize(store, names)
    rel = write_summary(store, table)
    rows = table.to_pylist()
    for r in rows:
        r["depth_stats"] = (
            ", ".join(
                f"{d['stat']} p50={d['p50']:.3g}"
                for d in r["depth_stats"] or []
                if d.get("p50") is not None
            )
            or None
        )
    context.log.info(f"catalog_summary: {len(rows)} catalog(s) summarized into {store.uri(rel)}")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": dg.MetadataValue.int(len(rows)),
            "catalogs": dg.MetadataValue.int(len(rows)),
            "images": dg.MetadataValue.int(sum(r["images"] or 0 for r in rows)),
            "depth_maps": dg.MetadataValue.int(sum(r["depth_maps"] or 0 for r in rows)),
            "total_cost_usd": dg.MetadataValue.float(
                round(sum(r["total_cost_usd"] or 0.0 for r in rows), 6)
            ),
            "table": dg.MetadataValue.path(store.uri(rel)),
            "preview": preview_table(
                rows,
                [
                    "catalog",
                    "images",
                    "depth_maps",
                    "depth_coverage",
                    "total_cost_usd",
                    "cost_per_image",
                    "last_run_at",
                    "depth_stats",
                ],
                limit=20,
            ),
        }
    )

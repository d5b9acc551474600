"""`depth_renders`: prompt-driven, depth-guided re-renders for catalogs whose provider is in `render` mode."""

from datetime import datetime, timezone

import dagster as dg

from flux_depth_assets.defs.assets.catalog import source_images
from flux_depth_assets.defs.constants import (
    CATALOG_PARTITIONS,
    DEPTH_GROUP,
    HOSTED_API_POOL,
    OWNERS,
)
from flux_depth_assets.defs.metadata import counts_metadata, preview_table
from flux_depth_assets.defs.resources import CatalogsResource, DepthProviderResource, StorageResource
from flux_depth_assets.lineage.record import record_materialization
from flux_depth_assets.lineage.writer import calls_from_rows, config_hash
from flux_depth_assets.pipeline.depth_run import BudgetExceeded
from flux_depth_assets.pipeline.render_run import ASSET, run_renders
from flux_depth_assets.pipeline.scan import accepted_rows


@dg.asset(
    name=ASSET,
    deps=[source_images],
    partitions_def=CATALOG_PARTITIONS,
    group_name=DEPTH_GROUP,
    kinds={"python", "parquet", "png"},
    owners=OWNERS,
    code_version="1",
    pool=HOSTED_API_POOL,
    description=(
        "Optional (`provider: {name: eachlabs, mode: render}`): the hosted model's depth-guided "
        "re-render of each image from the catalog's prompt, stored as returned (PNG/JPG) with prompt "
        "and seed in the table. Catalogs not in render mode materialize an empty partition. "
        "Files: catalogs/<name>/depth_renders/<image_id>.<ext>; table: tables/depth_renders/."
    ),
)
def depth_renders(context: dg.AssetExecutionContext, storage: StorageResource,
                  catalogs: CatalogsResource, depth_provider: DepthProviderResource) -> dg.MaterializeResult:
    started_at = datetime.now(timezone.utc)
    catalog = catalogs.load().catalog(context.partition_key)
    if getattr(catalog.provider, "mode", "depth") != "render":
        return dg.MaterializeResult(metadata={
            "images": dg.MetadataValue.int(0), "cost_usd": dg.MetadataValue.float(0.0),
            "dagster/row_count": dg.MetadataValue.int(0),
            "note": dg.MetadataValue.text("catalog's provider is not in render mode: nothing to render")})
    store = storage.get()
    provider = depth_provider.for_catalog(catalog, purpose="render")
    params = catalog.provider.params
    try:
        result = run_renders(catalog.name, accepted_rows(store, catalog.name), provider, store,
                             prompt=params.prompt, seed=params.seed, run_id=context.run.run_id,
                             budget_usd=catalog.budget_usd_per_run, on_budget=catalog.on_budget,
                             log=context.log.info)
    except (BudgetExceeded, FileNotFoundError) as exc:
        raise dg.Failure(description=f"catalog {catalog.name!r}: {exc}") from None
    table_rel = store.write_partition(ASSET, catalog.name, result.table())
    over_ratio = bool(result.counts["images"]) and result.failure_ratio > catalog.max_failure_ratio
    lineage = record_materialization(
        store, context, counts=result.counts, seconds=result.seconds, started_at=started_at,
        calls=calls_from_rows(result.rows, run_id=context.run.run_id, asset=ASSET,
                              default_time=started_at,
                              secrets=[depth_provider.secrets().eachlabs_api_key]),
        status="failed" if over_ratio else "succeeded", config_hash=config_hash(catalog, params))
    metadata = {
        **counts_metadata(result.counts, result.seconds, len(result.rows)),
        **lineage,
        "table": dg.MetadataValue.path(store.uri(table_rel)),
        "output_dir": dg.MetadataValue.path(store.uri(f"catalogs/{catalog.name}/{ASSET}")),
        "preview": preview_table(result.rows, ["image_id", "status", "render_path", "prompt", "cost_usd",
                                               "error"]),
    }
    if over_ratio:
        raise dg.Failure(description=(f"catalog {catalog.name!r}: {result.counts['failed']} of "
                                      f"{result.counts['images']} renders failed, over max_failure_ratio "
                                      f"{catalog.max_failure_ratio:.0%}"), metadata=metadata)
    return dg.MaterializeResult(metadata=metadata)

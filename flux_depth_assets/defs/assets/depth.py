"""`depth_maps`: one depth map per accepted image, from the catalog's provider, cached per call."""

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
from flux_depth_assets.pipeline.depth_run import ASSET, BudgetExceeded, run_depth
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
        "One depth map per accepted image: 16-bit grayscale PNG, 0 = invalid, 1..65535 = far..near "
        "(relative inverse depth, min→1, max→65535; pre-normalisation min/max in the table), plus an "
        "optional float32 .npy. Every provider call is cached by (source sha256, provider, model, "
        "params). Files: catalogs/<name>/depth_maps/<image_id>.png; table: tables/depth_maps/."
    ),
)
def depth_maps(context: dg.AssetExecutionContext, storage: StorageResource,
               catalogs: CatalogsResource, depth_provider: DepthProviderResource) -> dg.MaterializeResult:
    started_at = datetime.now(timezone.utc)
    project = catalogs.load()
    catalog = project.catalog(context.partition_key)
    settings = project.settings_for(catalog.name).depth_maps
    store = storage.get()
    provider = depth_provider.for_catalog(catalog)
    try:
        accepted = accepted_rows(store, catalog.name)
        result = run_depth(catalog.name, accepted, provider, store, settings, run_id=context.run.run_id,
                           budget_usd=catalog.budget_usd_per_run, on_budget=catalog.on_budget,
                           log=context.log.info)
    except (BudgetExceeded, FileNotFoundError) as exc:
        raise dg.Failure(description=f"catalog {catalog.name!r}: {exc}") from None
    table_path = store.write_partition(ASSET, catalog.name, result.table())
    for row in [r for r in result.rows if r["status"] == "failed"][:20]:
        context.log.warning(f"depth failed for {row['image_id']}: {row['error']}")
    over_ratio = bool(result.counts["images"]) and result.failure_ratio > catalog.max_failure_ratio
    secrets = depth_provider.secrets()
    lineage = record_materialization(
        store, context, counts=result.counts, seconds=result.seconds, started_at=started_at,
        calls=calls_from_rows(result.rows, run_id=context.run.run_id, asset=ASSET,
                              default_time=started_at,
                              secrets=[secrets.eachlabs_api_key]),
        status="failed" if over_ratio else "succeeded",
        config_hash=config_hash(catalog, settings))
    metadata = {
        **counts_metadata(result.counts, result.seconds, len(result.rows)),
        **lineage,
        "provider": dg.MetadataValue.text(f"{provider.name}/{provider.model}"),
        "table": dg.MetadataValue.path(store.uri(table_path)),
        "depth_dir": dg.MetadataValue.path(store.uri(f"catalogs/{catalog.name}/{ASSET}")),
        "preview": preview_table(result.rows, ["image_id", "status", "depth_path", "seconds",
                                               "cost_usd", "error"]),
    }
    if over_ratio:
        raise dg.Failure(
            description=(f"catalog {catalog.name!r}: {result.counts['failed']} of "
                         f"{result.counts['images']} depth maps failed ({result.failure_ratio:.0%}), "
                         f"over max_failure_ratio {catalog.max_failure_ratio:.0%}; errors are in "
                         f"{store.uri(table_path)}"),
            metadata=metadata,
        )
    return dg.MaterializeResult(metadata=metadata)

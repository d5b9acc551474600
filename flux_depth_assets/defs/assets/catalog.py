"""`source_images`: the validated manifest of a catalog's images."""

from datetime import datetime, UTC

import dagster as dg

from flux_depth_assets.defs.constants import CATALOG_PARTITIONS, INGEST_GROUP
from flux_depth_assets.defs.metadata import counts_metadata, preview_table
from flux_depth_assets.defs.resources import CatalogsResource, StorageResource
from flux_depth_assets.defs.lineage import record_materialization
from flux_depth_assets.lineage.writer import config_hash
from flux_depth_assets.pipeline.scan import ASSET, scan_catalog
from flux_depth_assets.sources import SourceError


@dg.asset(
    name=ASSET,
    partitions_def=CATALOG_PARTITIONS,
    group_name=INGEST_GROUP,
    kinds={"python", "parquet", "pillow"},
    code_version="1",
    description=(
        "One row per file in the catalog's source: accepted images (id = first 16 hex of the "
        "content SHA-256, format, size, EXIF orientation; a normalised RGB PNG is stored) and "
        "rejected files with the reason. Table: tables/source_images/catalog={catalog}/."
    ),
)
def source_images(context: dg.AssetExecutionContext, storage: StorageResource,
                  catalogs: CatalogsResource) -> dg.MaterializeResult:
    started_at = datetime.now(UTC)
    catalog = catalogs.load().catalog(context.partition_key)
    store = storage.get()
    try:
        result = scan_catalog(catalog, store, log=context.log.info)
    except SourceError as exc:
        raise dg.Failure(description=f"catalog {catalog.name!r}: {exc}") from None
    table_path = store.write_partition(ASSET, catalog.name, result.table())
    for row in result.rejected[:20]:
        context.log.warning(f"rejected {row['source_uri']}: {row['reason']}")
    over_ratio = bool(result.counts["files"]) and result.reject_ratio > catalog.max_failure_ratio
    lineage = record_materialization(
        store, context, seconds=result.seconds, started_at=started_at,
        counts={"images": result.counts["files"], "new": result.counts["new"],
                "cached": result.counts["unchanged"], "rejected": result.counts["rejected"],
                "failed": 0},
        status="failed" if over_ratio else "succeeded",
        config_hash=config_hash(catalog.source, catalog.max_image_bytes, catalog.max_image_pixels))
    metadata = {
        **counts_metadata(result.counts, result.seconds, len(result.rows)),
        **lineage,
        "images": dg.MetadataValue.int(len(result.accepted)),
        "table": dg.MetadataValue.path(store.uri(table_path)),
        "preview": preview_table(result.rows, ["image_id", "status", "format", "width", "height",
                                               "source_uri", "reason"]),
    }
    if over_ratio:
        raise dg.Failure(
            description=(f"catalog {catalog.name!r}: {result.counts['rejected']} of "
                         f"{result.counts['files']} files rejected ({result.reject_ratio:.0%}), over "
                         f"max_failure_ratio {catalog.max_failure_ratio:.0%}; reasons are in "
                         f"{store.uri(table_path)}"),
            metadata=metadata,
        )
    return dg.MaterializeResult(metadata=metadata)

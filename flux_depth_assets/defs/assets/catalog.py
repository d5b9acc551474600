"""`source_images`: the validated manifest of a catalog's images."""

import dagster as dg

from flux_depth_assets.defs.constants import CATALOG_PARTITIONS, INGEST_GROUP
from flux_depth_assets.defs.finish import finish_asset, gate_spec, open_partition
from flux_depth_assets.defs.metadata import preview_table
from flux_depth_assets.defs.resources import CatalogsResource, ComputeResource, StorageResource
from flux_depth_assets.lineage.writer import config_hash
from flux_depth_assets.pipeline.scan import ASSET, scan_catalog
from flux_depth_assets.sources import SourceError


@dg.asset(
    name=ASSET,
    partitions_def=CATALOG_PARTITIONS,
    group_name=INGEST_GROUP,
    kinds={"python", "parquet", "pillow"},
    code_version="1",
    check_specs=[gate_spec(ASSET)],
    description=(
        "One row per file in the catalog's source: accepted images (id = first 16 hex of the "
        "content SHA-256, format, size, EXIF orientation; a normalised RGB PNG is stored) and "
        "rejected files with the reason. Table: tables/source_images/catalog={catalog}/."
    ),
)
def source_images(
    context: dg.AssetExecutionContext,
    storage: StorageResource,
    catalogs: CatalogsResource,
    compute: ComputeResource,
) -> dg.MaterializeResult:
    part = open_partition(context, catalogs, storage)
    catalog = part.catalog
    try:
        result = scan_catalog(catalog, part.store, log=context.log.info, pool=compute.pool())
    except SourceError as exc:
        raise dg.Failure(description=f"catalog {catalog.name!r}: {exc}") from None
    return finish_asset(
        context,
        part.store,
        catalog,
        ASSET,
        table=result.table(),
        rows=result.rows,
        counts={
            "images": result.counts["files"],
            "new": result.counts["new"],
            "cached": result.counts["unchanged"],
            "rejected": result.counts["rejected"],
            "failed": 0,
        },
        seconds=result.seconds,
        started_at=part.started_at,
        config_hash=config_hash(catalog.source, catalog.max_image_bytes, catalog.max_image_pixels),
        problems=[f"rejected {r['source_uri']}: {r['reason']}" for r in result.rejected[:20]],
        metadata={
            **{k: dg.MetadataValue.int(int(v)) for k, v in result.counts.items()},
            "images": dg.MetadataValue.int(len(result.accepted)),
            "preview": preview_table(
                result.rows,
                ["image_id", "status", "format", "width", "height", "source_uri", "reason"],
            ),
        },
    )

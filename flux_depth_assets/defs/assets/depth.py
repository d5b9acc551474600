"""`depth_maps`: one depth map per accepted image, from the catalog's provider, cached per call."""

import dagster as dg

from flux_depth_assets.defs.finish import open_partition
from flux_depth_assets.defs.provider_assets import materialize_provider_asset, provider_asset
from flux_depth_assets.defs.resources import (
    CatalogsResource,
    ComputeResource,
    DepthProviderResource,
    StorageResource,
)
from flux_depth_assets.pipeline.depth_run import ASSET, DepthMaps


@provider_asset(
    name=ASSET,
    description=(
        "One depth map per accepted image: 16-bit grayscale PNG, 0 = invalid, 1..65535 = far..near "
        "(relative inverse depth, min→1, max→65535; pre-normalisation min/max in the table), plus an "
        "optional float32 .npy. Every provider call is cached by (source sha256, provider, model, "
        "params). Files: catalogs/{catalog}/depth_maps/{image_id}.png; table: tables/depth_maps/."
    ),
)
def depth_maps(
    context: dg.AssetExecutionContext,
    storage: StorageResource,
    catalogs: CatalogsResource,
    depth_provider: DepthProviderResource,
    compute: ComputeResource,
) -> dg.MaterializeResult:
    part = open_partition(context, catalogs, storage)
    settings = part.project.settings_for(part.catalog.name).depth_maps
    provider = depth_provider.for_catalog(part.catalog)
    return materialize_provider_asset(
        context,
        part.catalog,
        part.store,
        depth_provider,
        DepthMaps(part.catalog.name, provider, part.store, settings, pool=compute.pool()),
        started_at=part.started_at,
        extra_metadata={"provider": dg.MetadataValue.text(f"{provider.name}/{provider.model}")},
    )

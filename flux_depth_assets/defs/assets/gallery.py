"""`catalog_gallery`: a static HTML page per catalog partition to browse every image's outputs.

Thin layer over `flux_depth_assets.gallery` (plain Python). The page's URI is in the
materialization metadata (`gallery`), so it is one click from the asset in the UI.
"""

from pathlib import Path

import dagster as dg

from flux_depth_assets.defs.assets.catalog import source_images
from flux_depth_assets.defs.assets.depth import depth_maps
from flux_depth_assets.defs.assets.derived import normal_maps, parallax_sprites
from flux_depth_assets.defs.constants import CATALOG_PARTITIONS, DERIVED_GROUP
from flux_depth_assets.defs.resources import ComputeResource, StorageResource
from flux_depth_assets.gallery import build_gallery


@dg.asset(
    deps=[source_images, depth_maps, normal_maps, parallax_sprites],
    partitions_def=CATALOG_PARTITIONS,
    group_name=DERIVED_GROUP,
    kinds={"python", "html"},
    automation_condition=dg.AutomationCondition.eager(),
)
def catalog_gallery(
    context: dg.AssetExecutionContext, storage: StorageResource, compute: ComputeResource
) -> dg.MaterializeResult:
    """A self-contained static page per catalog: each image's source, depth, normals and
    animated parallax preview (thumbnails), provider/model, cost and statuses, the rejected
    files with reasons, paginated (100 per page, lazy images) and an interactive parallax
    viewer; opens offline. Files: galleries/{catalog}/index.html."""
    store = storage.get()
    try:
        result = build_gallery(store, context.partition_key, pool=compute.pool())
    except FileNotFoundError as exc:
        raise dg.Failure(description=f"catalog {context.partition_key!r}: {exc}") from None
    return dg.MaterializeResult(
        metadata={
            "gallery": dg.MetadataValue.url(
                Path(store.uri(result.page_rel)).resolve().as_uri()
                if store.is_local
                else store.uri(result.page_rel)
            ),
            "page": dg.MetadataValue.path(store.uri(result.page_rel)),
            "images": result.images,
            "rejected": result.rejected,
            "pages": result.pages,
            "thumbnails_made": result.thumbs_made,
        }
    )

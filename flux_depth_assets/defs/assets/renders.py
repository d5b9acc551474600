"""`depth_renders`: prompt-driven, depth-guided re-renders for catalogs whose provider is in `render` mode."""

from datetime import UTC, datetime

import dagster as dg

from flux_depth_assets.defs.finish import gate_result
from flux_depth_assets.defs.provider_assets import materialize_provider_asset, provider_asset
from flux_depth_assets.defs.resources import (
    CatalogsResource,
    DepthProviderResource,
    StorageResource,
)
from flux_depth_assets.pipeline.gate import evaluate_gate
from flux_depth_assets.pipeline.render_run import ASSET, DepthRenders


@provider_asset(
    name=ASSET,
    description=(
        "Optional (`provider: {name: eachlabs, mode: render}`): the hosted model's depth-guided "
        "re-render of each image from the catalog's prompt, stored as returned (PNG/JPG) with prompt "
        "and seed in the table. Catalogs not in render mode materialize an empty partition. "
        "Files: catalogs/{catalog}/depth_renders/{image_id}.<ext>; table: tables/depth_renders/."
    ),
)
def depth_renders(
    context: dg.AssetExecutionContext,
    storage: StorageResource,
    catalogs: CatalogsResource,
    depth_provider: DepthProviderResource,
) -> dg.MaterializeResult:
    started_at = datetime.now(UTC)
    catalog = catalogs.load().catalog(context.partition_key)
    if getattr(catalog.provider, "mode", "depth") != "render":
        return dg.MaterializeResult(
            metadata={
                "images": dg.MetadataValue.int(0),
                "cost_usd": dg.MetadataValue.float(0.0),
                "dagster/row_count": dg.MetadataValue.int(0),
                "note": dg.MetadataValue.text(
                    "catalog's provider is not in render mode: nothing to render"
                ),
            },
            check_results=[
                gate_result(
                    ASSET,
                    evaluate_gate(
                        [],
                        asset=ASSET,
                        catalog=catalog.name,
                        threshold=catalog.max_failure_ratio,
                        where="(no rows)",
                    ),
                )
            ],
        )
    store = storage.get()
    provider = depth_provider.for_catalog(catalog, purpose="render")
    params = catalog.provider.params  # type: ignore[union-attr]  # render mode: a hosted provider
    return materialize_provider_asset(
        context,
        catalog,
        store,
        depth_provider,
        DepthRenders(catalog.name, provider, store, params),
        started_at=started_at,
    )

"""The common shape of every provider-backed asset: decorator, one-line failures, lineage calls.

`depth_maps` and `depth_renders` only differ in what they compute; how a run is recorded and
when it fails is decided here and in `defs.finish` (shared with every other asset).
"""

from collections.abc import Callable
from datetime import datetime
from typing import Any

import dagster as dg

from flux_depth_assets.config import CatalogConfig
from flux_depth_assets.defs.assets.catalog import source_images
from flux_depth_assets.defs.constants import CATALOG_PARTITIONS, DEPTH_GROUP, HOSTED_API_POOL
from flux_depth_assets.defs.finish import finish_asset, gate_spec, require_upstream_gates
from flux_depth_assets.defs.metadata import preview_table
from flux_depth_assets.defs.resources import DepthProviderResource
from flux_depth_assets.lineage.writer import calls_from_rows, config_hash
from flux_depth_assets.pipeline.paid import PaidRunError
from flux_depth_assets.pipeline.provider_run import (
    BudgetExceeded,
    ProviderAsset,
    run_provider_asset,
)
from flux_depth_assets.pipeline.scan import accepted_rows
from flux_depth_assets.providers.base import ProviderNotReady
from flux_depth_assets.storage.store import Storage


def provider_asset(
    name: str, description: str
) -> Callable[[Callable[..., Any]], dg.AssetsDefinition]:
    """The `@dg.asset` of a per-catalog asset that calls a depth provider (and may pay for it)."""
    return dg.asset(
        name=name,
        description=description,
        deps=[source_images],
        partitions_def=CATALOG_PARTITIONS,
        group_name=DEPTH_GROUP,
        kinds={"python", "parquet", "png"},
        code_version="1",
        pool=HOSTED_API_POOL,
        check_specs=[gate_spec(name)],
    )


def materialize_provider_asset(
    context: dg.AssetExecutionContext,
    catalog: CatalogConfig,
    store: Storage,
    depth_provider: DepthProviderResource,
    asset: ProviderAsset,
    *,
    started_at: datetime,
    extra_metadata: dict[str, Any] | None = None,
) -> dg.MaterializeResult:
    """Run `asset` on the catalog's accepted images and record the run. A budget stop, an
    unusable provider, a missing upstream table or an upstream over its failure gate becomes a
    one-line Failure (nothing was paid in any case)."""
    require_upstream_gates(store, catalog, [source_images.key.to_user_string()])
    try:
        result = run_provider_asset(
            asset,
            accepted_rows(store, catalog.name),
            run_id=context.run.run_id,
            budget_usd=catalog.budget_usd_per_run,
            on_budget=catalog.on_budget,
            log=context.log.info,
            started_at=started_at,
        )
    except (BudgetExceeded, ProviderNotReady, PaidRunError, FileNotFoundError) as exc:
        raise dg.Failure(description=f"catalog {catalog.name!r}: {exc}") from None
    return finish_asset(
        context,
        store,
        catalog,
        asset.name,
        table=result.table(),
        rows=result.rows,
        counts=result.counts,
        seconds=result.seconds,
        started_at=started_at,
        config_hash=config_hash(catalog, asset.config),
        problems=[
            f"{asset.name} failed for {r['image_id']}: {r['error']}"
            for r in result.rows
            if r["status"] == "failed"
        ][:20],
        calls=calls_from_rows(
            result.rows,
            run_id=context.run.run_id,
            asset=asset.name,
            default_time=started_at,
            secrets=depth_provider.secrets(catalog.provider).values(),
        ),
        metadata={
            **(extra_metadata or {}),
            "output_dir": dg.MetadataValue.path(store.uri(f"catalogs/{catalog.name}/{asset.name}")),
            "preview": preview_table(result.rows, list(asset.preview_columns)),
        },
        contact_sheet=asset.name == "depth_maps",
    )

"""The common end of every provider-backed asset: table, lineage, metadata, failure threshold.

`depth_maps` and `depth_renders` only differ in what they compute; how a run is recorded and
when it fails is decided here, once.
"""

from datetime import datetime
from typing import Any
from collections.abc import Callable

import dagster as dg

from flux_depth_assets.config import CatalogConfig
from flux_depth_assets.defs.assets.catalog import source_images
from flux_depth_assets.defs.constants import CATALOG_PARTITIONS, DEPTH_GROUP, HOSTED_API_POOL
from flux_depth_assets.defs.metadata import counts_metadata, preview_table
from flux_depth_assets.defs.resources import DepthProviderResource
from flux_depth_assets.defs.lineage import record_materialization
from flux_depth_assets.lineage.writer import calls_from_rows, config_hash
from flux_depth_assets.pipeline.paid import PaidRunError
from flux_depth_assets.pipeline.provider_run import BudgetExceeded, ProviderRunResult
from flux_depth_assets.providers.base import ProviderNotReady
from flux_depth_assets.storage.store import Storage


def provider_asset(name: str,
                   description: str) -> Callable[[Callable[..., Any]], dg.AssetsDefinition]:
    """The `@dg.asset` of a per-catalog asset that calls a depth provider (and may pay for it)."""
    return dg.asset(name=name, description=description, deps=[source_images],
                    partitions_def=CATALOG_PARTITIONS, group_name=DEPTH_GROUP,
                    kinds={"python", "parquet", "png"}, code_version="1",
                    pool=HOSTED_API_POOL)


def run_or_fail(catalog: CatalogConfig, fn: Callable[[], ProviderRunResult]) -> ProviderRunResult:
    """Run the pipeline; a budget stop, an unusable provider or a missing upstream table becomes
    a one-line Failure (nothing was paid in any of these cases)."""
    try:
        return fn()
    except (BudgetExceeded, ProviderNotReady, PaidRunError, FileNotFoundError) as exc:
        raise dg.Failure(description=f"catalog {catalog.name!r}: {exc}") from None


def finish_provider_asset(context: dg.AssetExecutionContext, store: Storage, catalog: CatalogConfig,
                          asset: str, result: ProviderRunResult,
                          depth_provider: DepthProviderResource, *, started_at: datetime,
                          settings: Any, preview_columns: list[str],
                          extra_metadata: dict[str, Any] | None = None) -> dg.MaterializeResult:
    table_rel = store.write_partition(asset, catalog.name, result.table())
    for row in [r for r in result.rows if r["status"] == "failed"][:20]:
        context.log.warning(f"{asset} failed for {row['image_id']}: {row['error']}")
    over_ratio = bool(result.counts["images"]) and result.failure_ratio > catalog.max_failure_ratio
    lineage = record_materialization(
        store, context, counts=result.counts, seconds=result.seconds, started_at=started_at,
        calls=calls_from_rows(result.rows, run_id=context.run.run_id, asset=asset,
                              default_time=started_at,
                              secrets=depth_provider.secrets(catalog.provider).values()),
        status="failed" if over_ratio else "succeeded",
        config_hash=config_hash(catalog, settings))
    metadata = {
        **counts_metadata(result.counts, result.seconds, len(result.rows)),
        **lineage,
        **(extra_metadata or {}),
        "table": dg.MetadataValue.path(store.uri(table_rel)),
        "output_dir": dg.MetadataValue.path(store.uri(f"catalogs/{catalog.name}/{asset}")),
        "preview": preview_table(result.rows, preview_columns),
    }
    if over_ratio:
        raise dg.Failure(
            description=(f"catalog {catalog.name!r}: {result.counts['failed']} of "
                         f"{result.counts['images']} {asset.replace('_', ' ')} failed ({result.failure_ratio:.0%}), "
                         f"over max_failure_ratio {catalog.max_failure_ratio:.0%}; errors are in "
                         f"{store.uri(table_rel)}"),
            metadata=metadata)
    return dg.MaterializeResult(metadata=metadata)

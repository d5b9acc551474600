"""The one call an asset makes to record its lineage and get the metadata every asset reports.

    started_at = datetime.now(UTC)
    ...                                    # do the work
    lineage_meta = record_materialization(store, context, counts=counts, seconds=secs,
                                          started_at=started_at, calls=calls)
    return dg.MaterializeResult(metadata={**other_metadata, **lineage_meta})

The rows are written by the plain `lineage.record.record_lineage`; this module reads run id,
asset, partition (= catalog) and code version from the context and builds Dagster metadata.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import dagster as dg

from flux_depth_assets.lineage.record import record_lineage
from flux_depth_assets.storage.store import Storage


def record_materialization(
    store: Storage,
    context: dg.AssetExecutionContext,
    *,
    counts: Mapping[str, int],
    seconds: float,
    started_at: datetime,
    calls: Iterable[Mapping[str, Any]] | None = None,
    status: str = "succeeded",
    config_hash: str | None = None,
    row_count: int | None = None,
) -> dict[str, dg.MetadataValue]:
    """Write the step's lineage rows (see `record_lineage`) and return the metadata every
    partitioned materialization reports: `cost_usd`, `provider_calls`, `cached`, the lineage file
    paths, and `dagster/row_count` when `row_count` is given."""
    rec = record_lineage(
        store, run_id=context.run.run_id, asset=context.asset_key.to_user_string(),
        catalog=context.partition_key, code_version=code_version(context), counts=counts,
        seconds=seconds, started_at=started_at, calls=calls, status=status, config_hash=config_hash,
    )  # fmt: skip
    meta: dict[str, dg.MetadataValue] = {
        "cost_usd": dg.MetadataValue.float(round(rec.cost_usd, 6)),
        "provider_calls": dg.MetadataValue.int(rec.provider_calls),
        "cached": dg.MetadataValue.int(rec.cached),
        "lineage_materializations": dg.MetadataValue.path(store.uri(rec.materializations_rel)),
    }
    if rec.provider_calls_rel:
        meta["lineage_provider_calls"] = dg.MetadataValue.path(store.uri(rec.provider_calls_rel))
    if row_count is not None:
        meta["dagster/row_count"] = dg.MetadataValue.int(int(row_count))
    return meta


def code_version(context: dg.AssetExecutionContext) -> str | None:
    """The asset's declared code version; None for a context with no assets definition (a
    directly invoked op)."""
    if not context.has_assets_def:
        return None
    return context.assets_def.code_versions_by_key.get(context.asset_key)

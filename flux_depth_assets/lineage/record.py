"""The one call an asset makes to record its lineage and get the cost metadata every asset reports.

    started_at = datetime.now(timezone.utc)
    ...                                    # do the work
    lineage_meta = record_materialization(store, context, counts=counts, seconds=secs,
                                          started_at=started_at, calls=calls)
    return dg.MaterializeResult(metadata={**other_metadata, **lineage_meta})
"""

from __future__ import annotations

from datetime import datetime, UTC
from typing import Any
from collections.abc import Iterable, Mapping

import dagster as dg  # noqa: TID251 - moved to defs/ in the next commit (#18)

from flux_depth_assets.lineage.writer import materialization_row, utc_day, write_rows
from flux_depth_assets.storage.store import Storage


def record_materialization(store: Storage, context: dg.AssetExecutionContext | None = None, *,
                           counts: Mapping[str, int], seconds: float, started_at: datetime,
                           finished_at: datetime | None = None,
                           calls: Iterable[Mapping[str, Any]] | None = None,
                           cost_usd: float | None = None, provider_calls: int | None = None,
                           status: str = "succeeded", config_hash: str | None = None,
                           run_id: str | None = None, asset: str | None = None,
                           catalog: str | None = None, code_version: str | None = None,
                           row_count: int | None = None) -> dict[str, dg.MetadataValue]:
    """Append this step's `materializations` row (and its `provider_calls` rows, if any).

    - `context` supplies run id, asset name, partition (= catalog) and code version; explicit
      keyword arguments win (and make `context` optional, e.g. in plain-Python tests).
    - `counts`: `images`, `new`, `cached`, `failed`, `rejected`, `skipped_budget` (omit what
      does not apply to the asset).
    - `calls`: `provider_calls` rows (see `calls_from_rows`); when given, `cost_usd` and
      `provider_calls` default to their sums, so the two tables always agree.
    - Call it before raising a `dg.Failure` after money was spent, with `status="failed"`.

    Returns the metadata every partitioned materialization reports: `cost_usd`,
    `provider_calls`, `cached`, the lineage file paths, and `dagster/row_count` when `row_count`
    is given.
    """
    finished_at = finished_at or datetime.now(UTC)
    run_id = run_id or context.run.run_id
    asset = asset or context.asset_key.to_user_string()
    catalog = catalog or context.partition_key
    if code_version is None and context is not None:
        code_version = _code_version(context)
    call_rows = list(calls or [])
    paid = [c for c in call_rows if not c.get("cached") and c.get("status") != "skipped_budget"]
    if cost_usd is None:
        cost_usd = float(sum(c.get("cost_usd") or 0.0 for c in call_rows))
    if provider_calls is None:
        provider_calls = len(paid)
    day = utc_day(started_at)
    calls_path = write_rows(store, "provider_calls", catalog=catalog, day=day, run_id=run_id,
                            asset=asset, rows=call_rows) if call_rows else None
    row = materialization_row(run_id=run_id, asset=asset, counts=counts, cost_usd=cost_usd,
                              seconds=seconds, started_at=started_at, finished_at=finished_at,
                              provider_calls=provider_calls, status=status,
                              code_version=code_version, config_hash=config_hash)
    mat_path = write_rows(store, "materializations", catalog=catalog, day=day, run_id=run_id,
                          asset=asset, rows=[row])
    meta: dict[str, dg.MetadataValue] = {
        "cost_usd": dg.MetadataValue.float(round(float(cost_usd), 6)),
        "provider_calls": dg.MetadataValue.int(int(provider_calls)),
        "cached": dg.MetadataValue.int(int(counts.get("cached") or 0)),
        "lineage_materializations": dg.MetadataValue.path(store.uri(mat_path)),
    }
    if calls_path:
        meta["lineage_provider_calls"] = dg.MetadataValue.path(store.uri(calls_path))
    if row_count is not None:
        meta["dagster/row_count"] = dg.MetadataValue.int(int(row_count))
    return meta


def _code_version(context: dg.AssetExecutionContext) -> str | None:
    try:
        return context.assets_def.code_versions_by_key.get(context.asset_key)
    except Exception:  # noqa: BLE001 - narrowed in the next commit (#18); a directly-invoked op or a context without an assets def
        return None

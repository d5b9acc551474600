"""Record one step's lineage: its `materializations` row and its `provider_calls` rows.

Plain Python: the Dagster side (run id, asset, partition and code version from the asset context,
and the metadata every asset reports) is `defs/lineage.py`, which calls `record_lineage`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

from flux_depth_assets.lineage.writer import materialization_row, utc_day, write_rows
from flux_depth_assets.storage.store import Storage


@dataclass(frozen=True)
class RecordedLineage:
    """What was written, and the totals an asset reports."""

    cost_usd: float
    provider_calls: int
    cached: int
    materializations_rel: str
    provider_calls_rel: str | None  # None: the step made no provider calls


def record_lineage(
    store: Storage,
    *,
    run_id: str,
    asset: str,
    catalog: str,
    counts: Mapping[str, int],
    seconds: float,
    started_at: datetime,
    finished_at: datetime | None = None,
    calls: Iterable[Mapping[str, Any]] | None = None,
    cost_usd: float | None = None,
    provider_calls: int | None = None,
    status: str = "succeeded",
    config_hash: str | None = None,
    code_version: str | None = None,
) -> RecordedLineage:
    """Append this step's `materializations` row (and its `provider_calls` rows, if any).

    - `counts`: `images`, `new`, `cached`, `failed`, `rejected`, `skipped_budget` (omit what
      does not apply to the asset).
    - `calls`: `provider_calls` rows (see `calls_from_rows`); when given, `cost_usd` and
      `provider_calls` default to their sums, so the two tables always agree.
    - Call it before failing a step after money was spent, with `status="failed"`.
    """
    finished_at = finished_at or datetime.now(UTC)
    call_rows = list(calls or [])
    paid = [c for c in call_rows if not c.get("cached") and c.get("status") != "skipped_budget"]
    if cost_usd is None:
        cost_usd = float(sum(c.get("cost_usd") or 0.0 for c in call_rows))
    if provider_calls is None:
        provider_calls = len(paid)
    write = partial(
        write_rows, store, catalog=catalog, day=utc_day(started_at), run_id=run_id, asset=asset
    )
    calls_rel = write("provider_calls", rows=call_rows) if call_rows else None
    row = materialization_row(
        run_id=run_id, asset=asset, counts=counts, cost_usd=cost_usd, seconds=seconds,
        started_at=started_at, finished_at=finished_at, provider_calls=provider_calls,
        status=status, code_version=code_version, config_hash=config_hash,
    )  # fmt: skip
    mat_rel = write("materializations", rows=[row])
    assert mat_rel is not None  # one row always makes a file
    return RecordedLineage(
        cost_usd=float(cost_usd),
        provider_calls=int(provider_calls),
        cached=int(counts.get("cached") or 0),
        materializations_rel=mat_rel,
        provider_calls_rel=calls_rel,
    )

"""What every provider-backed asset shares: inputs, the budget guard, the cost rule, the tally.

`depth_maps` and `depth_renders` differ only in what they do with a prediction; everything that
decides whether and what to pay lives here, once.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import pyarrow as pa
from PIL import Image

from flux_depth_assets.depth.encoding import decode_image
from flux_depth_assets.providers.base import (
    DepthPrediction,
    DepthProvider,
    ProgressFn,
    ProviderInput,
)
from flux_depth_assets.storage.schemas import table_from_rows
from flux_depth_assets.storage.store import Storage

STATUSES = ("succeeded", "cached", "failed", "skipped_budget")


class BudgetExceeded(RuntimeError):
    """The run would pay more than the catalog's `budget_usd_per_run`; nothing was paid."""


@dataclass
class ProviderRunResult:
    """Rows in source order plus counts (`images`, `new`, `cached`, `failed`, `skipped_budget`)."""

    rows: list[dict]
    schema: pa.Schema
    counts: dict[str, int] = field(default_factory=dict)
    cost_usd: float = 0.0
    seconds: float = 0.0

    def table(self) -> pa.Table:
        return table_from_rows(self.rows, self.schema)

    @property
    def failure_ratio(self) -> float:
        images = self.counts.get("images", 0)
        return self.counts.get("failed", 0) / images if images else 0.0


def load_normalized(storage: Storage, rel: str) -> Image.Image:
    return Image.fromarray(decode_image(storage.read_bytes(rel), "RGB"), "RGB")


def pending_input(source_row: dict, cache_key: str, storage: Storage) -> ProviderInput:
    """A provider input whose pixels are read from the normalised copy only when needed."""
    return ProviderInput(
        image_id=source_row["image_id"],
        source_sha256=source_row["sha256"],
        cache_key=cache_key,
        load_image=partial(load_normalized, storage, source_row["normalized_path"]),
        source_uri=source_row.get("source_uri") or "",
    )


def skipped_row(base: dict, item: ProviderInput, **extra: Any) -> dict:
    return {
        **base,
        **extra,
        "image_id": item.image_id,
        "source_sha256": item.source_sha256,
        "cache_key": item.cache_key,
        "status": "skipped_budget",
        "error": "skipped: over budget_usd_per_run",
        "cost_usd": 0.0,
        "attempts": 0,
    }


def apply_budget(
    pending: list[ProviderInput], provider: DepthProvider, budget: float | None, on_budget: str
) -> tuple[list[ProviderInput], list[ProviderInput]]:
    """(to send, to skip). Raises before any paid call when `on_budget` is `stop`."""
    if budget is None or provider.price_usd <= 0 or not pending:
        return pending, []
    need = len(pending) * provider.price_usd
    if need <= budget + 1e-9:
        return pending, []
    if on_budget == "partial":
        n = math.floor(budget / provider.price_usd + 1e-9)
        return pending[:n], pending[n:]
    raise BudgetExceeded(
        f"budget exceeded before any paid call: {len(pending)} pending image(s) × "
        f"${provider.price_usd:.4f} = ${need:.2f} > budget_usd_per_run ${budget:.2f} "
        f"(set on_budget: partial to process up to the budget)"
    )


def prediction_chunks(
    provider: DepthProvider,
    pending: list[ProviderInput],
    progress: ProgressFn,
    chunk_size: int = 256,
) -> Iterator[list[DepthPrediction]]:
    """Yield predictions chunk by chunk, so a 100k-image run never holds every result in memory
    and each chunk's outputs are cached (and its journal settled) before the next is sent."""
    for start in range(0, len(pending), chunk_size):
        yield provider.predict_many(pending[start : start + chunk_size], progress=progress)


def predict_in_chunks(
    provider: DepthProvider,
    pending: list[ProviderInput],
    progress: ProgressFn,
    chunk_size: int = 256,
) -> Iterator[DepthPrediction]:
    """`prediction_chunks`, one prediction at a time."""
    for chunk in prediction_chunks(provider, pending, progress, chunk_size):
        yield from chunk


def call_cost(pred: DepthPrediction, price_usd: float) -> float:
    """USD of one provider call. The provider's own figure wins (`cost_usd` > 0, or an explicit
    `extra["cost_reported"]` for a reported zero); otherwise the configured `price_usd` is charged
    for every prediction the host executed: succeeded, or failed after it was created (it has a
    prediction id). A call that never created a prediction costs nothing."""
    if pred.cost_usd or pred.extra.get("cost_reported"):
        return float(pred.cost_usd or 0.0)
    if pred.status == "succeeded" or pred.prediction_id:
        return float(price_usd)
    return 0.0


def call_times(pred: DepthPrediction, batch_started: datetime | None) -> tuple[datetime, datetime]:
    """(started_at, finished_at) of a call: the provider's own timestamps in `extra` when it
    reports them, else the batch's start and start + latency."""
    start = pred.extra.get("started_at") or batch_started or datetime.now(UTC)
    end = pred.extra.get("finished_at") or start + timedelta(seconds=float(pred.latency_s or 0.0))
    return start, end


def prediction_fields(
    pred: DepthPrediction, price_usd: float, batch_started: datetime | None
) -> dict:
    """The columns every provider call fills in, whatever the asset."""
    started_at, finished_at = call_times(pred, batch_started)
    return {
        "seconds": pred.latency_s,
        "prediction_id": pred.prediction_id,
        "attempts": pred.attempts,
        "http_status": pred.http_status,
        "cost_usd": call_cost(pred, price_usd),
        "started_at": started_at,
        "finished_at": finished_at,
        "resumed": bool(pred.extra.get("resumed")),
        "uncertain_attempts": int(pred.extra.get("uncertain_create_attempts") or 0),
        "uncertain_cost_usd": float(pred.extra.get("uncertain_cost_usd") or 0.0),
        "host": pred.extra.get("host"),
    }


def tally(
    rows_by_id: dict[str, dict], accepted: list[dict], schema: pa.Schema, started: float
) -> ProviderRunResult:
    """Order rows like the source, stamp new rows, count statuses and cost."""
    ordered = [rows_by_id[r["image_id"]] for r in accepted if r["image_id"] in rows_by_id]
    now = datetime.now(UTC)
    for row in ordered:
        if row["status"] != "cached" or not row.get("materialized_at"):
            row["materialized_at"] = now
    counts = {"images": len(ordered)}
    for status in STATUSES:
        counts[status] = sum(r["status"] == status for r in ordered)
    counts["new"] = counts.pop("succeeded")
    return ProviderRunResult(
        rows=ordered,
        schema=schema,
        counts=counts,
        cost_usd=float(sum(r.get("cost_usd") or 0.0 for r in ordered)),
        seconds=time.perf_counter() - started,
    )

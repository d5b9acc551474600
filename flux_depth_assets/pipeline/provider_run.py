"""What every provider-backed asset shares: inputs, the budget guard, the cost rule, the run, the
tally.

`depth_maps` and `depth_renders` differ only in what they reuse and what they do with a
prediction (a `ProviderAsset`); everything that decides whether and what to pay, and in which
order, lives here once: `run_provider_asset`.
"""

from __future__ import annotations

import abc
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, ClassVar

import pyarrow as pa
from PIL import Image

from flux_depth_assets.depth.encoding import decode_image
from flux_depth_assets.lineage.writer import redact
from flux_depth_assets.pipeline.paid import PaidRun, paid_run
from flux_depth_assets.providers.base import (
    DepthPrediction,
    DepthProvider,
    ProgressFn,
    ProviderInput,
    cache_key,
)
from flux_depth_assets.storage.cache import DepthCache
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


# --------------------------------------------------------------------------- the run


@dataclass(frozen=True)
class Batch:
    """What the rows of one run's provider batch share: the run's columns, price and start, and
    the source rows by image id."""

    base: dict[str, Any]
    price_usd: float
    started: datetime
    sources: dict[str, dict]


class ProviderAsset(abc.ABC):
    """What one provider-backed asset does with its images; `run_provider_asset` does the rest."""

    name: ClassVar[str]
    schema: ClassVar[pa.Schema]
    preview_columns: ClassVar[tuple[str, ...]]

    def __init__(
        self,
        catalog: str,
        provider: DepthProvider,
        storage: Storage,
        cache: DepthCache,
        config: Any,
        columns: dict[str, Any] | None = None,
    ):
        self.catalog, self.provider, self.storage, self.cache = catalog, provider, storage, cache
        self.config = config  # the settings the outputs depend on (the run's `config_hash`)
        self.columns = columns or {}  # this asset's own columns, on every row of a run

    def prepare(self) -> None:
        """Read what this run may reuse (called under the guard, before the first image)."""

    def source_columns(self, source: dict) -> dict[str, Any]:
        """Columns copied from the source row onto rows that no stored result fills in."""
        return {}

    @abc.abstractmethod
    def reuse(self, source: dict, common: dict) -> dict | None:
        """The row of an image that needs no provider call, or None to send it."""

    @abc.abstractmethod
    def announce(self, pending: int, done: int) -> str:
        """The log line before the provider is called for `pending` images."""

    def local_rows(
        self, pending: list[ProviderInput], batch: Batch, log: Callable[[str], None]
    ) -> Iterable[tuple[str, dict]] | None:
        """(image_id, row) of every pending image when it is free work done here, else None."""
        return None

    @abc.abstractmethod
    def outcome(self, pred: DepthPrediction) -> dict[str, Any]:
        """`status` and `error` of the row billed for `pred`, before its result is stored."""

    @abc.abstractmethod
    def store(self, pred: DepthPrediction, item: ProviderInput, billed: dict, batch: Batch) -> dict:
        """The row once `pred`'s result is cached and written; OSError when storage fails."""


def run_provider_asset(
    asset: ProviderAsset,
    accepted: list[dict],
    *,
    run_id: str = "",
    budget_usd: float | None = None,
    on_budget: str = "stop",
    log: Callable[[str], None] | None = None,
    started_at: datetime | None = None,
) -> ProviderRunResult:
    """`asset` for every accepted image: reuse what needs no call, check the budget, then pay
    under the guard (`pipeline.paid`). Raises `PaidRunError` (one line) when a paid run may not
    start or had to stop early; whatever was paid by then is cached or journaled, and recorded."""
    say = log or (lambda _m: None)
    provider = asset.provider
    with paid_run(
        asset.storage,
        asset.catalog,
        asset.name,
        provider,
        run_id=run_id,
        started_at=started_at,
        images=len(accepted),
        log=say,
    ) as guard:
        t0 = time.perf_counter()
        asset.prepare()
        base = {
            "provider": provider.name,
            "model": provider.model,
            "model_version": provider.model_version,
            "params_hash": provider.params_hash(),
            **asset.columns,
            "run_id": guard.run_id,
        }
        rows, pending = _reuse(asset, accepted, base)
        if provider.price_usd > 0 and rows:  # entries a killed run left for results it had cached
            guard.settle([r["cache_key"] for r in rows.values()])
        pending, skipped = apply_budget(pending, provider, budget_usd, on_budget)
        sources = {r["image_id"]: r for r in accepted}
        for item in skipped:
            extra = asset.source_columns(sources[item.image_id])
            rows[item.image_id] = skipped_row(base, item, **extra)
        if pending:
            provider.check_ready()
            guard.probe("cache")
            say(asset.announce(len(pending), len(rows)))
            batch = Batch(base, provider.price_usd, datetime.now(UTC), sources)
            local = asset.local_rows(pending, batch, say)
            if local is not None:
                rows.update(local)
            else:
                _pay(asset, guard, pending, batch, rows, say)
        return tally(rows, accepted, asset.schema, t0)


def _reuse(
    asset: ProviderAsset, accepted: list[dict], base: dict
) -> tuple[dict[str, dict], list[ProviderInput]]:
    """(rows of the images that need no call, inputs of the others), in source order."""
    rows: dict[str, dict] = {}
    pending: list[ProviderInput] = []
    provider = asset.provider
    for r in accepted:  # the parameters' hash is the run's (`base`), not redone per image
        key = cache_key(r["sha256"], provider.name, provider.model, base["params_hash"])
        common = {
            **base,
            "image_id": r["image_id"],
            "source_sha256": r["sha256"],
            "cache_key": key,
            **asset.source_columns(r),
        }
        row = asset.reuse(r, common)
        if row is None:
            pending.append(pending_input(r, key, asset.storage))
        else:
            rows[r["image_id"]] = row
    return rows, pending


def _pay(
    asset: ProviderAsset,
    guard: PaidRun,
    pending: list[ProviderInput],
    batch: Batch,
    rows: dict[str, dict],
    log: Callable[[str], None],
) -> None:
    """Pay for `pending` chunk by chunk in the order that never pays twice: each chunk's bill is
    recorded, then its results are stored, then its journal entries are settled."""
    provider = asset.provider
    items = {p.image_id: p for p in pending}
    for chunk in prediction_chunks(provider, pending, log):
        chunk = guard.resolve_costs(chunk)
        for pred in chunk:  # the bill first: recorded before anything is cached
            item = items[pred.image_id]
            rows[pred.image_id] = {
                **batch.base,
                "image_id": pred.image_id,
                "source_sha256": item.source_sha256,
                "cache_key": item.cache_key,
                **asset.outcome(pred),
                **prediction_fields(pred, batch.price_usd, batch.started),
            }
        if provider.price_usd > 0:
            guard.record(rows.values())
        durable, store_errors = [], []
        for pred in chunk:
            item, billed = items[pred.image_id], rows[pred.image_id]
            try:
                rows[pred.image_id] = asset.store(pred, item, billed, batch)
            except OSError as exc:  # storage full or read-only: the journal keeps it
                store_errors.append(f"{type(exc).__name__}: {exc}")
                rows[pred.image_id] = {
                    **billed,
                    "status": "failed",
                    "error": redact(f"could not store the result: {exc}"),
                }
                continue
            durable.append(item.cache_key)
        guard.settle(durable)
        guard.check(store_errors)

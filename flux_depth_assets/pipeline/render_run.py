"""`render` mode: prompt-driven, depth-guided re-renders, kept exactly as the host returned them.

Same rules as depth maps: cache by (source sha256, provider, model, params) first, budget check
before the first paid call, one failed image never sinks the run.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from datetime import UTC, datetime

from flux_depth_assets.lineage.writer import redact
from flux_depth_assets.pipeline.paid import PaidRun, paid_run
from flux_depth_assets.pipeline.provider_run import (
    ProviderRunResult,
    apply_budget,
    pending_input,
    prediction_chunks,
    prediction_fields,
    skipped_row,
    tally,
)
from flux_depth_assets.providers.base import DepthPrediction, DepthProvider, ProviderInput
from flux_depth_assets.storage.cache import DepthCache
from flux_depth_assets.storage.schemas import DEPTH_RENDERS
from flux_depth_assets.storage.store import Storage

ASSET = "depth_renders"


def run_renders(
    catalog: str,
    accepted: list[dict],
    provider: DepthProvider,
    storage: Storage,
    *,
    prompt: str = "",
    seed: int | None = None,
    run_id: str = "",
    budget_usd: float | None = None,
    on_budget: str = "stop",
    log: Callable[[str], None] | None = None,
    started_at: datetime | None = None,
) -> ProviderRunResult:
    """Raises `PaidRunError` (one line) when a paid run may not start or had to stop early."""
    log = log or (lambda _m: None)
    with paid_run(
        storage,
        catalog,
        ASSET,
        provider,
        run_id=run_id,
        started_at=started_at,
        images=len(accepted),
        log=log,
    ) as guard:
        return _run_renders(
            guard,
            catalog,
            accepted,
            provider,
            storage,
            prompt=prompt,
            seed=seed,
            budget_usd=budget_usd,
            on_budget=on_budget,
            log=log,
        )


def _run_renders(
    guard: PaidRun,
    catalog: str,
    accepted: list[dict],
    provider: DepthProvider,
    storage: Storage,
    *,
    prompt: str,
    seed: int | None,
    budget_usd: float | None,
    on_budget: str,
    log: Callable[[str], None],
) -> ProviderRunResult:
    t0 = time.perf_counter()
    run_id = guard.run_id
    cache = DepthCache(storage, kind="render")
    base = dict(
        provider=provider.name,
        model=provider.model,
        model_version=provider.model_version,
        params_hash=provider.params_hash(),
        prompt=prompt,
        seed=seed,
        run_id=run_id,
    )
    rows: dict[str, dict] = {}
    pending: list[ProviderInput] = []
    for r in accepted:
        key = provider.cache_key(r["sha256"])
        common = {**base, "image_id": r["image_id"], "source_sha256": r["sha256"], "cache_key": key}
        hit = cache.get_bytes(key)
        if hit is not None:
            data, meta = hit
            rows[r["image_id"]] = {
                **common,
                **_write(storage, catalog, r["image_id"], data, meta["ext"]),
                "status": "cached",
                "cost_usd": 0.0,
                "attempts": 0,
                "prediction_id": meta.get("prediction_id"),
                "seconds": 0.0,
            }
            continue
        pending.append(pending_input(r, key, storage))
    if provider.price_usd > 0 and rows:  # entries a killed run left for results it had cached
        guard.settle([r["cache_key"] for r in rows.values()])
    pending, skipped = apply_budget(pending, provider, budget_usd, on_budget)
    for item in skipped:
        rows[item.image_id] = skipped_row(base, item)
    if pending:
        provider.check_ready()
        guard.probe("cache")
        log(
            f"depth_renders: {len(pending)} image(s) to render with {provider.name}/{provider.model}"
        )
        keys: dict[str, ProviderInput] = {p.image_id: p for p in pending}
        batch_started = datetime.now(UTC)
        for chunk in prediction_chunks(provider, pending, log):
            chunk = guard.resolve_costs(chunk)
            for pred in chunk:  # the bill first: recorded before anything is cached
                item = keys[pred.image_id]
                ok = pred.status == "succeeded" and bool(pred.render_bytes)
                rows[pred.image_id] = {
                    **base,
                    "image_id": pred.image_id,
                    "source_sha256": item.source_sha256,
                    "cache_key": item.cache_key,
                    "status": "succeeded" if ok else "failed",
                    "error": None if ok else redact(pred.error) or "provider returned no image",
                    **prediction_fields(pred, provider.price_usd, batch_started),
                }
            if provider.price_usd > 0:
                guard.record(rows.values())
            durable, store_errors = [], []
            for pred in chunk:
                item, row = keys[pred.image_id], rows[pred.image_id]
                if row["status"] == "succeeded":
                    try:
                        rows[pred.image_id] = {
                            **row,
                            **_store(storage, cache, catalog, pred, item, provider.name),
                        }
                    except OSError as exc:  # storage full or read-only: the journal keeps it
                        store_errors.append(f"{type(exc).__name__}: {exc}")
                        rows[pred.image_id] = {
                            **row,
                            "status": "failed",
                            "error": f"could not store the result: {exc}",
                        }
                        continue
                durable.append(item.cache_key)
            guard.settle(durable)
            guard.check(store_errors)
    return tally(rows, accepted, DEPTH_RENDERS, t0)


def _store(
    storage: Storage,
    cache: DepthCache,
    catalog: str,
    pred: DepthPrediction,
    item: ProviderInput,
    provider_name: str,
) -> dict:
    assert pred.render_bytes is not None
    fmt = (pred.render_format or "png").lower()
    ext = {"jpeg": "jpg", "jpg": "jpg", "webp": "webp"}.get(fmt, "png")
    cache.put_bytes(
        item.cache_key,
        pred.render_bytes,
        ext,
        {"prediction_id": pred.prediction_id, "provider": provider_name},
    )
    return _write(storage, catalog, pred.image_id, pred.render_bytes, ext)


def _write(storage: Storage, catalog: str, image_id: str, data: bytes, ext: str) -> dict:
    rel = storage.file_rel(catalog, ASSET, image_id, ext)
    storage.write_bytes(rel, data)
    return {"render_path": rel, "format": ext, "output_sha256": hashlib.sha256(data).hexdigest()}

"""`render` mode: prompt-driven, depth-guided re-renders, kept exactly as the host returned them.

Same rules as depth maps: cache by (source sha256, provider, model, params) first, budget check
before the first paid call, one failed image never sinks the run.
"""

from __future__ import annotations

import hashlib
import time
from datetime import datetime, UTC
from collections.abc import Callable

from flux_depth_assets.pipeline.provider_run import (
    ProviderRunResult,
    apply_budget,
    pending_input,
    predict_in_chunks,
    prediction_fields,
    skipped_row,
    tally,
)
from flux_depth_assets.providers.base import DepthProvider, ProviderInput
from flux_depth_assets.storage.cache import DepthCache
from flux_depth_assets.storage.schemas import DEPTH_RENDERS
from flux_depth_assets.storage.store import Storage

ASSET = "depth_renders"


def run_renders(catalog: str, accepted: list[dict], provider: DepthProvider, storage: Storage, *,
                prompt: str = "", seed: int | None = None, run_id: str = "",
                budget_usd: float | None = None, on_budget: str = "stop",
                log: Callable[[str], None] | None = None) -> ProviderRunResult:
    t0 = time.perf_counter()
    log = log or (lambda _m: None)
    cache = DepthCache(storage, kind="render")
    base = dict(provider=provider.name, model=provider.model, model_version=provider.model_version,
                params_hash=provider.params_hash(), prompt=prompt, seed=seed, run_id=run_id)
    rows: dict[str, dict] = {}
    pending: list[ProviderInput] = []
    for r in accepted:
        key = provider.cache_key(r["sha256"])
        common = {**base, "image_id": r["image_id"], "source_sha256": r["sha256"], "cache_key": key}
        hit = cache.get_bytes(key)
        if hit is not None:
            data, meta = hit
            rows[r["image_id"]] = {**common, **_write(storage, catalog, r["image_id"], data, meta["ext"]),
                                   "status": "cached", "cost_usd": 0.0, "attempts": 0,
                                   "prediction_id": meta.get("prediction_id"), "seconds": 0.0}
            continue
        pending.append(pending_input(r, key, storage))
    pending, skipped = apply_budget(pending, provider, budget_usd, on_budget)
    for item in skipped:
        rows[item.image_id] = skipped_row(base, item)
    if pending:
        provider.check_ready()
        provider.bind_storage(storage)
        log(f"depth_renders: {len(pending)} image(s) to render with {provider.name}/{provider.model}")
        keys: dict[str, ProviderInput] = {p.image_id: p for p in pending}
        batch_started = datetime.now(UTC)
        for pred in predict_in_chunks(provider, pending, log):
            item = keys[pred.image_id]
            row = {**base, "image_id": pred.image_id, "source_sha256": item.source_sha256,
                   "cache_key": item.cache_key,
                   **prediction_fields(pred, provider.price_usd, batch_started)}
            if pred.status != "succeeded" or not pred.render_bytes:
                rows[pred.image_id] = {**row, "status": "failed",
                                       "error": pred.error or "provider returned no image"}
                continue
            fmt = (pred.render_format or "png").lower()
            ext = {"jpeg": "jpg", "jpg": "jpg", "webp": "webp"}.get(fmt, "png")
            cache.put_bytes(item.cache_key, pred.render_bytes, ext,
                            {"prediction_id": pred.prediction_id, "provider": provider.name})
            rows[pred.image_id] = {**row, **_write(storage, catalog, pred.image_id, pred.render_bytes, ext),
                                   "status": "succeeded", "error": None}
    return tally(rows, accepted, DEPTH_RENDERS, t0)


def _write(storage: Storage, catalog: str, image_id: str, data: bytes, ext: str) -> dict:
    rel = storage.file_rel(catalog, ASSET, image_id, ext)
    storage.write_bytes(rel, data)
    return {"render_path": rel, "format": ext, "output_sha256": hashlib.sha256(data).hexdigest()}

"""`render` mode: prompt-driven, depth-guided re-renders, kept exactly as the host returned them.

Same rules as depth maps: cache by (source sha256, provider, model, params) first, budget check
before the first paid call, one failed image never sinks the run.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial
from typing import Callable

import pyarrow as pa

from flux_depth_assets.pipeline.depth_run import apply_budget, call_cost, load_normalized
from flux_depth_assets.providers.base import DepthProvider, ProviderInput
from flux_depth_assets.storage.cache import DepthCache
from flux_depth_assets.storage.schemas import DEPTH_RENDERS, table_from_rows
from flux_depth_assets.storage.store import Storage

ASSET = "depth_renders"


@dataclass
class RenderRunResult:
    rows: list[dict]
    counts: dict[str, int] = field(default_factory=dict)
    cost_usd: float = 0.0
    seconds: float = 0.0

    def table(self) -> pa.Table:
        return table_from_rows(self.rows, DEPTH_RENDERS)

    @property
    def failure_ratio(self) -> float:
        images = self.counts.get("images", 0)
        return self.counts.get("failed", 0) / images if images else 0.0


def run_renders(catalog: str, accepted: list[dict], provider: DepthProvider, storage: Storage, *,
                prompt: str = "", seed: int | None = None, run_id: str = "",
                budget_usd: float | None = None, on_budget: str = "stop",
                log: Callable[[str], None] | None = None) -> RenderRunResult:
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
        pending.append(ProviderInput(image_id=r["image_id"], source_sha256=r["sha256"], cache_key=key,
                                     load_image=partial(load_normalized, storage, r["normalized_path"]),
                                     source_uri=r.get("source_uri") or ""))
    pending, skipped = apply_budget(pending, provider, budget_usd, on_budget)
    for item in skipped:
        rows[item.image_id] = {**base, "image_id": item.image_id, "source_sha256": item.source_sha256,
                               "cache_key": item.cache_key, "status": "skipped_budget",
                               "error": "skipped: over budget_usd_per_run", "cost_usd": 0.0, "attempts": 0}
    if pending:
        provider.check_ready()
        log(f"depth_renders: {len(pending)} image(s) to render with {provider.name}/{provider.model}")
        keys = {p.image_id: p for p in pending}
        for pred in provider.predict_many(pending, progress=log):
            item = keys[pred.image_id]
            row = {**base, "image_id": pred.image_id, "source_sha256": item.source_sha256,
                   "cache_key": item.cache_key, "prediction_id": pred.prediction_id,
                   "attempts": pred.attempts, "http_status": pred.http_status,
                   "cost_usd": call_cost(pred, provider.price_usd), "seconds": pred.latency_s}
            if pred.status != "succeeded" or not pred.render_bytes:
                rows[pred.image_id] = {**row, "status": "failed",
                                       "error": pred.error or "provider returned no image"}
                continue
            ext = "jpg" if (pred.render_format or "").lower() in ("jpg", "jpeg") else "png"
            cache.put_bytes(item.cache_key, pred.render_bytes, ext,
                            {"prediction_id": pred.prediction_id, "provider": provider.name})
            rows[pred.image_id] = {**row, **_write(storage, catalog, pred.image_id, pred.render_bytes, ext),
                                   "status": "succeeded", "error": None}
    ordered = [rows[r["image_id"]] for r in accepted if r["image_id"] in rows]
    now = datetime.now(timezone.utc)
    for row in ordered:
        row["materialized_at"] = now
    counts = {"images": len(ordered)}
    for status in ("succeeded", "cached", "failed", "skipped_budget"):
        counts[status] = sum(r["status"] == status for r in ordered)
    counts["new"] = counts.pop("succeeded")
    return RenderRunResult(rows=ordered, counts=counts, seconds=time.perf_counter() - t0,
                           cost_usd=float(sum(r.get("cost_usd") or 0.0 for r in ordered)))


def _write(storage: Storage, catalog: str, image_id: str, data: bytes, ext: str) -> dict:
    rel = storage.file_rel(catalog, ASSET, image_id, ext)
    storage.write_bytes(rel, data)
    return {"render_path": rel, "format": ext, "output_sha256": hashlib.sha256(data).hexdigest()}

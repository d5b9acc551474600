"""`render` mode: prompt-driven, depth-guided re-renders, kept exactly as the host returned them.

Same rules as depth maps: cache by (source sha256, provider, model, params) first, budget check
before the first paid call, one failed image never sinks the run.
"""

from __future__ import annotations

import hashlib

from flux_depth_assets.config.models import EachlabsParams
from flux_depth_assets.lineage.writer import redact
from flux_depth_assets.pipeline.provider_run import Batch, ProviderAsset
from flux_depth_assets.providers.base import DepthPrediction, DepthProvider, ProviderInput
from flux_depth_assets.storage.cache import DepthCache
from flux_depth_assets.storage.schemas import DEPTH_RENDERS
from flux_depth_assets.storage.store import Storage

ASSET = "depth_renders"


class DepthRenders(ProviderAsset):
    """`depth_renders` of one catalog with the provider's prompt and seed: a cache hit needs no
    call; a prediction's image is stored as returned. Run with `run_provider_asset`."""

    name = ASSET
    schema = DEPTH_RENDERS
    preview_columns = ("image_id", "status", "render_path", "prompt", "cost_usd", "error")

    def __init__(
        self, catalog: str, provider: DepthProvider, storage: Storage, params: EachlabsParams
    ):
        columns = {"prompt": params.prompt, "seed": params.seed}
        super().__init__(
            catalog, provider, storage, DepthCache(storage, kind="render"), params, columns
        )

    def reuse(self, source: dict, common: dict) -> dict | None:
        hit = self.cache.get_bytes(common["cache_key"])
        if hit is None:
            return None
        data, meta = hit
        return {
            **common,
            **_write(self.storage, self.catalog, source["image_id"], data, meta["ext"]),
            "status": "cached",
            "cost_usd": 0.0,
            "attempts": 0,
            "prediction_id": meta.get("prediction_id"),
            "seconds": 0.0,
        }

    def announce(self, pending: int, done: int) -> str:
        p = self.provider
        return f"depth_renders: {pending} image(s) to render with {p.name}/{p.model}"

    def outcome(self, pred: DepthPrediction) -> dict:
        ok = pred.status == "succeeded" and bool(pred.render_bytes)
        return {
            "status": "succeeded" if ok else "failed",
            "error": None if ok else redact(pred.error) or "provider returned no image",
        }

    def store(self, pred: DepthPrediction, item: ProviderInput, billed: dict, batch: Batch) -> dict:
        if billed["status"] != "succeeded":
            return billed
        return {
            **billed,
            **_store(self.storage, self.cache, self.catalog, pred, item, self.provider.name),
        }


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

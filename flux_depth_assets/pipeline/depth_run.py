"""A catalog's depth maps: cache first, budget check, then the provider for what is left.

Never pays twice: a provider call is identified by `cache_key(source sha256, provider, model,
params)`; a hit in the shared cache (any catalog, any earlier run) costs nothing.
"""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

import numpy as np
from PIL import Image

from flux_depth_assets.config.models import DepthMapSettings
from flux_depth_assets.depth.encoding import encode_png16, quantize, to_nearness
from flux_depth_assets.lineage.writer import redact
from flux_depth_assets.pipeline.depth_pool import depth_rows_on_pool, pool_config_of
from flux_depth_assets.pipeline.parallel import PoolConfig
from flux_depth_assets.pipeline.provider_run import (
    Batch,
    ProviderAsset,
    prediction_fields,
)
from flux_depth_assets.pipeline.source_mask import apply_mask
from flux_depth_assets.providers.base import DepthPrediction, DepthProvider, ProviderInput
from flux_depth_assets.storage.cache import DepthCache
from flux_depth_assets.storage.schemas import DEPTH_MAPS
from flux_depth_assets.storage.store import FileIndex, Storage
from flux_depth_assets.thumbs import put_thumb, still_thumb

ASSET = "depth_maps"
REJECTED_HINT = "delete cache/depth-rejected/ to ask the host again"


class DepthMaps(ProviderAsset):
    """`depth_maps` of one catalog: a kept row, a cache hit or a known reject needs no call; a
    prediction becomes a 16-bit PNG (and an optional .npy). Run with `run_provider_asset`."""

    name = ASSET
    schema = DEPTH_MAPS
    preview_columns = ("image_id", "status", "depth_path", "seconds", "cost_usd", "error")

    def __init__(
        self,
        catalog: str,
        provider: DepthProvider,
        storage: Storage,
        settings: DepthMapSettings,
        *,
        pool: PoolConfig | None = None,
    ):
        super().__init__(catalog, provider, storage, DepthCache(storage), settings)
        self.settings = settings
        self.pool = pool
        self.previous: dict[str, dict] = {}
        self.present = FileIndex(storage)

    def prepare(self) -> None:
        self.previous = self.storage.partition_rows(ASSET, self.catalog)
        self.present = FileIndex(self.storage, Storage.dir_rel(self.catalog, ASSET))

    def source_columns(self, source: dict) -> dict:
        return {"width": source["width"], "height": source["height"]}

    def reuse(self, source: dict, common: dict) -> dict | None:
        prev = self.previous.get(source["image_id"])
        if (
            prev
            and prev["cache_key"] == common["cache_key"]
            and prev["status"] in ("succeeded", "cached")
            and prev["depth_path"] in self.present
            and (not self.settings.write_npy or prev["npy_path"] in self.present)
        ):
            at = datetime.now(UTC)
            return {
                **prev,
                **common,
                "status": "cached",
                "seconds": 0.0,
                "cost_usd": 0.0,
                "attempts": 0,
                "error": None,
                "started_at": at,
                "finished_at": at,
            }
        hit = self.cache.get(common["cache_key"])
        if hit is not None:
            t1, at = time.perf_counter(), datetime.now(UTC)
            nearness = apply_mask(self.storage, source, hit.depth)
            return {
                **common,
                **_write_outputs(
                    self.storage,
                    self.catalog,
                    source["image_id"],
                    nearness,
                    self.settings,
                    hit.meta.get("faces"),
                ),
                **_meta_fields(hit.meta),
                "status": "cached",
                "seconds": time.perf_counter() - t1,
                "cost_usd": 0.0,
                "attempts": 0,
                "started_at": at,
                "finished_at": datetime.now(UTC),
            }
        rejected = self.cache.rejection(common["cache_key"])
        if rejected is not None:  # the same call returned something unusable: not paid again
            return {
                **common,
                "status": "failed",
                "cost_usd": 0.0,
                "attempts": 0,
                "prediction_id": rejected.get("prediction_id"),
                "error": f"{rejected.get('reason')} (an earlier run's result; "
                f"not paid again: {REJECTED_HINT})",
            }
        return None

    def announce(self, pending: int, done: int) -> str:
        p = self.provider
        return f"depth_maps: {pending} image(s) to compute with {p.name}/{p.model}, {done} cached"

    def local_rows(
        self, pending: list[ProviderInput], batch: Batch, log: Callable[[str], None]
    ) -> Iterable[tuple[str, dict]] | None:
        """Free CPU work (local/onnx) runs on the work pool: `pipeline.depth_pool`."""
        local = pool_config_of(self.provider) if batch.price_usd == 0 else None
        if local is None:
            return None
        return depth_rows_on_pool(
            local,
            pending,
            batch.sources,
            self.storage,
            self.catalog,
            self.settings,
            batch.base,
            price_usd=0.0,
            pool=self.pool,
            log=log,
            batch_started=batch.started,
        )

    def outcome(self, pred: DepthPrediction) -> dict:
        return {
            "status": "succeeded" if pred.status == "succeeded" else "failed",
            "error": pred.error,
        }

    def store(self, pred: DepthPrediction, item: ProviderInput, billed: dict, batch: Batch) -> dict:
        return _row_for_prediction(
            pred,
            item,
            self.storage,
            self.cache if self.provider.keeps_results() else None,
            self.catalog,
            self.settings,
            batch.base,
            batch.sources[pred.image_id],
            price_usd=batch.price_usd,
            batch_started=batch.started,
        )


def _meta_fields(meta: dict) -> dict:
    return {k: meta.get(k) for k in ("metric", "prediction_id", "http_status")}


def _row_for_prediction(
    pred: DepthPrediction,
    item: ProviderInput,
    storage: Storage,
    cache: DepthCache | None,
    catalog: str,
    settings: DepthMapSettings,
    base: dict,
    src: dict,
    *,
    price_usd: float = 0.0,
    batch_started: datetime | None = None,
) -> dict:
    row = {
        **base,
        "image_id": pred.image_id,
        "source_sha256": item.source_sha256,
        "cache_key": item.cache_key,
        "width": src["width"],
        "height": src["height"],
        "metric": pred.metric,
        **prediction_fields(pred, price_usd, batch_started),
    }
    if pred.extra.get("result_problem") and cache is not None:
        cache.reject(
            item.cache_key,
            {"reason": pred.extra["result_problem"], "prediction_id": pred.prediction_id},
        )
    if pred.status != "succeeded" or pred.depth is None:
        # credential-looking text is masked here too: the depth_maps table keeps this error
        return {
            **row,
            "status": "failed",
            "error": redact(pred.error) or "provider returned no depth",
        }
    depth = pred.depth
    if depth.shape != (src["height"], src["width"]):
        depth = np.asarray(
            Image.fromarray(depth.astype(np.float32), "F").resize(
                (src["width"], src["height"]), Image.Resampling.BILINEAR
            )
        )
    nearness = to_nearness(depth, pred.metric)
    faces = pred.extra.get("faces")
    if cache is not None:  # None: the provider recomputes for less than keeping costs
        cache.put(
            item.cache_key,
            nearness,
            {
                "metric": pred.metric,
                "prediction_id": pred.prediction_id,
                "http_status": pred.http_status,
                "provider": base["provider"],
                "model": base["model"],
                "params_hash": base["params_hash"],
                **({} if faces is None else {"faces": faces}),
            },
        )
    out = _write_outputs(
        storage, catalog, pred.image_id, apply_mask(storage, src, nearness), settings, faces
    )
    return {**row, **out, "status": "succeeded", "error": None}


def _write_outputs(
    storage: Storage,
    catalog: str,
    image_id: str,
    nearness: np.ndarray,
    settings: DepthMapSettings,
    faces: list[list[int]] | None = None,
) -> dict:
    """The depth PNG (+ .npy) and its gallery thumbnail; `faces` the estimator found are noted in
    the PNG for the sprites."""
    q, lo, hi = quantize(nearness)
    png = encode_png16(q, faces)
    depth_rel = storage.file_rel(catalog, ASSET, image_id, "png")
    storage.write_bytes(depth_rel, png)
    sha = hashlib.sha256(png).hexdigest()
    put_thumb(storage, catalog, "depth", depth_rel, sha, lambda: still_thumb(q))
    npy_rel = None
    if settings.write_npy:
        buf = io.BytesIO()
        np.save(buf, nearness.astype(np.float32), allow_pickle=False)
        npy_rel = storage.file_rel(catalog, ASSET, image_id, "npy")
        storage.write_bytes(npy_rel, buf.getvalue())
    return {
        "depth_path": depth_rel,
        "npy_path": npy_rel,
        "depth_min": lo,
        "depth_max": hi,
        "output_sha256": sha,
    }

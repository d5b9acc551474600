"""Produce a catalog's depth maps: cache first, budget check, then the provider for what is left.

Never pays twice: a provider call is identified by `cache_key(source sha256, provider, model,
params)`; a hit in the shared cache (any catalog, any earlier run) costs nothing.
"""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Callable
from datetime import UTC, datetime

import numpy as np
from PIL import Image

from flux_depth_assets.config.models import DepthMapSettings
from flux_depth_assets.depth.encoding import encode_png16, quantize, to_nearness
from flux_depth_assets.lineage.writer import redact
from flux_depth_assets.pipeline.depth_pool import depth_rows_on_pool, pool_config_of
from flux_depth_assets.pipeline.paid import PaidRun, paid_run
from flux_depth_assets.pipeline.parallel import PoolConfig
from flux_depth_assets.pipeline.provider_run import (
    ProviderRunResult,
    apply_budget,
    pending_input,
    prediction_chunks,
    prediction_fields,
    skipped_row,
    tally,
)
from flux_depth_assets.pipeline.source_mask import apply_mask
from flux_depth_assets.providers.base import DepthPrediction, DepthProvider, ProviderInput
from flux_depth_assets.storage.cache import DepthCache
from flux_depth_assets.storage.schemas import DEPTH_MAPS
from flux_depth_assets.storage.store import FileIndex, Storage

ASSET = "depth_maps"
REJECTED_HINT = "delete cache/depth-rejected/ to ask the host again"


def run_depth(
    catalog: str,
    accepted: list[dict],
    provider: DepthProvider,
    storage: Storage,
    settings: DepthMapSettings,
    *,
    run_id: str = "",
    budget_usd: float | None = None,
    on_budget: str = "stop",
    log: Callable[[str], None] | None = None,
    started_at: datetime | None = None,
    pool: PoolConfig | None = None,
) -> ProviderRunResult:
    """Raises `PaidRunError` (one line) when a paid run may not start or had to stop early;
    whatever was paid by then is cached or journaled, and recorded."""
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
        return _run_depth(
            guard,
            catalog,
            accepted,
            provider,
            storage,
            settings,
            budget_usd=budget_usd,
            on_budget=on_budget,
            log=log,
            pool=pool,
        )


def _run_depth(
    guard: PaidRun,
    catalog: str,
    accepted: list[dict],
    provider: DepthProvider,
    storage: Storage,
    settings: DepthMapSettings,
    *,
    budget_usd: float | None,
    on_budget: str,
    log: Callable[[str], None],
    pool: PoolConfig | None = None,
) -> ProviderRunResult:
    t0 = time.perf_counter()
    run_id = guard.run_id
    cache = DepthCache(storage)
    previous = storage.partition_rows(ASSET, catalog)
    present = FileIndex(storage, Storage.dir_rel(catalog, ASSET))
    base = dict(
        provider=provider.name,
        model=provider.model,
        model_version=provider.model_version,
        params_hash=provider.params_hash(),
        run_id=run_id,
    )
    rows: dict[str, dict] = {}
    pending: list[ProviderInput] = []
    by_id = {r["image_id"]: r for r in accepted}
    for r in accepted:
        key = provider.cache_key(r["sha256"])
        common = {
            **base,
            "image_id": r["image_id"],
            "source_sha256": r["sha256"],
            "cache_key": key,
            "width": r["width"],
            "height": r["height"],
        }
        prev = previous.get(r["image_id"])
        if (
            prev
            and prev["cache_key"] == key
            and prev["status"] in ("succeeded", "cached")
            and prev["depth_path"] in present
            and (not settings.write_npy or prev["npy_path"] in present)
        ):
            at = datetime.now(UTC)
            rows[r["image_id"]] = {
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
            continue
        hit = cache.get(key)
        if hit is not None:
            t1, at = time.perf_counter(), datetime.now(UTC)
            out = _write_outputs(
                storage, catalog, r["image_id"], apply_mask(storage, r, hit.depth), settings
            )
            rows[r["image_id"]] = {
                **common,
                **out,
                **_meta_fields(hit.meta),
                "status": "cached",
                "seconds": time.perf_counter() - t1,
                "cost_usd": 0.0,
                "attempts": 0,
                "started_at": at,
                "finished_at": datetime.now(UTC),
            }
            continue
        rejected = cache.rejection(key)
        if rejected is not None:  # the same call returned something unusable: not paid again
            rows[r["image_id"]] = {
                **common,
                "status": "failed",
                "cost_usd": 0.0,
                "attempts": 0,
                "prediction_id": rejected.get("prediction_id"),
                "error": f"{rejected.get('reason')} (an earlier run's result; "
                f"not paid again: {REJECTED_HINT})",
            }
            continue
        pending.append(pending_input(r, key, storage))

    if provider.price_usd > 0 and rows:  # entries a killed run left for results it had cached
        guard.settle([r["cache_key"] for r in rows.values()])
    pending, skipped = apply_budget(pending, provider, budget_usd, on_budget)
    for item in skipped:
        src = by_id[item.image_id]
        rows[item.image_id] = skipped_row(base, item, width=src["width"], height=src["height"])
    if pending:
        provider.check_ready()
        guard.probe("cache")
        log(
            f"depth_maps: {len(pending)} image(s) to compute with {provider.name}/{provider.model}, "
            f"{len(rows)} cached"
        )
        pending_by_id = {p.image_id: p for p in pending}
        batch_started = datetime.now(UTC)
        local = pool_config_of(provider) if provider.price_usd == 0 else None
        if local is not None:  # free CPU work (local/onnx): on the work pool, pipeline.depth_pool
            rows.update(
                depth_rows_on_pool(
                    local,
                    pending,
                    by_id,
                    storage,
                    catalog,
                    settings,
                    base,
                    price_usd=0.0,
                    pool=pool,
                    log=log,
                    batch_started=batch_started,
                )
            )
            pending = []
        for chunk in prediction_chunks(provider, pending, log):
            chunk = guard.resolve_costs(chunk)
            for pred in chunk:  # the bill first: recorded before anything is cached
                src = by_id[pred.image_id]
                rows[pred.image_id] = {
                    **base,
                    "image_id": pred.image_id,
                    "source_sha256": src["sha256"],
                    "cache_key": pending_by_id[pred.image_id].cache_key,
                    "status": "succeeded" if pred.status == "succeeded" else "failed",
                    "error": pred.error,
                    **prediction_fields(pred, provider.price_usd, batch_started),
                }
            if provider.price_usd > 0:
                guard.record(rows.values())
            durable, store_errors = [], []
            for pred in chunk:
                item = pending_by_id[pred.image_id]
                try:
                    rows[pred.image_id] = _row_for_prediction(
                        pred,
                        item,
                        storage,
                        cache,
                        catalog,
                        settings,
                        base,
                        by_id[pred.image_id],
                        price_usd=provider.price_usd,
                        batch_started=batch_started,
                    )
                except OSError as exc:  # storage full or read-only: the journal keeps it
                    store_errors.append(f"{type(exc).__name__}: {exc}")
                    rows[pred.image_id] = {
                        **rows[pred.image_id],
                        "status": "failed",
                        "error": redact(f"could not store the result: {exc}"),
                    }
                    continue
                durable.append(item.cache_key)
            guard.settle(durable)
            guard.check(store_errors)
    return tally(rows, accepted, DEPTH_MAPS, t0)


def _meta_fields(meta: dict) -> dict:
    return {k: meta.get(k) for k in ("metric", "prediction_id", "http_status")}


def _row_for_prediction(
    pred: DepthPrediction,
    item: ProviderInput,
    storage: Storage,
    cache: DepthCache,
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
    if pred.extra.get("result_problem"):
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
        },
    )
    out = _write_outputs(
        storage, catalog, pred.image_id, apply_mask(storage, src, nearness), settings
    )
    return {**row, **out, "status": "succeeded", "error": None}


def _write_outputs(
    storage: Storage, catalog: str, image_id: str, nearness: np.ndarray, settings: DepthMapSettings
) -> dict:
    q, lo, hi = quantize(nearness)
    png = encode_png16(q)
    depth_rel = storage.file_rel(catalog, ASSET, image_id, "png")
    storage.write_bytes(depth_rel, png)
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
        "output_sha256": hashlib.sha256(png).hexdigest(),
    }

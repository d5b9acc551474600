"""`depth_maps` for providers that compute on this machine's CPU (`local`, `onnx`), on the pool.

A worker rebuilds the provider from its config (once per worker process), reads the normalised
copy, predicts, caches the result and writes the outputs, and sends back only the table row: an
image's pixels never cross a process boundary, and no more than a pool's in-flight chunks are
held at a time. Hosted providers do not come here: their calls are I/O, batched and journaled by
the hosted client in the run's own process (see docs/deployment.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from flux_depth_assets.config.models import (
    DepthMapSettings,
    LocalProviderConfig,
    OnnxProviderConfig,
)
from flux_depth_assets.pipeline.parallel import PoolConfig, map_images
from flux_depth_assets.providers.base import DepthProvider, ProviderInput
from flux_depth_assets.storage.cache import DepthCache
from flux_depth_assets.storage.store import Storage

LocalConfig = LocalProviderConfig | OnnxProviderConfig


def pool_config_of(provider: DepthProvider) -> LocalConfig | None:
    """The config to rebuild `provider` on a worker, when it is a stock CPU-bound provider.

    Anything else (hosted providers, test fakes, subclasses) keeps running in this process.
    """
    from flux_depth_assets.providers.local import LocalProvider
    from flux_depth_assets.providers.onnx import OnnxProvider

    if type(provider) in (LocalProvider, OnnxProvider):
        config = getattr(provider, "config", None)
        if isinstance(config, (LocalProviderConfig, OnnxProviderConfig)):
            return config
    return None


@lru_cache(maxsize=4)
def _provider(config_json: str, kind: str) -> DepthProvider:
    from flux_depth_assets.providers.factory import build_provider

    cls = LocalProviderConfig if kind == "local" else OnnxProviderConfig
    provider = build_provider(cls.model_validate_json(config_json))
    provider.check_ready()
    return provider


@dataclass(frozen=True)
class DepthTask:
    config_json: str
    kind: str
    source_row: dict[str, Any]
    cache_key: str
    storage: Storage
    catalog: str
    settings: DepthMapSettings
    base: dict[str, Any]
    price_usd: float
    batch_started: datetime


def depth_one(task: DepthTask) -> dict[str, Any]:
    """Predict, cache (when the provider keeps results) and write one image's depth map; the
    row (never raises for one image)."""
    from flux_depth_assets.lineage.writer import redact
    from flux_depth_assets.pipeline.depth_run import _row_for_prediction
    from flux_depth_assets.pipeline.provider_run import pending_input

    provider = _provider(task.config_json, task.kind)
    item = pending_input(task.source_row, task.cache_key, task.storage)
    pred = provider.predict_many([item])[0]
    try:
        return _row_for_prediction(
            pred,
            item,
            task.storage,
            DepthCache(task.storage) if provider.keeps_results() else None,
            task.catalog,
            task.settings,
            task.base,
            task.source_row,
            price_usd=task.price_usd,
            batch_started=task.batch_started,
        )
    except OSError as exc:  # storage full or read-only: this image fails, the run goes on
        return {
            **task.base,
            "image_id": item.image_id,
            "source_sha256": item.source_sha256,
            "cache_key": item.cache_key,
            "status": "failed",
            "cost_usd": 0.0,
            "width": task.source_row["width"],
            "height": task.source_row["height"],
            "error": redact(f"could not store the result: {exc}"),
        }


def depth_rows_on_pool(
    config: LocalConfig,
    pending: list[ProviderInput],
    sources: dict[str, dict[str, Any]],
    storage: Storage,
    catalog: str,
    settings: DepthMapSettings,
    base: dict[str, Any],
    *,
    price_usd: float,
    batch_started: datetime,
    pool: PoolConfig | None,
    log: Callable[[str], None],
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(image_id, row) for every pending image, in order, computed on the work pool."""
    config_json = config.model_dump_json()
    tasks = (
        DepthTask(
            config_json,
            config.name,
            sources[p.image_id],
            p.cache_key,
            storage,
            catalog,
            settings,
            base,
            price_usd,
            batch_started,
        )
        for p in pending
    )
    keys = [p.image_id for p in pending]
    yield from map_images(depth_one, tasks, keys, pool=pool, log=log, label="depth_maps")

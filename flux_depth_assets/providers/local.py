"""The `local` provider: the embedded estimator, in-process, free."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from flux_depth_assets.config.models import LocalProviderConfig
from flux_depth_assets.depth.local_estimator import DEFAULT_PARAMS, estimate_depth_and_faces
from flux_depth_assets.providers.base import (
    DepthPrediction,
    DepthProvider,
    ProgressFn,
    ProviderInput,
)

# Bump when the estimator's output changes, so caches refresh. 2: geodesic edge-aware ground prior;
# 3: faces (OpenCV cascades + GrabCut), upright regions, soft horizon.
ESTIMATOR_VERSION = "3"


class LocalProvider(DepthProvider):
    name = "local"

    def __init__(self, config: LocalProviderConfig):
        self.config = config
        self.model = config.model
        self.model_version = ESTIMATOR_VERSION
        self.price_usd = config.price_usd

    def cache_params(self) -> dict[str, Any]:
        return {
            "max_side": self.config.max_side,
            "version": ESTIMATOR_VERSION,
            "estimator": DEFAULT_PARAMS.as_dict(),
        }

    def keeps_results(self) -> bool:
        """Only when priced: the free estimator recomputes a map (~50 ms at 1 MP) for less than
        keeping it costs (a 4 MB float32 file per 1 MP image, ~7 ms to write). A catalog's own
        unchanged images are kept by its table, not the cache."""
        return self.price_usd > 0

    def predict_many(
        self, items: Sequence[ProviderInput], progress: ProgressFn | None = None
    ) -> list[DepthPrediction]:
        out: list[DepthPrediction] = []
        for n, item in enumerate(items, 1):
            t0 = time.perf_counter()
            try:
                depth, faces = estimate_depth_and_faces(
                    item.load_image(), max_side=self.config.max_side
                )
                out.append(
                    DepthPrediction(
                        item.image_id,
                        depth=depth,
                        latency_s=time.perf_counter() - t0,
                        # the sprites keep these whole without detecting them again
                        extra={} if faces is None else {"faces": [list(b) for b in faces]},
                    )
                )
            except Exception as exc:  # noqa: BLE001 - one bad image never sinks the batch
                out.append(
                    DepthPrediction(
                        item.image_id,
                        status="failed",
                        error=f"{type(exc).__name__}: {exc}",
                        latency_s=time.perf_counter() - t0,
                    )
                )
            if progress and (n % 10 == 0 or n == len(items)):
                progress(f"local depth: {n}/{len(items)} images")
        return out

"""Test doubles shared by the test modules: a counting provider and the resource that serves it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from flux_depth_assets.defs.resources import DepthProviderResource
from flux_depth_assets.providers.base import (
    DepthPrediction,
    DepthProvider,
    ProgressFn,
    ProviderInput,
)

CALLS: Counter = Counter()  # image_id → predictions computed; reset by the `calls` fixture


class CountingProvider(DepthProvider):
    """Deterministic depth (a vertical ramp + image brightness), counts every image it computes."""

    name = "fake"
    model = "counting"

    def __init__(self, price_usd: float = 0.0, fail_ids: Sequence[str] = (), variant: str = "a"):
        self.price_usd = price_usd
        self.fail_ids = set(fail_ids)
        self.variant = variant

    def cache_params(self) -> dict[str, Any]:
        return {"variant": self.variant}

    def predict_many(
        self, items: Sequence[ProviderInput], progress: ProgressFn | None = None
    ) -> list[DepthPrediction]:
        out = []
        for item in items:
            CALLS[item.image_id] += 1
            if item.image_id in self.fail_ids:
                out.append(
                    DepthPrediction(
                        item.image_id,
                        status="failed",
                        error="fake failure",
                        cost_usd=self.price_usd,
                    )
                )
                continue
            img = np.asarray(item.load_image().convert("L"), dtype=np.float32) / 255.0
            ramp = np.linspace(0, 1, img.shape[0], dtype=np.float32)[:, None]
            out.append(
                DepthPrediction(
                    item.image_id,
                    depth=0.7 * ramp + 0.3 * img,
                    cost_usd=self.price_usd,
                    prediction_id=f"fake-{item.image_id}",
                )
            )
        return out


class CountingProviderResource(DepthProviderResource):
    price_usd: float = 0.0
    fail_ids: list[str] = []  # noqa: RUF012 - a pydantic field: copied per instance
    variant: str = "a"

    def for_catalog(self, catalog, purpose: str = "depth") -> DepthProvider:
        return CountingProvider(self.price_usd, self.fail_ids, self.variant)

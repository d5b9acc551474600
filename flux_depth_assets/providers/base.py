"""The provider interface every depth backend implements (local, eachlabs, onnx, test fakes).

Conventions, stated once:
- a depth map is a float32 array of shape (H, W) at the source image's size;
- larger = nearer (relative inverse depth) unless `DepthPrediction.metric` is true, in which case
  values are metric depth in metres (larger = farther) and the encoder flips them;
- non-finite values mark invalid pixels.
"""

from __future__ import annotations

import abc
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from PIL import Image

Status = Literal["succeeded", "failed", "cached", "skipped_budget"]


class ProviderNotReady(RuntimeError):
    """The provider cannot run at all (no key, no model file): the run stops before any image."""


@dataclass(frozen=True)
class ProviderInput:
    """One image to process: its normalised RGB pixels and its identity."""

    image_id: str
    source_sha256: str
    cache_key: str
    load_image: Callable[[], Image.Image]  # RGB, EXIF orientation applied; loaded lazily
    source_uri: str = ""


@dataclass
class DepthPrediction:
    """What a provider returns for one image; `depth` is None when it failed."""

    image_id: str
    depth: np.ndarray | None = None
    metric: bool = False
    render_bytes: bytes | None = None  # `render` mode: the returned image, as returned
    render_format: str | None = None
    status: Status = "succeeded"
    error: str | None = None
    prediction_id: str | None = None
    attempts: int = 1
    http_status: int | None = None
    latency_s: float = 0.0
    cost_usd: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


ProgressFn = Callable[[str], None]


class DepthProvider(abc.ABC):
    """A depth backend. Subclasses set `name`, `model`, and implement `predict_many`."""

    name: str = "abstract"
    model: str = "abstract"
    model_version: str = ""
    price_usd: float = 0.0  # per created prediction; 0 for local backends
    mode: Literal["depth", "render"] = "depth"

    @abc.abstractmethod
    def cache_params(self) -> dict[str, Any]:
        """Everything that changes the output besides the source pixels (goes into the cache key)."""

    @abc.abstractmethod
    def predict_many(
        self, items: Sequence[ProviderInput], progress: ProgressFn | None = None
    ) -> list[DepthPrediction]:
        """Process every item; never raise for one bad image (return a failed prediction)."""

    def check_ready(self) -> None:
        """Raise a clear error before any image is sent if the provider cannot run (no key, no model)."""

    def bind_storage(self, storage: Any, run_id: str = "") -> None:
        """Receive the run's storage root (for state that must outlive a crash, e.g. a journal)
        and the id of the run that pays."""

    def settle(self, cache_keys: Sequence[str]) -> None:
        """Called by the pipeline once these keys' results are cached and their cost recorded:
        state kept for a crash (a journal) may go now. No-op for local providers."""

    def stop_reason(self) -> str | None:
        """Why the last `predict_many` stopped creating paid predictions early (journal not
        writable, results that are not depth maps), or None. The pipeline caches what was
        returned, then fails the run with this line."""
        return None

    def keeps_results(self) -> bool:
        """Whether results go into the shared cache (`cache/depth/`). Paid results always do:
        that is the never-pay-twice promise."""
        return True

    def params_hash(self) -> str:
        return params_hash(self.cache_params())

    def cache_key(self, source_sha256: str) -> str:
        return cache_key(source_sha256, self.name, self.model, self.params_hash())


def params_hash(params: dict[str, Any]) -> str:
    blob = json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def cache_key(source_sha256: str, provider: str, model: str, p_hash: str) -> str:
    """The identity of one provider call: same key, same output, never paid twice."""
    blob = f"{source_sha256}|{provider}|{model}|{p_hash}"
    return hashlib.sha256(blob.encode()).hexdigest()

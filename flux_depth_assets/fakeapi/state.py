"""The fake host's state, free of HTTP: its settings, the predictions it holds, the rate-limit
window and the accounting a test reads back (`stats()`).

Every random choice derives from `FakeApiConfig.seed` through `unit(...)` (a hash, not a shared
generator), so outcomes do not depend on how concurrent requests interleave. All mutation happens
under one lock: `stats()` may be read from another thread while the server runs in-process.
"""

from __future__ import annotations

import hashlib
import heapq
import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

MiB = 1024 * 1024


@dataclass(frozen=True)
class FakeApiConfig:
    """The server's behaviour. Ratios are in [0, 1]; `rate_limit` is API requests per second."""

    latency_s: float = 2.0
    latency_jitter_s: float = 0.0  # each prediction takes latency_s + U(0, jitter), seeded
    fail_ratio: float = 0.0
    rate_limit: float | None = None  # None or 0: unlimited
    error_rate: float = 0.0  # share of API requests answered 500/502 before doing anything
    seed: int = 0
    api_keys: frozenset[str] | None = None  # None: any non-empty key is accepted
    price_usd: float = 0.05  # charged per created prediction, failed ones included
    output_style: Literal["string", "list"] = "string"
    report_cost: bool = False  # add `"cost": price_usd` to poll answers
    echo_key_in_errors: bool = False  # a careless host: 401 messages repeat the key (for tests)
    models: tuple[str, ...] = ("flux-depth-pro",)
    max_image_bytes: int = 50 * MiB
    max_pixels: int = 4 * MiB  # "up to about 4 megapixels"
    fetch_loopback_urls: bool = (
        True  # http(s) control images on loopback are fetched; others → gradient
    )
    # answer like Black Forest Labs' own flux-depth-pro: a colour depth-guided render for every
    # prompt, the empty one included (the Eachlabs deployment returns a depth map for "")
    bfl_like: bool = False
    # the host's dialect and its faults (fakeapi/dialects.py, fakeapi/faults.py)
    dialect: Literal["eachlabs", "replicate", "bfl"] = "eachlabs"
    retired_models: tuple[str, ...] = ()  # creates answer 404 "model not found"
    credit_usd: float | None = None  # creates beyond this charge answer 402 (None: unlimited)
    creates_per_window: int | None = None  # accepted creates per window_s, then 429
    window_s: float = 60.0
    max_active: int | None = None  # predictions running at once, then 429 (BFL: 24)
    moderation_ratio: float = 0.0  # share of predictions ending moderated (replicate, bfl)
    output_ttl_s: float | None = None  # output URLs stop working this long after success

    def __post_init__(self) -> None:
        for name in ("fail_ratio", "error_rate", "moderation_ratio"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1]")
        if self.latency_s < 0 or self.latency_jitter_s < 0:
            raise ValueError("latency_s and latency_jitter_s must be >= 0")
        if self.rate_limit is not None and self.rate_limit < 0:
            raise ValueError("rate_limit must be >= 0")


@dataclass
class FakePrediction:
    id: str
    image_key: str
    created_at: float  # monotonic
    created_wall: str
    done_at: float
    fails: bool
    fmt: str
    public_input: dict[str, Any]
    output: bytes | None = None
    error: str | None = None


@dataclass
class Counters:
    requests: int = 0
    api_requests: int = 0
    creates: int = 0
    polls: int = 0
    downloads: int = 0
    rate_limited: int = 0
    injected_errors: int = 0
    unauthorized: int = 0
    rejected_inputs: int = 0
    failed_predictions: int = 0
    charged_usd: float = 0.0
    inflight_requests: int = 0
    max_inflight_requests: int = 0
    max_active_predictions: int = 0
    status_counts: dict[str, int] = field(default_factory=dict)
    creates_per_image: dict[str, int] = field(default_factory=dict)
    polled_ids: set[str] = field(default_factory=set)


def unit(*parts: object) -> float:
    """A deterministic number in [0, 1) from `parts` (independent of request interleaving)."""
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


Denial = tuple[int, str, dict[str, str] | None]  # (HTTP status, message, headers)


class HostState:
    """Predictions and counters of one fake server; every method is thread-safe."""

    def __init__(self, config: FakeApiConfig):
        self.config = config
        self._lock = threading.Lock()
        self._c = Counters()
        self._predictions: dict[str, FakePrediction] = {}
        self._window: deque[float] = deque()  # API request times in the last second (rate limit)
        self._active: list[float] = []  # heap of done_at of predictions not finished yet
        self._error_rng = random.Random(f"{config.seed}:errors")
        # Prediction and rate-limit time; tests swap in a clock they move (no races with sleeps).
        self.clock: Callable[[], float] = time.monotonic

    # ------------------------------------------------------------------ accounting

    def stats(self) -> dict[str, Any]:
        with self._lock:
            c = self._c
            return {
                "requests": c.requests,
                "api_requests": c.api_requests,
                "creates": c.creates,
                "creates_per_image": dict(c.creates_per_image),
                "charged_usd": round(c.charged_usd, 6),
                "polls": c.polls,
                "polled_predictions": len(c.polled_ids),
                "downloads": c.downloads,
                "rate_limited": c.rate_limited,
                "injected_errors": c.injected_errors,
                "unauthorized": c.unauthorized,
                "rejected_inputs": c.rejected_inputs,
                "failed_predictions": c.failed_predictions,
                "inflight_requests": c.inflight_requests,
                "max_inflight_requests": c.max_inflight_requests,
                "active_predictions": self._active_now(self.clock()),
                "max_active_predictions": c.max_active_predictions,
                "status_counts": dict(c.status_counts),
                "predictions": len(self._predictions),
            }

    def _active_now(self, now: float) -> int:
        while self._active and self._active[0] <= now:
            heapq.heappop(self._active)
        return len(self._active)

    def request_started(self) -> None:
        with self._lock:
            self._c.requests += 1
            self._c.inflight_requests += 1
            self._c.max_inflight_requests = max(
                self._c.max_inflight_requests, self._c.inflight_requests
            )

    def request_finished(self, status: int | None) -> None:
        with self._lock:
            self._c.inflight_requests -= 1
            key = str(status) if status is not None else "none"
            self._c.status_counts[key] = self._c.status_counts.get(key, 0) + 1

    def count_unauthorized(self) -> None:
        with self._lock:
            self._c.unauthorized += 1

    def count_rejected(self) -> None:
        with self._lock:
            self._c.rejected_inputs += 1

    # ------------------------------------------------------------------ the API

    def admit(self) -> Denial | None:
        """Count an API request; a denial when the rate limit or an injected error stops it."""
        cfg = self.config
        now = self.clock()
        with self._lock:
            self._c.api_requests += 1
            if cfg.rate_limit:
                while self._window and self._window[0] <= now - 1.0:
                    self._window.popleft()
                if len(self._window) >= cfg.rate_limit:
                    self._c.rate_limited += 1
                    wait = max(1, math.ceil(self._window[0] + 1.0 - now))
                    return 429, "rate limit exceeded, slow down", {"Retry-After": str(wait)}
                self._window.append(now)
            if cfg.error_rate and self._error_rng.random() < cfg.error_rate:
                self._c.injected_errors += 1
                status = self._error_rng.choice((500, 502))
                return status, "internal error" if status == 500 else "bad gateway", None
        return None

    def register(self, image_key: str, fmt: str, inputs: dict[str, Any], output: bytes) -> str:
        """Create (and charge) a prediction; its id. Its fate and latency are seeded."""
        cfg = self.config
        now = self.clock()
        with self._lock:
            n = self._c.creates
            self._c.creates += 1
            nth_for_image = self._c.creates_per_image.get(image_key, 0)
            self._c.creates_per_image[image_key] = nth_for_image + 1
            self._c.charged_usd += cfg.price_usd
            pid = (
                hashlib.sha256(f"{cfg.seed}:{n}".encode()).hexdigest()[:8]
                + "-"
                + hashlib.sha256(f"{cfg.seed}:{n}:{image_key}".encode()).hexdigest()[:24]
            )
            fails = unit(cfg.seed, "fail", image_key, nth_for_image) < cfg.fail_ratio
            latency = cfg.latency_s + cfg.latency_jitter_s * unit(cfg.seed, "latency", n)
            pred = FakePrediction(
                id=pid,
                image_key=image_key,
                created_at=now,
                created_wall=datetime.now(UTC).isoformat(),
                done_at=now + latency,
                fails=fails,
                fmt=fmt,
                public_input={k: v for k, v in inputs.items() if k != "control_image"},
                output=None if fails else output,
                error="Prediction failed: the model could not process this image (simulated)"
                if fails
                else None,
            )
            if fails:
                self._c.failed_predictions += 1
            self._predictions[pid] = pred
            heapq.heappush(self._active, pred.done_at)
            self._c.max_active_predictions = max(
                self._c.max_active_predictions, self._active_now(now)
            )
        return pid

    def poll(self, pid: str) -> FakePrediction | None:
        """The prediction (counted as polled), or None when the id is unknown."""
        with self._lock:
            pred = self._predictions.get(pid)
            if pred is not None:
                self._c.polls += 1
                self._c.polled_ids.add(pid)
        return pred

    def prediction(self, pid: str) -> FakePrediction | None:
        """The prediction, not counted as a poll (for the dialects' bookkeeping)."""
        with self._lock:
            return self._predictions.get(pid)

    def take_output(self, pid: str, ext: str) -> bytes | None:
        """The output bytes (counted as a download) once the prediction succeeded, else None."""
        with self._lock:
            pred = self._predictions.get(pid)
            ready = (
                pred is not None
                and pred.output is not None
                and self.clock() >= pred.done_at
                and ext == pred.fmt
            )
            if ready:
                self._c.downloads += 1
        return pred.output if ready and pred is not None else None

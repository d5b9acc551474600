"""Faults a real host answers that the basic fake does not: out of credit (402), a cap on
predictions running at once (BFL: 24, then 429), a cap on creates per window (Replicate: 600 a
minute, then 429), moderation, and output URLs that stop working. It also keeps the timestamp of
every accepted create, so a test can measure requests per window at the server itself.

Decisions that must not depend on request interleaving (which prediction is moderated) are
seeded hashes, like the rest of the fake.
"""

from __future__ import annotations

import heapq
import math
import threading
import time
from collections import deque
from typing import Any

from flux_depth_assets.fakeapi.state import Denial, FakeApiConfig, FakePrediction, unit

MAX_TIMESTAMPS = 100_000


class Faults:
    """Per-host faults and create timestamps; thread-safe."""

    def __init__(self, config: FakeApiConfig):
        self.config = config
        self._lock = threading.Lock()
        self._t0 = time.monotonic()
        self._create_times: deque[float] = deque(maxlen=MAX_TIMESTAMPS)
        self._active: list[float] = []  # heap of done_at
        self._charged = 0.0
        self._counts = {"out_of_credit": 0, "window_limited": 0, "active_limited": 0}

    def create_denial(self, arrived: float) -> Denial | None:
        """Why this create is refused (402, 429), or None. Call right before registering it;
        `arrived` is when the request reached the host."""
        cfg = self.config
        with self._lock:
            if cfg.credit_usd is not None and self._charged + cfg.price_usd > cfg.credit_usd + 1e-9:
                self._counts["out_of_credit"] += 1
                return (
                    402,
                    ("You have insufficient credit to run this model. Add credit and try again."),
                    None,
                )
            if cfg.max_active:
                while self._active and self._active[0] <= arrived:
                    heapq.heappop(self._active)
                if len(self._active) >= cfg.max_active:
                    self._counts["active_limited"] += 1
                    return 429, f"too many active tasks (limit {cfg.max_active})", None
            if cfg.creates_per_window:
                recent = [t for t in self._create_times if t > arrived - cfg.window_s]
                if len(recent) >= cfg.creates_per_window:
                    self._counts["window_limited"] += 1
                    wait = max(1, math.ceil(recent[0] + cfg.window_s - arrived))
                    return (
                        429,
                        (f"Request was throttled. Expected available in {wait} seconds."),
                        {"Retry-After": str(wait)},
                    )
        return None

    def created(self, pred: FakePrediction | None, arrived: float) -> None:
        """Count an accepted create (at `arrived`, when its request reached the host)."""
        if pred is None:
            return
        with self._lock:
            self._create_times.append(arrived)
            self._charged += self.config.price_usd
            heapq.heappush(self._active, pred.done_at)

    def moderated(self, pred: FakePrediction) -> bool:
        """Whether the host's safety filter ends this prediction (seeded; never a failed one)."""
        ratio = self.config.moderation_ratio
        return (
            bool(ratio) and not pred.fails and unit(self.config.seed, "moderate", pred.id) < ratio
        )

    def output_expired(
        self, pred: FakePrediction, now: float, default_ttl_s: float | None = None
    ) -> bool:
        ttl = self.config.output_ttl_s if self.config.output_ttl_s is not None else default_ttl_s
        return ttl is not None and now > pred.done_at + ttl

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                **self._counts,
                "create_times": [round(t - self._t0, 6) for t in self._create_times],
            }


def max_in_window(times: list[float], window_s: float) -> int:
    """The most timestamps inside any half-open interval of `window_s` seconds."""
    ordered = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(ordered):
        while ordered[start] <= t - window_s:
            start += 1
        best = max(best, end - start + 1)
    return best

"""A clock a test moves by hand: the fake API's predictions finish when the test says so."""

from __future__ import annotations

import threading

from flux_depth_assets.fakeapi.runner import FakeApiServer


class ManualClock:
    """Monotonic seconds that only move with `advance` (thread-safe: the server reads it)."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds


def hold_predictions(server: FakeApiServer) -> ManualClock:
    """Give a running fake API a manual clock: its predictions finish only on `advance`."""
    clock = ManualClock()
    server.state.host_state.clock = clock
    return clock

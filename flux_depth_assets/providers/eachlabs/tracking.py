"""Per-run bookkeeping: counters for the whole batch (`RunState`), what happened to each image
(`Track`, which becomes its `DepthPrediction`), and the progress lines a run reports.

Every line and error text goes through the client's redactor before anyone sees it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from flux_depth_assets.config.models import EachlabsProviderConfig
from flux_depth_assets.providers.base import DepthPrediction, ProgressFn, ProviderInput
from flux_depth_assets.providers.eachlabs.client import EachlabsClient
from flux_depth_assets.providers.eachlabs.journal import PredictionJournal
from flux_depth_assets.providers.eachlabs.pacing import PollScheduler
from flux_depth_assets.providers.eachlabs.protocol import EachlabsError

# The provider's lines keep the logger name they had before the provider was split into modules.
PROVIDER_LOGGER = "flux_depth_assets.providers.eachlabs.provider"
log = logging.getLogger(PROVIDER_LOGGER)


@dataclass
class RunState:
    """One `predict_many` call: its settings, shared objects and running totals."""

    total: int
    config: EachlabsProviderConfig
    mode: str
    host: str  # netloc of the base URL, journaled with each prediction id
    client: EachlabsClient
    journal: PredictionJournal
    schedule: PollScheduler
    progress: ProgressFn | None
    done: int = 0
    failed: int = 0
    inflight: int = 0
    retries: int = 0
    cost_usd: float = 0.0
    created: int = 0
    resumed: int = 0
    fatal: str | None = None

    def emit(self, line: str) -> None:
        """A progress line: to the progress sink (and debug log) when given, else the info log."""
        line = self.client.redact(line)
        log.log(logging.DEBUG if self.progress is not None else logging.INFO, line)
        if self.progress is not None:
            try:
                self.progress(line)
            except Exception:
                log.exception("eachlabs: progress callback failed")

    async def report_progress(self, interval_s: float) -> None:
        """A summary line every `interval_s` while predictions are in flight, until cancelled."""
        while True:
            await asyncio.sleep(interval_s)
            if self.inflight:
                self.emit(f"eachlabs: {self.done}/{self.total} done ({self.failed} failed), "
                          f"{self.inflight} in flight, {self.retries} retries, "
                          f"${self.cost_usd:.2f} so far")


@dataclass
class Track:
    """What happened to one image in this run (becomes the DepthPrediction and its `extra`)."""

    item: ProviderInput
    t0: float
    deadline: float
    run: RunState
    prediction_id: str | None = None
    create_attempts: int = 0
    http_status: int | None = None
    cost_usd: float = 0.0
    created: bool = False
    resumed: bool = False
    terminal: bool = False  # the host's answer is final: the journal entry can go
    polls: int = 0
    retries: int = 0
    retry_wait_s: float = 0.0
    uncertain_create_attempts: int = 0
    host_status: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def on_retry(self, error: EachlabsError, wait: float) -> None:
        self.retries += 1
        self.retry_wait_s += wait
        self.run.retries += 1
        log.debug("eachlabs %s: retry in %.2f s after %s", self.item.image_id, wait, error.message)

    def prediction(self, **fields: Any) -> DepthPrediction:
        extra = {
            "resumed": self.resumed, "created": self.created, "host_status": self.host_status,
            "polls": self.polls, "retries": self.retries,
            "retry_wait_s": round(self.retry_wait_s, 3), **self.extra,
        }
        if self.uncertain_create_attempts:
            extra["uncertain_create_attempts"] = self.uncertain_create_attempts
        return DepthPrediction(
            image_id=self.item.image_id, prediction_id=self.prediction_id,
            attempts=self.create_attempts, http_status=self.http_status,
            latency_s=time.monotonic() - self.t0, cost_usd=round(self.cost_usd, 6),
            extra=extra, **fields)

    def failed(self, error: str) -> DepthPrediction:
        return self.prediction(status="failed", error=self.run.client.redact(error))

"""Per-run bookkeeping: counters for the whole batch (`RunState`), what happened to each image
(`Track`, which becomes its `DepthPrediction`), and the progress lines a run reports.

Every line and error text goes through the client's redactor before anyone sees it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flux_depth_assets.config.models import EachlabsProviderConfig
from flux_depth_assets.providers.base import DepthPrediction, ProgressFn, ProviderInput
from flux_depth_assets.providers.eachlabs.client import EachlabsClient
from flux_depth_assets.providers.eachlabs.journal import PredictionJournal
from flux_depth_assets.providers.eachlabs.pacing import PollScheduler
from flux_depth_assets.providers.eachlabs.protocol import EachlabsError
from flux_depth_assets.providers.result_check import ResultBreaker

if TYPE_CHECKING:
    from flux_depth_assets.providers.hosts.limits import AccountGate, Slot

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
    fatal: str | None = None  # a create answer that every create would get (bad key, no credit)
    stop: str | None = None  # why this run stopped creating (journal unwritable, bad results)
    run_id: str = ""
    breaker: ResultBreaker = field(default_factory=ResultBreaker)
    unverified: int = 0  # depth mode: creates whose result was not checked yet
    checked: asyncio.Condition = field(default_factory=asyncio.Condition)
    gate: AccountGate | None = None  # the host account's limits, shared by every run on it
    unavailable_after_s: float | None = None  # failing creates this long: the host is given up
    failing_since: float | None = None  # monotonic time of the first create failure in a row
    started_at: float = field(default_factory=time.time)  # wall clock, for the account stop

    def halt(self, reason: str) -> None:
        """Stop creating predictions for the rest of the run (polling and downloads go on)."""
        if self.stop is None:
            self.stop = self.client.redact(reason)
            self.emit(f"eachlabs: {self.stop}; no further predictions will be created in this run")

    def journal_failed(self, exc: BaseException, what: str) -> None:
        self.halt(
            f"the prediction journal could not be written ({what}: {type(exc).__name__}: {exc})"
        )

    async def admit_create(self) -> str | None:
        """Wait until a create may be sent; the reason when it may not. In `depth` mode, until
        one result proved that the host returns depth maps, at most `breaker.limit` creates are
        outstanding, so a host that answers otherwise costs at most that many predictions."""
        async with self.checked:
            while True:
                reason = self.fatal and f"an earlier create failed with {self.fatal}" or self.stop
                if reason:
                    return reason
                if (
                    self.mode != "depth"
                    or self.breaker.verified
                    or self.unverified < self.breaker.limit - self.breaker.bad
                ):
                    self.unverified += self.mode == "depth"
                    return None
                await self.checked.wait()

    async def result_checked(self, counted: bool) -> None:
        async with self.checked:
            if counted:
                self.unverified -= 1
            if self.breaker.tripped:
                self.halt(self.breaker.reason())
            self.checked.notify_all()

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
                self.emit(
                    f"eachlabs: {self.done}/{self.total} done ({self.failed} failed), "
                    f"{self.inflight} in flight, {self.retries} retries, "
                    f"${self.cost_usd:.2f} so far"
                )


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
    uncertain_cost_usd: float = 0.0
    host_status: str | None = None
    admitted: bool = False  # counted against the run's unverified creates (depth mode)
    slot: Slot | None = None  # the account's in-flight slot this prediction holds
    journal_live: bool = False  # this run wrote a journal entry that is still in use
    # prediction ids met in the journal (resumed or replaced) → what their create cost; the
    # pipeline records that cost here only if no earlier run recorded it (a crashed run)
    journaled_ids: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def uncertain(self, cost_usd: float, run_id: str) -> None:
        """A create that may have reached the host without its answer reaching us."""
        self.uncertain_create_attempts += 1
        self.uncertain_cost_usd += cost_usd
        if run_id and run_id != self.run.run_id:
            self.extra["uncertain_from_run"] = run_id

    def journaled(self, entry: Any, price_usd: float) -> None:
        if entry.prediction_id:
            self.journaled_ids[entry.prediction_id] = entry.cost_usd or price_usd
        if entry.run_id:
            self.extra["created_by_run"] = entry.run_id

    def on_retry(self, error: EachlabsError, wait: float) -> None:
        self.retries += 1
        self.retry_wait_s += wait
        self.run.retries += 1
        log.debug("eachlabs %s: retry in %.2f s after %s", self.item.image_id, wait, error.message)

    def prediction(self, **fields: Any) -> DepthPrediction:
        extra = {
            "resumed": self.resumed,
            "created": self.created,
            "host_status": self.host_status,
            "polls": self.polls,
            "retries": self.retries,
            "retry_wait_s": round(self.retry_wait_s, 3),
            **self.extra,
        }
        if self.uncertain_create_attempts:
            extra["uncertain_create_attempts"] = self.uncertain_create_attempts
            extra["uncertain_cost_usd"] = round(self.uncertain_cost_usd, 6)
        if self.journaled_ids:
            extra["journaled_predictions"] = dict(self.journaled_ids)
        if self.resumed or self.journaled_ids:
            extra["cost_reported"] = True  # this run's own creates only; see journaled_ids
        return DepthPrediction(
            image_id=self.item.image_id,
            prediction_id=self.prediction_id,
            attempts=self.create_attempts,
            http_status=self.http_status,
            latency_s=time.monotonic() - self.t0,
            cost_usd=round(self.cost_usd, 6),
            extra=extra,
            **fields,
        )

    def failed(self, error: str) -> DepthPrediction:
        return self.prediction(status="failed", error=self.run.client.redact(error))

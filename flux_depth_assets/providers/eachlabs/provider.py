"""The `eachlabs` depth provider: flux-depth-pro on a hosted prediction API, driven from one sync call.

`predict_many(items, progress)` runs one asyncio loop with one `EachlabsClient` (one connection
pool) and `max_concurrency` workers; each image goes through `flow.predict_one` (resume or create,
poll, download, decode). Journaled images go first, so their ids are polled before anything new
is created.

Polling adapts to the host (`pacing.PollScheduler`): once a few predictions have finished, the
first poll of a new one waits until about when most predictions finish, then polls every
`poll_interval_s`. That keeps polls per prediction (which hosts rate-limit) low.

Journal entries stay until the pipeline calls `settle(cache_keys)` after caching the results and
recording their cost: a crash at any instant between create and cache costs nothing on the
re-run. A prediction that passed its deadline or lost contact with the host stays journaled for
the next run. If the journal cannot be written (probe before the first create, or any write
mid-run), no further prediction is created; `stop_reason()` tells the pipeline why.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import threading
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import httpx

from flux_depth_assets.config.models import EachlabsProviderConfig
from flux_depth_assets.paths import default_home
from flux_depth_assets.providers.base import (
    DepthPrediction,
    DepthProvider,
    ProgressFn,
    ProviderInput,
    ProviderNotReady,
)
from flux_depth_assets.providers.eachlabs.client import EachlabsClient, Secret, origin, url_host
from flux_depth_assets.providers.eachlabs.flow import predict_one
from flux_depth_assets.providers.eachlabs.images import (
    MAX_INPUT_PIXELS,
    PREPROCESS_VERSION,
)
from flux_depth_assets.providers.eachlabs.journal import PredictionJournal
from flux_depth_assets.providers.eachlabs.pacing import PollScheduler, RetryPolicy
from flux_depth_assets.providers.eachlabs.tracking import RunState, Track
from flux_depth_assets.redaction import unsafe_key_problem
from flux_depth_assets.storage.store import Storage

if TYPE_CHECKING:  # providers.hosts reads answers with this package's protocol module
    from flux_depth_assets.providers.hosts.base import HostAdapter
    from flux_depth_assets.providers.hosts.limits import AccountGate, AccountLimits

API_KEY_ENV = "EACHLABS_API_KEY"


class EachlabsNotReady(ProviderNotReady):
    """The provider cannot run (no API key, bad base URL); raised before any image is sent."""


class EachlabsProvider(DepthProvider):
    """flux-depth-pro on Eachlabs (or anything speaking its protocol, like `flux_depth_assets.fakeapi`).

    `journal_storage`: where prediction ids are journaled (`journal/eachlabs/<cache_key>.json`).
    Pass it here or set the attribute before `predict_many`; when unset, the local folder
    `$FLUX_DEPTH_HOME` is used, so ids are always journaled somewhere durable.
    """

    name = "eachlabs"

    def __init__(
        self,
        config: EachlabsProviderConfig,
        api_key: str | None = None,
        base_url_override: str | None = None,
        journal_storage: Storage | None = None,
        *,
        retry: RetryPolicy | None = None,
        progress_interval_s: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
        seed: int | None = None,
        adapter: HostAdapter | None = None,
        key_env: str | None = None,
        account: str | None = None,
        limits: AccountLimits | None = None,
        unavailable_after_s: float | None = None,
    ):
        if adapter is None:
            from flux_depth_assets.providers.hosts.eachlabs import EachlabsAdapter

            adapter = EachlabsAdapter()
        self.adapter = adapter  # the host's wire dialect
        self.name = self.adapter.name
        self.key_env = key_env or self.adapter.api_key_env
        self.account = account  # name of the account's shared limits (default: a key hash)
        self.limits = limits  # in flight / creates per minute for the account (default: none)
        self.unavailable_after_s = unavailable_after_s  # a host list's failover threshold
        self.config = config
        self.model = config.model
        self.model_version = config.version
        self.price_usd = config.price_usd
        self.mode = config.mode
        self._api_key = Secret(api_key or "")
        base_url = (base_url_override or "").strip() or config.base_url
        if not base_url.startswith(("http://", "https://")):
            raise EachlabsNotReady(
                f"{self.adapter.base_url_env} must start with http:// or https://"
            )
        self.base_url = base_url.rstrip("/")
        self.journal_storage = journal_storage
        self.retry = retry or RetryPolicy(max_retries=config.max_retries)
        self.progress_interval_s = progress_interval_s
        self._transport = transport
        self._rng = random.Random(seed)
        self.run_id = ""
        self._unfinished: set[str] = set()  # keys of predictions that must stay journaled
        self._stop: str | None = None

    def __repr__(self) -> str:
        key = "<set>" if self._api_key else "<unset>"
        return (
            f"EachlabsProvider(model={self.model!r}, version={self.model_version!r}, "
            f"mode={self.mode!r}, base_url={self.base_url!r}, api_key={key})"
        )

    # ------------------------------------------------------------------ DepthProvider

    def cache_params(self) -> dict[str, Any]:
        return {
            "host": url_host(self.base_url),  # a fake server's output never passes for the host's
            "version": self.config.version,
            "mode": self.config.mode,
            "params": self.config.params.model_dump(mode="json"),
            "input": f"max{MAX_INPUT_PIXELS}px-v{PREPROCESS_VERSION}",
        }

    def check_ready(self) -> None:
        if not self._api_key:
            raise EachlabsNotReady(
                f"the {self.name} provider has no API key: set the environment variable "
                f"{self.key_env} "
                "(read at run time through Dagster's EnvVar; never logged). Nothing was sent."
            )
        problem = unsafe_key_problem(self._api_key.reveal())
        if problem:
            raise EachlabsNotReady(
                f"the API key in {self.key_env} cannot be used: {problem}. Set it again on one "
                "line, without spaces. Nothing was sent."
            )

    def bind_storage(self, storage: Storage, run_id: str = "") -> None:
        """The journal lives with the run's storage root (on S3 in production)."""
        self.journal_storage = storage
        self.run_id = run_id or self.run_id

    def _journal(self) -> PredictionJournal:
        return PredictionJournal(self.journal_storage or Storage(default_home()))

    def settle(self, cache_keys: Sequence[str]) -> None:
        """The pipeline cached these results and recorded their cost: their entries may go
        (also stale ones a killed run left behind for results it had cached). Entries of this
        run's predictions that are not final (deadline, lost contact) stay journaled."""
        wanted = set(cache_keys) - self._unfinished
        if not wanted:
            return
        journal = self._journal()
        keys = sorted(wanted.intersection(journal.keys()))  # one listing, deletes only
        if keys:
            self._clear(journal, keys)

    def stop_reason(self) -> str | None:
        return self._stop

    def predict_many(
        self, items: Sequence[ProviderInput], progress: ProgressFn | None = None
    ) -> list[DepthPrediction]:
        self.check_ready()
        if not items:
            return []
        self._stop = None
        journal = self._journal()
        problem = journal.unwritable()
        if problem:
            raise EachlabsNotReady(
                f"the prediction journal at {problem}; without it a crash could pay twice, so "
                "nothing was sent. Fix the storage root and run again"
            )
        # one prediction per cache key: an image listed twice is paid once
        unique: dict[str, ProviderInput] = {}
        for item in items:
            unique.setdefault(item.cache_key, item)
        preds = self._run_sync(list(unique.values()), journal, progress)
        by_key = {item.cache_key: pred for item, pred in zip(unique.values(), preds)}
        out = []
        for item in items:
            pred = by_key[item.cache_key]
            if pred.image_id != item.image_id:
                pred = dataclasses.replace(
                    pred,
                    image_id=item.image_id,
                    cost_usd=0.0,
                    attempts=0,
                    extra={**pred.extra, "same_as": pred.image_id, "cost_reported": True},
                )  # paid once, above
            pred.extra.setdefault("host", self.name)  # lineage's `host` column
            out.append(pred)
        return out

    def _run_sync(
        self, items: list[ProviderInput], journal: PredictionJournal, progress: ProgressFn | None
    ) -> list[DepthPrediction]:
        coro = self._run(items, journal, progress)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(coro)
        # called from inside a running loop (a notebook, an async op): run ours on a thread
        box: dict[str, Any] = {}

        def runner() -> None:
            try:
                box["result"] = asyncio.run(coro)
            except BaseException as exc:  # noqa: BLE001 - re-raised below on the caller's thread
                box["error"] = exc

        thread = threading.Thread(target=runner, name="eachlabs-predict", daemon=True)
        thread.start()
        thread.join()
        if "error" in box:
            raise box["error"]
        return box["result"]

    # ------------------------------------------------------------------ the run

    async def _run(
        self, items: list[ProviderInput], journal: PredictionJournal, progress: ProgressFn | None
    ) -> list[DepthPrediction]:
        cfg = self.config
        client = EachlabsClient(
            self.base_url,
            self._api_key,
            timeout_s=cfg.timeout_s,
            max_connections=min(cfg.max_concurrency, len(items)) + 2,
            retry=self.retry,
            requests_per_second=cfg.requests_per_second,
            transport=self._transport,
            rng=self._rng,
            adapter=self.adapter,
        )
        t_start = time.monotonic()
        try:
            host = url_host(self.base_url)
            run = RunState(
                total=len(items),
                config=cfg,
                mode=self.mode,
                host=host,
                client=client,
                journal=journal,
                schedule=PollScheduler(cfg.poll_interval_s),
                progress=progress,
                run_id=self.run_id,
                gate=self._gate(journal.storage),
                unavailable_after_s=self.unavailable_after_s,
            )
            entries = await asyncio.to_thread(journal.load, {i.cache_key for i in items})
            entries = {k: e for k, e in entries.items() if e.host == host}
            live = {k for k, e in entries.items() if e.prediction_id}
            if live:
                run.emit(
                    f"eachlabs: resuming {len(live)} journaled prediction(s) "
                    f"before creating new ones ({journal!r})"
                )
            if len(entries) > len(live):
                run.emit(
                    f"eachlabs: {len(entries) - len(live)} create(s) of an earlier run were "
                    "sent without an answer (the run stopped); the host may have charged "
                    "them: reported as uncertain"
                )
            if origin(self.base_url)[0] == "http" and not _is_loopback(self.base_url):
                run.emit(
                    f"eachlabs: warning: {host} is plain http; the API key travels unencrypted"
                )
            # journaled images first: their ids are polled before anything new is created
            order = sorted(range(len(items)), key=lambda i: items[i].cache_key not in live)
            queue = deque(order)
            results: list[DepthPrediction | None] = [None] * len(items)
            tracks: list[Track | None] = [None] * len(items)

            async def worker() -> None:
                while queue:
                    index = queue.popleft()
                    item = items[index]
                    now = time.monotonic()
                    track = Track(
                        item=item, t0=now, deadline=now + cfg.prediction_deadline_s, run=run
                    )
                    tracks[index] = track
                    run.inflight += 1
                    try:
                        pred = await predict_one(track, entries.get(item.cache_key))
                    finally:
                        run.inflight -= 1
                    results[index] = pred
                    run.done += 1
                    run.failed += pred.status != "succeeded"

            ticker = asyncio.create_task(run.report_progress(self.progress_interval_s))
            renewer = asyncio.create_task(run.gate.keep_renewed()) if run.gate else None
            try:
                await asyncio.gather(
                    *(worker() for _ in range(min(cfg.max_concurrency, len(items))))
                )
            finally:
                ticker.cancel()
                if renewer is not None:
                    renewer.cancel()
            out = [r for r in results if r is not None]
            for t in tracks:
                if t is None:
                    continue
                if t.terminal or (t.prediction_id is None and not t.journal_live):
                    self._unfinished.discard(t.item.cache_key)
                else:
                    self._unfinished.add(t.item.cache_key)
            self._stop = run.stop
            kept = sum(1 for t in tracks if t is not None and not t.terminal and t.prediction_id)
            run.emit(
                f"eachlabs: finished {run.done}/{run.total}: "
                f"{run.done - run.failed} succeeded, {run.failed} failed, "
                f"{run.created} created, {run.resumed} resumed, {run.retries} retries, "
                f"${run.cost_usd:.2f}, {time.monotonic() - t_start:.1f} s"
                + (f"; {kept} prediction(s) still journaled for the next run" if kept else "")
            )
            return out
        finally:
            await client.aclose()

    def _gate(self, storage: Storage) -> AccountGate:
        """The host account's shared limits and stop flag, kept in the storage root."""
        from flux_depth_assets.providers.hosts.limits import (
            AccountGate,
            AccountLimits,
            account_id,
        )

        return AccountGate(
            storage,
            self.name,
            self.account or account_id(self._api_key.reveal()),
            self.limits or AccountLimits(),
        )

    @staticmethod
    def _clear(journal: PredictionJournal, keys: list[str]) -> None:
        if len(keys) <= 16 or journal.storage.is_local:
            for key in keys:
                journal.clear(key)
            return
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(journal.clear, keys))


def _is_loopback(url: str) -> bool:
    host = httpx.URL(url).host
    return host in ("localhost", "127.0.0.1", "::1") or host.startswith("127.")

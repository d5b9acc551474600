"""The `eachlabs` depth provider: flux-depth-pro on a hosted prediction API, driven from one sync call.

`predict_many(items, progress)` runs one asyncio loop with one `EachlabsClient` (one connection
pool) and `max_concurrency` workers. Per image:

1. if the journal holds a prediction for its cache key, poll that id (no new charge; a resumed
   prediction costs 0 in this run); if the host says it failed or does not know the id (404),
   create a new one and record the replaced id in `extra`;
2. otherwise prepare the control image (≤ 4 MP, ≤ 50 MB, a JPEG data URI, or the source URL when
   `image_transport: source_url` and the source is http(s)), create the prediction, and journal its
   id BEFORE the first poll;
3. poll until success, failure, or `prediction_deadline_s`; download the output at once and journal
   its bytes; decode it (`depth` mode: float32 nearness at the source size; `render` mode: the bytes).

Polling adapts to the host: once a few predictions have finished, the first poll of a new one waits
until about when most predictions finish, then polls every `poll_interval_s`. That keeps requests
(and client CPU) per prediction low without delaying results.

Journal entries are removed when `predict_many` returns an image's result; a prediction that
passed its deadline or lost contact with the host stays journaled for the next run.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import io
import logging
import math
import random
import threading
import time
import traceback
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Sequence

import httpx
import numpy as np
from PIL import Image

from flux_depth_assets.config.models import EachlabsProviderConfig
from flux_depth_assets.depth.encoding import depth_image_to_nearness
from flux_depth_assets.paths import default_home
from flux_depth_assets.providers.base import (
    DepthPrediction,
    DepthProvider,
    ProgressFn,
    ProviderInput,
    ProviderNotReady,
)
from flux_depth_assets.providers.eachlabs.client import (
    EachlabsClient,
    EachlabsError,
    PredictionState,
    RetryPolicy,
    Secret,
    origin,
    url_host,
)
from flux_depth_assets.providers.eachlabs.journal import JournalEntry, PredictionJournal
from flux_depth_assets.storage.store import Storage

log = logging.getLogger(__name__)

MAX_INPUT_PIXELS = 4_000_000  # the host takes "up to about 4 megapixels"
MAX_INPUT_BYTES = 50 * 1024 * 1024
JPEG_QUALITIES = (95, 90, 80, 70)
PREPROCESS_VERSION = "1"  # bump when the control image preparation changes the host's output
FATAL_CREATE_STATUSES = frozenset({401, 402, 403})  # bad key / no credit: every create would fail
API_KEY_ENV = "EACHLABS_API_KEY"


class EachlabsNotReady(ProviderNotReady):
    """The provider cannot run (no API key, bad base URL); raised before any image is sent."""


class DeadlineExceeded(Exception):
    def __init__(self, last_status: str):
        super().__init__(last_status)
        self.last_status = last_status


# --------------------------------------------------------------------------- pure helpers


def prepare_control_image(image: Image.Image) -> tuple[str, tuple[int, int]]:
    """A JPEG data URI of `image` downscaled (aspect kept) to ≤ 4 MP and ≤ 50 MB; and its size."""
    im = image if image.mode == "RGB" else image.convert("RGB")
    w, h = im.size
    if w * h > MAX_INPUT_PIXELS:
        scale = math.sqrt(MAX_INPUT_PIXELS / (w * h))
        size = (max(1, math.floor(w * scale)), max(1, math.floor(h * scale)))
        while size[0] * size[1] > MAX_INPUT_PIXELS:  # floor rounding can still land one row over
            size = (size[0], size[1] - 1)
        im = im.resize(size, Image.BICUBIC, reducing_gap=3.0)
    for quality in JPEG_QUALITIES:
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=quality)
        if buf.tell() <= MAX_INPUT_BYTES:
            break
    else:
        raise ValueError("control image does not fit in 50 MB even at JPEG quality 70")
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii"), im.size


def sniff_image_format(data: bytes) -> str | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def decode_depth(data: bytes, size: tuple[int, int] | None) -> np.ndarray:
    """float32 nearness in [0, 1] (white = near) at `size` (w, h) when given."""
    nearness = depth_image_to_nearness(data)
    if size is not None and nearness.shape != (size[1], size[0]):
        resized = Image.fromarray(nearness.astype(np.float32), "F").resize(size, Image.BILINEAR)
        nearness = np.asarray(resized, dtype=np.float32)
    return np.ascontiguousarray(nearness, dtype=np.float32)


class PollScheduler:
    """When to poll: an online estimate of a quantile of the host's run time.

    Warm-up (no prediction of this run has finished yet): the first `scouts` predictions poll every
    `interval_s`; the others wait until a scout finishes (or, as a fallback, poll at growing
    intervals), so a first wave of hundreds does not poll the host every interval.

    Once the first prediction finishes its run time becomes the estimate, and each later one nudges
    it (a Robbins–Monro quantile estimator): up by `share × interval_s` when it was still running at
    the estimate, down by `(1 − share) × interval_s` when it was already done. The estimate settles
    where `share` of the predictions are done at their first poll, so a steady host costs about
    1 / share polls per prediction, and a host that speeds up or slows down is followed. Every
    prediction still polls every `interval_s` after its first poll.
    """

    def __init__(self, interval_s: float, share: float = 0.8, scouts: int = 4):
        self.interval_s = interval_s
        self.share = share
        self.estimate_s: float | None = None
        self._scouts_left = scouts
        self._learned = asyncio.Event()

    def first_delay(self) -> float:
        if self.estimate_s is None:
            return self.interval_s
        return max(self.interval_s, self.estimate_s)

    def role(self) -> str:
        """`planned` (the estimate is known), `scout` or `follower` (warm-up) for a new prediction."""
        if self.estimate_s is not None:
            return "planned"
        if self._scouts_left > 0:
            self._scouts_left -= 1
            return "scout"
        return "follower"

    async def sleep_until_poll(self, role: str, started: float, last_poll: float | None,
                               polls: int, deadline: float) -> None:
        """Sleep until the next poll of a fresh prediction (monotonic times)."""
        if role == "follower" and self.estimate_s is None:
            fallback = (last_poll or started) + self.interval_s * min(8, 2 ** (polls + 1))
            try:
                await asyncio.wait_for(self._learned.wait(),
                                       max(0.0, min(fallback, deadline) - time.monotonic()))
            except asyncio.TimeoutError:
                return
        if last_poll is None:
            wake = started + self.first_delay()
        else:
            wake = last_poll + self.interval_s
        if role == "follower" and last_poll is not None:
            wake = max(wake, started + self.first_delay())
        wait = min(wake, deadline) - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)

    def observe(self, running_until_s: float | None, done_by_s: float) -> None:
        """A prediction was last seen running at `running_until_s` (None: never) and seen done at
        `done_by_s`, both in seconds since its create answer."""
        if self.estimate_s is None:
            self.estimate_s = done_by_s
            self._learned.set()
            return
        if done_by_s <= self.estimate_s:
            finished_by_estimate = True
        elif running_until_s is None:
            return  # done at a first poll later than the estimate: says nothing about it
        elif running_until_s >= self.estimate_s:
            finished_by_estimate = False
        else:  # the bracket straddles the estimate: go by its middle
            finished_by_estimate = (running_until_s + done_by_s) / 2 <= self.estimate_s
        if finished_by_estimate:
            self.estimate_s = max(0.0, self.estimate_s - (1.0 - self.share) * self.interval_s)
        else:
            self.estimate_s += self.share * self.interval_s


# --------------------------------------------------------------------------- per-run state


@dataclass
class _Run:
    total: int
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


@dataclass
class _Track:
    """What happened to one image in this run (becomes the DepthPrediction and its `extra`)."""

    item: ProviderInput
    t0: float
    deadline: float
    run: _Run
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


# --------------------------------------------------------------------------- the provider


class EachlabsProvider(DepthProvider):
    """flux-depth-pro on Eachlabs (or anything speaking its protocol, like `flux_depth_assets.fakeapi`).

    `journal_storage`: where prediction ids are journaled (`journal/eachlabs/<cache_key>.json`).
    Pass it here or set the attribute before `predict_many`; when unset, the local folder
    `$FLUX_DEPTH_HOME` is used, so ids are always journaled somewhere durable.
    """

    name = "eachlabs"

    def __init__(self, config: EachlabsProviderConfig, api_key: str | None = None,
                 base_url_override: str | None = None, journal_storage: Storage | None = None, *,
                 retry: RetryPolicy | None = None, progress_interval_s: float = 5.0,
                 transport: httpx.AsyncBaseTransport | None = None, seed: int | None = None):
        self.config = config
        self.model = config.model
        self.model_version = config.version
        self.price_usd = config.price_usd
        self.mode = config.mode
        self._api_key = Secret((api_key or "").strip())
        base_url = (base_url_override or "").strip() or config.base_url
        if not base_url.startswith(("http://", "https://")):
            raise EachlabsNotReady("EACHLABS_BASE_URL must start with http:// or https://")
        self.base_url = base_url.rstrip("/")
        self.journal_storage = journal_storage
        self.retry = retry or RetryPolicy(max_retries=config.max_retries)
        self.progress_interval_s = progress_interval_s
        self._transport = transport
        self._rng = random.Random(seed)

    def __repr__(self) -> str:
        key = "<set>" if self._api_key else "<unset>"
        return (f"EachlabsProvider(model={self.model!r}, version={self.model_version!r}, "
                f"mode={self.mode!r}, base_url={self.base_url!r}, api_key={key})")

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
                f"the eachlabs provider has no API key: set the environment variable {API_KEY_ENV} "
                "(read at run time through Dagster's EnvVar; never logged). Nothing was sent.")

    def bind_storage(self, storage: Storage) -> None:
        """The journal lives with the run's storage root (on S3 in production)."""
        self.journal_storage = storage

    def predict_many(self, items: Sequence[ProviderInput],
                     progress: ProgressFn | None = None) -> list[DepthPrediction]:
        self.check_ready()
        if not items:
            return []
        journal = PredictionJournal(self.journal_storage or Storage(default_home()))
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
                pred = dataclasses.replace(pred, image_id=item.image_id, cost_usd=0.0, attempts=0,
                                           extra={**pred.extra, "same_as": pred.image_id,
                                                  "cost_reported": True})  # paid once, above
            out.append(pred)
        return out

    def _run_sync(self, items: list[ProviderInput], journal: PredictionJournal,
                  progress: ProgressFn | None) -> list[DepthPrediction]:
        coro = self._run(items, journal, progress)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return _run_loop(coro)
        # called from inside a running loop (a notebook, an async op): run ours on a thread
        box: dict[str, Any] = {}

        def runner() -> None:
            try:
                box["result"] = _run_loop(coro)
            except BaseException as exc:  # noqa: BLE001 - re-raised below on the caller's thread
                box["error"] = exc

        thread = threading.Thread(target=runner, name="eachlabs-predict", daemon=True)
        thread.start()
        thread.join()
        if "error" in box:
            raise box["error"]
        return box["result"]

    # ------------------------------------------------------------------ the run

    async def _run(self, items: list[ProviderInput], journal: PredictionJournal,
                   progress: ProgressFn | None) -> list[DepthPrediction]:
        cfg = self.config
        client = EachlabsClient(
            self.base_url, self._api_key, timeout_s=cfg.timeout_s,
            max_connections=min(cfg.max_concurrency, len(items)) + 2, retry=self.retry,
            requests_per_second=cfg.requests_per_second, transport=self._transport, rng=self._rng)
        run = _Run(total=len(items), client=client, journal=journal,
                   schedule=PollScheduler(cfg.poll_interval_s), progress=progress)
        t_start = time.monotonic()
        try:
            host = url_host(self.base_url)
            entries = await asyncio.to_thread(journal.load, {i.cache_key for i in items})
            entries = {k: e for k, e in entries.items() if e.host == host}
            if entries:
                self._emit(run, f"eachlabs: resuming {len(entries)} journaled prediction(s) "
                                f"before creating new ones ({journal!r})")
            if origin(self.base_url)[0] == "http" and not _is_loopback(self.base_url):
                self._emit(run, f"eachlabs: warning: {host} is plain http; the API key travels "
                                "unencrypted")
            # journaled images first: their ids are polled before anything new is created
            order = sorted(range(len(items)), key=lambda i: items[i].cache_key not in entries)
            queue = deque(order)
            results: list[DepthPrediction | None] = [None] * len(items)
            tracks: list[_Track | None] = [None] * len(items)

            async def worker() -> None:
                while queue:
                    index = queue.popleft()
                    item = items[index]
                    now = time.monotonic()
                    track = _Track(item=item, t0=now, deadline=now + cfg.prediction_deadline_s,
                                   run=run)
                    tracks[index] = track
                    run.inflight += 1
                    try:
                        pred = await self._one(track, entries.get(item.cache_key))
                    finally:
                        run.inflight -= 1
                    results[index] = pred
                    run.done += 1
                    run.failed += pred.status != "succeeded"

            ticker = asyncio.create_task(self._ticker(run))
            try:
                await asyncio.gather(*(worker() for _ in range(min(cfg.max_concurrency, len(items)))))
            finally:
                ticker.cancel()
            out = [r for r in results if r is not None]
            done_keys = [t.item.cache_key for t in tracks if t is not None and t.terminal]
            await asyncio.to_thread(self._clear, journal, done_keys)
            kept = sum(1 for t in tracks if t is not None and not t.terminal and t.prediction_id)
            self._emit(run, f"eachlabs: finished {run.done}/{run.total}: "
                            f"{run.done - run.failed} succeeded, {run.failed} failed, "
                            f"{run.created} created, {run.resumed} resumed, {run.retries} retries, "
                            f"${run.cost_usd:.2f}, {time.monotonic() - t_start:.1f} s"
                            + (f"; {kept} prediction(s) still journaled for the next run" if kept else ""))
            return out
        finally:
            await client.aclose()

    @staticmethod
    def _clear(journal: PredictionJournal, keys: list[str]) -> None:
        if len(keys) <= 16 or journal.storage.is_local:
            for key in keys:
                journal.clear(key)
            return
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(journal.clear, keys))

    async def _ticker(self, run: _Run) -> None:
        while True:
            await asyncio.sleep(self.progress_interval_s)
            if run.inflight:
                self._emit(run, f"eachlabs: {run.done}/{run.total} done ({run.failed} failed), "
                                f"{run.inflight} in flight, {run.retries} retries, "
                                f"${run.cost_usd:.2f} so far")

    def _emit(self, run: _Run, line: str) -> None:
        line = run.client.redact(line)
        log.log(logging.DEBUG if run.progress is not None else logging.INFO, line)
        if run.progress is not None:
            try:
                run.progress(line)
            except Exception:  # noqa: BLE001 - a broken progress sink never stops the run
                log.exception("eachlabs: progress callback failed")

    # ------------------------------------------------------------------ one image

    async def _one(self, track: _Track, entry: JournalEntry | None) -> DepthPrediction:
        try:
            replaced: list[str] = []
            if entry is not None:
                pred = await self._resume(track, entry)
                if pred is not None:
                    return pred
                replaced = [*entry.replaced_prediction_ids, entry.prediction_id]
            return await self._create(track, replaced)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - one image never sinks the batch
            if log.isEnabledFor(logging.DEBUG):  # the traceback, redacted like everything else
                trace = "".join(traceback.format_exception(exc))
                log.debug("eachlabs %s: unexpected error\n%s", track.item.image_id,
                          track.run.client.redact(trace))
            note = "; its prediction stays journaled" if track.prediction_id and not track.terminal else ""
            return track.failed(f"{type(exc).__name__}: {exc}{note}")

    async def _resume(self, track: _Track, entry: JournalEntry) -> DepthPrediction | None:
        """Finish a journaled prediction; None when it must be created again (failed or unknown)."""
        run = track.run
        track.resumed = True
        track.prediction_id = entry.prediction_id
        run.resumed += 1
        if entry.state == "downloaded" and entry.output_b64:
            track.host_status = "success"
            return await self._deliver(track, entry, entry.output(), entry.output_content_type or "",
                                       already_journaled=True)
        try:
            state = await self._wait(track, fresh=False)
        except EachlabsError as exc:
            if exc.status != 404:
                track.http_status = exc.status
                return track.failed(f"polling journaled prediction {entry.prediction_id} failed: "
                                    f"{exc.message}; it stays journaled and the next run resumes it")
            reason = f"journaled prediction {entry.prediction_id} is unknown to the host (HTTP 404)"
        except DeadlineExceeded as exc:
            return track.failed(
                f"journaled prediction {entry.prediction_id} still {exc.last_status or 'running'} "
                f"after {self.config.prediction_deadline_s:g} s (prediction_deadline_s); it stays "
                "journaled and the next run resumes it")
        else:
            if state.state == "succeeded":
                return await self._download_and_deliver(track, entry, state)
            reason = (f"journaled prediction {entry.prediction_id} ended {state.status}: "
                      f"{state.error or 'no error given'}")
        track.extra["replaced_prediction_ids"] = [*entry.replaced_prediction_ids,
                                                  entry.prediction_id]
        track.extra["replaced_because"] = run.client.redact(reason)
        self._emit(run, f"eachlabs: {track.item.image_id}: {reason}; creating a new prediction")
        track.resumed = False
        track.prediction_id = None
        track.http_status = None
        track.host_status = None
        run.resumed -= 1
        return None

    async def _create(self, track: _Track, replaced: list[str]) -> DepthPrediction:
        run, cfg, item = track.run, self.config, track.item
        if run.fatal:
            return track.failed(f"not sent: an earlier create failed with {run.fatal}")
        if cfg.image_transport == "source_url" and item.source_uri.startswith(("http://", "https://")):
            control, size = item.source_uri, None
            track.extra["transport"] = "source_url"
        else:
            control, size, sent = await asyncio.to_thread(self._prepare, item)
            track.extra["transport"] = "data_uri"
            track.extra["sent_size"] = list(sent)
        payload = {"model": cfg.model, "version": cfg.version,
                   "input": self._inputs(control), "webhook_url": ""}
        try:
            pid, attempts, status = await run.client.create(payload, deadline=track.deadline,
                                                            on_retry=track.on_retry)
        except EachlabsError as exc:
            track.create_attempts = exc.attempts
            track.http_status = exc.status
            if exc.status in FATAL_CREATE_STATUSES and run.fatal is None:
                run.fatal = f"HTTP {exc.status}"
                self._emit(run, f"eachlabs: create answered {exc.message}; no further "
                                "predictions will be created in this run")
            if exc.uncertain:
                track.uncertain_create_attempts += 1
            return track.failed(f"create failed: {exc.message}")
        del payload, control
        track.create_attempts, track.http_status = attempts, status
        track.prediction_id, track.created = pid, True
        track.cost_usd = cfg.price_usd
        run.cost_usd += cfg.price_usd
        run.created += 1
        entry = JournalEntry(cache_key=item.cache_key, image_id=item.image_id, prediction_id=pid,
                             host=url_host(self.base_url), model=cfg.model, version=cfg.version,
                             replaced_prediction_ids=replaced)
        # durable BEFORE the first poll; on a thread, as a file create can stall for milliseconds
        await asyncio.to_thread(run.journal.write, entry)
        try:
            state = await self._wait(track, fresh=True)
        except DeadlineExceeded as exc:
            return track.failed(
                f"prediction {pid} still {exc.last_status or 'running'} after "
                f"{cfg.prediction_deadline_s:g} s (prediction_deadline_s); it stays journaled and "
                "the next run resumes polling it instead of paying again")
        except EachlabsError as exc:
            track.http_status = exc.status
            return track.failed(f"polling prediction {pid} failed: {exc.message}; it stays "
                                "journaled and the next run resumes it")
        if state.state == "failed":
            track.terminal = True
            return track.failed(f"host reported prediction {pid} {state.status}: "
                                f"{state.error or 'no error given'}")
        return await self._download_and_deliver(track, entry, state, size)

    @staticmethod
    def _prepare(item: ProviderInput) -> tuple[str, tuple[int, int], tuple[int, int]]:
        """(data URI, source size, sent size)."""
        image = item.load_image()
        uri, sent = prepare_control_image(image)
        return uri, image.size, sent

    def _inputs(self, control: str) -> dict[str, Any]:
        p = self.config.params
        inputs: dict[str, Any] = {
            "control_image": control, "prompt": p.prompt, "steps": p.steps,
            "guidance": p.guidance, "safety_tolerance": p.safety_tolerance,
            "output_format": p.output_format, "prompt_upsampling": p.prompt_upsampling,
        }
        if p.seed is not None:
            inputs["seed"] = p.seed
        return inputs

    async def _wait(self, track: _Track, fresh: bool) -> PredictionState:
        """Poll until the prediction is final. Raises DeadlineExceeded or EachlabsError."""
        run, pid = track.run, track.prediction_id
        assert pid is not None
        started = time.monotonic()
        role = run.schedule.role() if fresh else "resumed"
        last_poll: float | None = None
        running_until: float | None = None
        last_status = ""
        polls = 0
        while True:
            if time.monotonic() >= track.deadline:
                raise DeadlineExceeded(last_status)
            if fresh:
                await run.schedule.sleep_until_poll(role, started, last_poll, polls, track.deadline)
            elif last_poll is not None:  # a resumed prediction is polled at once, then every interval
                await asyncio.sleep(max(0.0, min(last_poll + self.config.poll_interval_s,
                                                 track.deadline) - time.monotonic()))
            last_poll = time.monotonic()
            state, _attempts, status = await run.client.get(pid, deadline=track.deadline,
                                                            on_retry=track.on_retry)
            polls += 1
            track.polls += 1
            track.http_status = status
            track.host_status = state.status or None
            if state.state != "running":
                if fresh:
                    run.schedule.observe(running_until, time.monotonic() - started)
                if state.cost_usd is not None:
                    track.extra["host_cost_usd"] = state.cost_usd
                    if track.created:  # the host's figure wins over the configured price
                        run.cost_usd += state.cost_usd - track.cost_usd
                        track.cost_usd = state.cost_usd
                predict_time = state.metrics.get("predict_time")
                if isinstance(predict_time, (int, float)) and not isinstance(predict_time, bool):
                    track.extra["predict_time_s"] = float(predict_time)
                return state
            running_until = time.monotonic() - started
            last_status = state.status
            if time.monotonic() >= track.deadline:
                raise DeadlineExceeded(last_status)

    async def _download_and_deliver(self, track: _Track, entry: JournalEntry,
                                    state: PredictionState,
                                    size: tuple[int, int] | None = None) -> DepthPrediction:
        run = track.run
        if not state.outputs:
            track.terminal = True
            return track.failed(f"host reported prediction {track.prediction_id} {state.status} "
                                "without an output URL")
        try:
            data, content_type, _attempts, status = await run.client.download(
                state.outputs[0], deadline=track.deadline + self.config.timeout_s,
                on_retry=track.on_retry)
        except EachlabsError as exc:
            track.http_status = exc.status
            return track.failed(f"downloading the output of prediction {track.prediction_id} "
                                f"failed: {exc.message}; it stays journaled and the next run "
                                "fetches it again")
        track.http_status = status
        return await self._deliver(track, entry, data, content_type, size=size)

    async def _deliver(self, track: _Track, entry: JournalEntry, data: bytes | None,
                       content_type: str, *, size: tuple[int, int] | None = None,
                       already_journaled: bool = False) -> DepthPrediction:
        """Journal the output, then turn it into the prediction for this mode."""
        mode, item = self.mode, track.item
        fmt = sniff_image_format(data or b"")

        def work() -> DepthPrediction:
            if not already_journaled:
                track.run.journal.record_output(entry, data or b"", content_type)
            track.terminal = True
            if fmt is None:
                return track.failed(f"the output of prediction {track.prediction_id} is not a "
                                    f"PNG/JPEG/WebP image ({len(data or b'')} bytes, "
                                    f"{content_type or 'no content type'})")
            if mode == "render":
                return track.prediction(render_bytes=data, render_format=fmt, depth=None)
            target = size
            if target is None:
                try:
                    with item.load_image() as im:
                        target = im.size
                except Exception:  # noqa: BLE001 - keep the host's size; the caller resizes
                    target = None
            try:
                depth = decode_depth(data or b"", target)
            except Exception as exc:  # noqa: BLE001
                return track.failed(f"the output of prediction {track.prediction_id} could not be "
                                    f"decoded: {type(exc).__name__}: {exc}")
            return track.prediction(depth=depth)

        return await asyncio.to_thread(work)  # file writes and decoding stay off the event loop


def _run_loop(coro):
    """Run `coro` on a fresh event loop: uvloop when installed (less CPU per request), else asyncio."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def _is_loopback(url: str) -> bool:
    host = httpx.URL(url).host
    return host in ("localhost", "127.0.0.1", "::1") or host.startswith("127.")

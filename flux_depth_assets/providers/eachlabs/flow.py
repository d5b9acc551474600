"""What happens to one image: resume or create its prediction, poll it, fetch and decode the output.

1. if the journal holds a prediction for its cache key, poll that id (no new charge; a resumed
   prediction costs 0 in this run); if the host says it failed or does not know the id (404),
   create a new one and record the replaced id in `extra`;
2. otherwise prepare the control image (≤ 4 MP, ≤ 50 MB, a JPEG data URI, or the source URL when
   `image_transport: source_url` and the source is http(s)), create the prediction, and journal its
   id BEFORE the first poll;
3. poll until success, failure, or `prediction_deadline_s`; download the output at once and journal
   its bytes; decode it (`depth` mode: float32 nearness at the source size; `render` mode: the bytes).

Fresh predictions are polled on the run's adaptive `PollScheduler`; resumed ones at once, then
every `poll_interval_s`.
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from typing import Any

from flux_depth_assets.config.models import EachlabsProviderConfig
from flux_depth_assets.providers.base import DepthPrediction, ProviderInput
from flux_depth_assets.providers.eachlabs.images import (
    decode_depth,
    prepare_control_image,
    sniff_image_format,
)
from flux_depth_assets.providers.eachlabs.journal import JournalEntry
from flux_depth_assets.providers.eachlabs.protocol import EachlabsError, PredictionState
from flux_depth_assets.providers.eachlabs.tracking import PROVIDER_LOGGER, RunState, Track
from flux_depth_assets.providers.result_check import ResultProblem, check_depth_result
from flux_depth_assets.sources.url_manifest import hides_secrets

log = logging.getLogger(PROVIDER_LOGGER)

FATAL_CREATE_STATUSES = frozenset({401, 402, 403})  # bad key / no credit: every create would fail


class DeadlineExceeded(Exception):
    """The prediction was still running at its deadline; `last_status` is the host's last word."""

    def __init__(self, last_status: str):
        super().__init__(last_status)
        self.last_status = last_status


async def predict_one(track: Track, entry: JournalEntry | None) -> DepthPrediction:
    """The prediction for one image; never raises (an unexpected error becomes a failed one)."""
    try:
        replaced: list[str] = []
        if entry is not None and entry.state == "sending":
            # an earlier run sent a create and died before the answer: maybe charged, unknowable
            track.uncertain(entry.cost_usd or track.run.config.price_usd, entry.run_id)
            replaced, entry = list(entry.replaced_prediction_ids), None
        if entry is not None:
            pred = await _resume(track, entry)
            if pred is not None:
                return pred
            replaced = [*entry.replaced_prediction_ids, *filter(None, [entry.prediction_id])]
        return await _create(track, replaced)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - one image never sinks the batch
        if log.isEnabledFor(logging.DEBUG):  # the traceback, redacted like everything else
            trace = "".join(traceback.format_exception(exc))
            log.debug(
                "eachlabs %s: unexpected error\n%s",
                track.item.image_id,
                track.run.client.redact(trace),
            )
        note = (
            "; its prediction stays journaled" if track.prediction_id and not track.terminal else ""
        )
        return track.failed(f"{type(exc).__name__}: {exc}{note}")
    finally:
        await track.run.result_checked(counted=track.admitted)
        track.admitted = False
        if track.slot is not None and track.run.gate is not None:
            await asyncio.to_thread(track.run.gate.release, track.slot)
            track.slot = None


async def _resume(track: Track, entry: JournalEntry) -> DepthPrediction | None:
    """Finish a journaled prediction; None when it must be created again (failed or unknown)."""
    run = track.run
    track.resumed = True
    track.prediction_id = entry.prediction_id
    track.journaled(entry, run.config.price_usd)
    run.resumed += 1
    if entry.state == "downloaded" and entry.output_b64:
        track.host_status = "success"
        return await _deliver(
            track, entry, entry.output(), entry.output_content_type or "", already_journaled=True
        )
    try:
        state = await _wait(track, fresh=False)
    except EachlabsError as exc:
        if exc.status != 404:
            track.http_status = exc.status
            return track.failed(
                f"polling journaled prediction {entry.prediction_id} failed: "
                f"{exc.message}; it stays journaled and the next run resumes it"
            )
        reason = f"journaled prediction {entry.prediction_id} is unknown to the host (HTTP 404)"
    except DeadlineExceeded as exc:
        return track.failed(
            f"journaled prediction {entry.prediction_id} still {exc.last_status or 'running'} "
            f"after {run.config.prediction_deadline_s:g} s (prediction_deadline_s); it stays "
            "journaled and the next run resumes it"
        )
    else:
        if state.state == "succeeded":
            return await _download_and_deliver(track, entry, state)
        reason = (
            f"journaled prediction {entry.prediction_id} ended {state.status}: "
            f"{state.error or 'no error given'}"
        )
    track.extra["replaced_prediction_ids"] = [*entry.replaced_prediction_ids, entry.prediction_id]
    track.extra["replaced_because"] = run.client.redact(reason)
    run.emit(f"eachlabs: {track.item.image_id}: {reason}; creating a new prediction")
    track.resumed = False
    track.prediction_id = None
    track.http_status = None
    track.host_status = None
    run.resumed -= 1
    return None


async def _create(track: Track, replaced: list[str]) -> DepthPrediction:
    run, cfg, item = track.run, track.run.config, track.item
    refused = await run.admit_create()
    if refused:
        if run.fatal:  # the host refuses every create: another host may take this image
            track.extra["host_refused"] = run.fatal
        return track.failed(f"not sent: {refused}")
    track.admitted = run.mode == "depth"
    refused = await _account_admit(track)
    if refused:
        track.extra["host_refused"] = refused
        return track.failed(f"not sent: {refused}")
    if (
        cfg.image_transport == "source_url"
        and item.source_uri.startswith(("http://", "https://"))
        and not hides_secrets(item.source_uri)
    ):  # stored without its secrets: send bytes
        control, size = item.source_uri, None
        track.extra["transport"] = "source_url"
    else:
        control, size, sent = await asyncio.to_thread(_prepare, item)
        track.extra["transport"] = "data_uri"
        track.extra["sent_size"] = list(sent)
    payload = {
        "model": cfg.model,
        "version": cfg.version,
        "input": _inputs(cfg, control),
        "webhook_url": "",
    }
    entry = JournalEntry(
        cache_key=item.cache_key,
        image_id=item.image_id,
        prediction_id=None,
        host=run.host,
        model=cfg.model,
        version=cfg.version,
        state="sending",
        run_id=run.run_id,
        cost_usd=cfg.price_usd,
        replaced_prediction_ids=replaced,
    )
    # durable BEFORE the request leaves: a crash from here on is known to the next run
    try:
        await asyncio.to_thread(run.journal.write, entry)
    except Exception as exc:  # noqa: BLE001 - whatever the store raises, nothing is sent
        run.journal_failed(exc, "before a create")
        return track.failed(f"not sent: {run.stop}")
    track.journal_live = True
    try:
        pid, attempts, status = await run.client.create(
            payload, deadline=track.deadline, on_retry=track.on_retry
        )
    except EachlabsError as exc:
        return await _create_failed(track, exc)
    del payload, control
    track.create_attempts, track.http_status = attempts, status
    run.failing_since = None
    track.prediction_id, track.created = pid, True
    track.cost_usd = cfg.price_usd
    run.cost_usd += cfg.price_usd
    run.created += 1
    entry.prediction_id, entry.state = pid, "created"
    # durable BEFORE the first poll; on a thread, as a file create can stall for milliseconds
    try:
        await asyncio.to_thread(run.journal.write, entry)
    except Exception as exc:  # noqa: BLE001 - paid already: finish it in memory, create no more
        run.journal_failed(exc, f"after prediction {pid} was created")
    try:
        state = await _wait(track, fresh=True)
    except DeadlineExceeded as exc:
        return track.failed(
            f"prediction {pid} still {exc.last_status or 'running'} after "
            f"{cfg.prediction_deadline_s:g} s (prediction_deadline_s); it stays journaled and "
            "the next run resumes polling it instead of paying again"
        )
    except EachlabsError as exc:
        track.http_status = exc.status
        return track.failed(
            f"polling prediction {pid} failed: {exc.message}; it stays "
            "journaled and the next run resumes it"
        )
    if state.state == "failed":
        track.terminal = True
        return track.failed(
            f"host reported prediction {pid} {state.status}: {state.error or 'no error given'}"
        )
    return await _download_and_deliver(track, entry, state, size)


async def _create_failed(track: Track, exc: EachlabsError) -> DepthPrediction:
    """A create that failed: note what the host refused (for the account, the run and failover)."""
    run, cfg, item = track.run, track.run.config, track.item
    track.create_attempts = exc.attempts
    track.http_status = exc.status
    if run.gate is not None and exc.kind in ("auth", "out_of_credit"):
        # every run on this account stops at its next create, not after every image fails
        await asyncio.to_thread(run.gate.stop, f"HTTP {exc.status}: {exc.message}")
    if exc.kind == "model_unavailable" and run.fatal is None:
        run.fatal = f"HTTP {exc.status} (the host does not serve the model)"
        run.emit(
            f"eachlabs: create answered {exc.message}; no further "
            "predictions will be created on this host in this run"
        )
    if exc.kind in ("model_unavailable", "auth", "out_of_credit") and not exc.uncertain:
        track.extra["host_refused"] = f"HTTP {exc.status}"  # nothing was created
    if exc.status in FATAL_CREATE_STATUSES and run.fatal is None:
        run.fatal = f"HTTP {exc.status}"
        run.emit(
            f"eachlabs: create answered {exc.message}; no further "
            "predictions will be created in this run"
        )
    if exc.uncertain:  # reported by this run, so the entry must not be reported again
        track.uncertain(cfg.price_usd, run.run_id)
    else:
        track.extra["not_created"] = True  # the host never had it: another host may take it
    if (
        not exc.uncertain and exc.retryable and run.unavailable_after_s is not None
    ):  # unreachable, nothing created
        now = time.monotonic()
        run.failing_since = run.failing_since or now
        if now - run.failing_since >= run.unavailable_after_s and run.fatal is None:
            run.fatal = f"unavailable for {run.unavailable_after_s:g} s (unavailable_after_s)"
            run.emit(
                f"eachlabs: {run.host} {run.fatal}; no further predictions will be "
                "created on this host in this run"
            )
        if run.fatal:
            track.extra["host_refused"] = run.fatal
    await asyncio.to_thread(_forget, run, item.cache_key)
    track.journal_live = False
    return track.failed(f"create failed: {exc.message}")


async def _account_admit(track: Track) -> str | None:
    """Wait for the host account's in-flight slot and window of creates (shared by every run on
    the account); the reason when the account was stopped by a 402 or a rejected key."""
    run = track.run
    if run.gate is None:
        return None
    reason = await asyncio.to_thread(run.gate.stopped_since, run.started_at)
    if reason is not None:
        run.fatal = run.fatal or "the account was stopped by another run"
        return f"the {run.host} account was stopped by another run ({reason})"
    track.slot = await run.gate.acquire()
    await run.gate.claim()
    return None


def _forget(run: RunState, cache_key: str) -> None:
    """Remove this run's `sending` entry of a create that failed (best effort)."""
    try:
        run.journal.clear(cache_key)
    except Exception:  # noqa: BLE001 - at worst the next run reports the attempt once more
        log.debug("eachlabs: could not clear the journal entry of a failed create")


def _prepare(item: ProviderInput) -> tuple[str, tuple[int, int], tuple[int, int]]:
    """(data URI, source size, sent size)."""
    image = item.load_image()
    uri, sent = prepare_control_image(image)
    return uri, image.size, sent


def _inputs(cfg: EachlabsProviderConfig, control: str) -> dict[str, Any]:
    p = cfg.params
    inputs: dict[str, Any] = {
        "control_image": control,
        "prompt": p.prompt,
        "steps": p.steps,
        "guidance": p.guidance,
        "safety_tolerance": p.safety_tolerance,
        "output_format": p.output_format,
        "prompt_upsampling": p.prompt_upsampling,
    }
    if p.seed is not None:
        inputs["seed"] = p.seed
    return inputs


async def _wait(track: Track, fresh: bool) -> PredictionState:
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
            await asyncio.sleep(
                max(
                    0.0,
                    min(last_poll + run.config.poll_interval_s, track.deadline) - time.monotonic(),
                )
            )
        last_poll = time.monotonic()
        state, _attempts, status = await run.client.get(
            pid, deadline=track.deadline, on_retry=track.on_retry
        )
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


async def _download_and_deliver(
    track: Track, entry: JournalEntry, state: PredictionState, size: tuple[int, int] | None = None
) -> DepthPrediction:
    run = track.run
    if not state.outputs:
        track.terminal = True
        return track.failed(
            f"host reported prediction {track.prediction_id} {state.status} without an output URL"
        )
    try:
        data, content_type, _attempts, status = await run.client.download(
            state.outputs[0],
            deadline=track.deadline + run.config.timeout_s,
            on_retry=track.on_retry,
        )
    except EachlabsError as exc:
        track.http_status = exc.status
        return track.failed(
            f"downloading the output of prediction {track.prediction_id} "
            f"failed: {exc.message}; it stays journaled and the next run "
            "fetches it again"
        )
    track.http_status = status
    return await _deliver(track, entry, data, content_type, size=size)


async def _deliver(
    track: Track,
    entry: JournalEntry,
    data: bytes | None,
    content_type: str,
    *,
    size: tuple[int, int] | None = None,
    already_journaled: bool = False,
) -> DepthPrediction:
    """Journal the output, then turn it into the prediction for this mode."""
    mode, item = track.run.mode, track.item
    fmt = sniff_image_format(data or b"")

    def work() -> DepthPrediction:
        if not already_journaled:
            try:
                track.run.journal.record_output(entry, data or b"", content_type)
            except Exception as exc:  # noqa: BLE001 - deliver from memory, create no more
                track.run.journal_failed(exc, f"output of prediction {track.prediction_id}")
        track.terminal = True
        if mode == "render":
            if fmt is None:
                return track.failed(
                    f"the output of prediction {track.prediction_id} is not a "
                    f"PNG/JPEG/WebP image ({len(data or b'')} bytes, "
                    f"{content_type or 'no content type'})"
                )
            return track.prediction(render_bytes=data, render_format=fmt, depth=None)
        target = size
        if target is None:
            try:
                with item.load_image() as im:
                    target = im.size
            except Exception:  # noqa: BLE001 - keep the host's size; the caller resizes
                target = None
        problem = (
            check_depth_result(data or b"", target)
            if fmt is not None
            else ResultProblem(
                f"the host returned {len(data or b'')} bytes ({content_type or 'no content type'}) "
                "that are not a PNG/JPEG/WebP image",
                "check the host's output format",
            )
        )
        track.run.breaker.record(problem)
        if problem is not None:
            track.extra["result_problem"] = str(problem)
            return track.failed(f"prediction {track.prediction_id}: {problem}")
        try:
            depth = decode_depth(data or b"", target)
        except Exception as exc:  # noqa: BLE001
            return track.failed(
                f"the output of prediction {track.prediction_id} could not be "
                f"decoded: {type(exc).__name__}: {exc}"
            )
        return track.prediction(depth=depth)

    return await asyncio.to_thread(work)  # file writes and decoding stay off the event loop

"""Reading the host's answers: pure, tolerant functions, so every odd shape is testable offline.

A poll answer is normalised into `PredictionState` (unknown statuses count as running, a `data`
envelope is unwrapped, the output may be a URL, a list or an object holding one). Error texts are
cleaned to one short line before anything shows them.
"""

from __future__ import annotations

import email.utils
import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import httpx

SUCCESS_STATUSES = frozenset({"success", "succeeded", "completed", "complete", "ready", "done"})
FAILED_STATUSES = frozenset(
    {
        "failed",
        "failure",
        "error",
        "errored",
        "canceled",
        "cancelled",
        "aborted",
        "timeout",
        "timed_out",
        "content moderated",
        "request moderated",
    }
)
MAX_MESSAGE_CHARS = 300


class EachlabsError(Exception):
    """A request failed. `status` is the HTTP status (None for a connection error or timeout).

    `uncertain` is true when the request may have reached the host before failing (a read
    timeout, a dropped connection, a 5xx): for a create, the host may have created (and charged)
    a prediction whose id we never received.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
        attempts: int = 1,
        uncertain: bool = False,
        kind: str | None = None,
    ):
        super().__init__(message)
        self.kind = kind  # an error answer's `providers.hosts.base.ErrorKind` value
        self.message = message
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after
        self.attempts = attempts
        self.uncertain = uncertain

    def add_note_to_message(self, note: str) -> None:
        self.message = f"{self.message} ({note})"
        self.args = (self.message,)


@dataclass
class PredictionState:
    """One poll answer, normalised. `state` is running | succeeded | failed."""

    status: str
    state: Literal["running", "succeeded", "failed"]
    outputs: list[str] = field(default_factory=list)
    error: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    cost_usd: float | None = None


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
        return max(0.0, seconds) if math.isfinite(seconds) else None
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now_ts = now if now is not None else datetime.now(UTC).timestamp()
    return max(0.0, when.timestamp() - now_ts)


def clean_message(text: str) -> str:
    """One line of at most `MAX_MESSAGE_CHARS` characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= MAX_MESSAGE_CHARS else text[:MAX_MESSAGE_CHARS] + "…"


def message_from(value: Any) -> str | None:
    """The human message in a JSON value (a string, or `message`/`error`/`detail`... inside)."""
    if isinstance(value, str) and value.strip():
        return value
    if isinstance(value, dict):
        for key in ("message", "error", "detail", "msg", "description"):
            found = message_from(value.get(key))
            if found:
                return found
        return json.dumps(value, default=str)[:MAX_MESSAGE_CHARS]
    if isinstance(value, list) and value:
        parts = [m for m in (message_from(v) for v in value[:3]) if m]
        return "; ".join(parts) or None
    return None


def host_message(response: httpx.Response) -> str:
    """The host's explanation of an error answer (JSON message/error/detail, else the text)."""
    try:
        data = response.json()
    except (ValueError, UnicodeDecodeError):
        data = None
    found = message_from(data) if data is not None else None
    if not found:
        found = response.text.strip() or response.reason_phrase or "no message"
    return clean_message(found)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number >= 0 else None


def _output_urls(value: Any) -> list[str]:
    """A URL, a list of URLs, or objects holding one (`url`, `uri`, `image`, `sample`)."""
    if isinstance(value, str):
        return [value] if value.startswith(("http://", "https://", "data:")) else []
    if isinstance(value, (list, tuple)):
        return [u for v in value for u in _output_urls(v)]
    if isinstance(value, dict):
        for key in ("url", "uri", "image", "sample", "output", "images"):
            if key in value:
                found = _output_urls(value[key])
                if found:
                    return found
    return []


def parse_prediction(data: Any) -> PredictionState:
    """Normalise a poll answer; tolerant of missing fields and of a `data` envelope."""
    if not isinstance(data, dict):
        return PredictionState(status="", state="running")
    if "status" not in data and isinstance(data.get("data"), dict):
        data = data["data"]
    status = str(data.get("status") or "").strip().lower()
    if status in SUCCESS_STATUSES:
        state: Literal["running", "succeeded", "failed"] = "succeeded"
    elif status in FAILED_STATUSES:
        state = "failed"
    else:
        state = "running"  # processing, starting, queued, pending, in_progress, unknown spellings
    outputs = _output_urls(data.get("output"))
    if not outputs and isinstance(data.get("result"), (dict, list, str)):
        outputs = _output_urls(data["result"])
    metrics = data.get("metrics") if isinstance(data.get("metrics"), dict) else {}
    cost = None
    for holder, key in (
        (data, "cost_usd"),
        (data, "cost"),
        (data, "price"),
        (metrics, "cost_usd"),
        (metrics, "cost"),
    ):
        cost = _number(holder.get(key))
        if cost is not None:
            break
    error = message_from(data.get("error"))
    if state == "failed" and not error:
        error = message_from(data.get("message")) or f"prediction {status}"
    return PredictionState(
        status=status,
        state=state,
        outputs=outputs,
        error=clean_message(error) if error else None,
        metrics=dict(metrics),
        cost_usd=cost,
    )


def prediction_id_from(data: Any) -> str | None:
    """The prediction id of a create answer, under any of the spellings hosts use."""
    if not isinstance(data, dict):
        return None
    for key in ("predictionID", "prediction_id", "predictionId", "id"):
        value = data.get(key)
        if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value).strip():
            return str(value).strip()
    if isinstance(data.get("data"), dict):
        return prediction_id_from(data["data"])
    return None

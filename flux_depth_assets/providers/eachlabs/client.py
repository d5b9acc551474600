"""The Eachlabs wire protocol over one `httpx.AsyncClient`: create, poll, download. Thin on purpose.

Protocol (design/API_NOTES.md):
- `POST {base}/v1/prediction/` with `X-API-Key` and `{"model", "version", "input", "webhook_url"}`
  → `{"status": "success", "message": ..., "predictionID": "<id>"}`;
- `GET {base}/v1/prediction/{id}` → `status` (starting/processing → success | failed/error/canceled),
  `output` (a URL or a list of URLs), optional `error`, `logs`, `metrics`; unknown fields ignored;
- the output URL is downloaded at once (it may expire).

Retries (`RetryPolicy`): 429, 5xx, connection errors and timeouts, with exponential backoff and
jitter, honouring `Retry-After`. Any other 4xx raises at once with the HTTP status and the host's
message.

Secrets: the key is sent only to the API's own origin (never to an output host, never across a
redirect to another origin), and every message this module builds goes through `Redactor`, so
the key cannot leak through a host that echoes it. `repr()` never shows it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import email.utils
import json
import math
import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Literal
from urllib.parse import quote, urlsplit

import httpx

SUCCESS_STATUSES = frozenset({"success", "succeeded", "completed", "complete", "ready", "done"})
FAILED_STATUSES = frozenset({"failed", "failure", "error", "errored", "canceled", "cancelled",
                             "aborted", "timeout", "timed_out", "content moderated",
                             "request moderated"})
REDIRECTS = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 5
MAX_OUTPUT_BYTES = 200 * 1024 * 1024
MAX_MESSAGE_CHARS = 300


class Secret:
    """A string that never shows itself in `repr`/`str` (so tracebacks and `vars()` stay clean)."""

    __slots__ = ("_value",)

    def __init__(self, value: str | None):
        self._value = value or ""

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret(<redacted>)" if self._value else "Secret(<unset>)"

    __str__ = __repr__


class Redactor:
    """Replaces every occurrence of the secrets in a text with `***`."""

    def __init__(self, *secrets: Secret | str | None):
        values = [s.reveal() if isinstance(s, Secret) else s for s in secrets]
        self._values = sorted({v for v in values if v}, key=len, reverse=True)

    def __call__(self, text: object) -> str:
        out = str(text)
        for value in self._values:
            out = out.replace(value, "***")
        return out


class EachlabsError(Exception):
    """A request failed. `status` is the HTTP status (None for a connection error or timeout).

    `uncertain` is true when the request may have reached the host before failing (a read
    timeout, a dropped connection, a 5xx): for a create, the host may have created (and charged)
    a prediction whose id we never received.
    """

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = False,
                 retry_after: float | None = None, attempts: int = 1, uncertain: bool = False):
        super().__init__(message)
        self.message = message
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after
        self.attempts = attempts
        self.uncertain = uncertain

    def add_note_to_message(self, note: str) -> None:
        self.message = f"{self.message} ({note})"
        self.args = (self.message,)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter; `Retry-After` wins when the host sends one."""

    max_retries: int = 5
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    retry_after_max_s: float = 300.0

    def delay(self, retry_number: int, retry_after: float | None, rng: random.Random) -> float:
        if retry_after is not None:
            wait = min(max(retry_after, 0.0), self.retry_after_max_s)
            # never earlier than asked; a little later, so clients told the same second spread out
            return wait + rng.uniform(0.0, min(1.0, 0.1 * wait + 0.05))
        cap = min(self.backoff_max_s, self.backoff_base_s * 2 ** (retry_number - 1))
        return cap / 2 + rng.uniform(0.0, cap / 2)


@dataclass
class PredictionState:
    """One poll answer, normalised. `state` is running | succeeded | failed."""

    status: str
    state: Literal["running", "succeeded", "failed"]
    outputs: list[str] = field(default_factory=list)
    error: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    cost_usd: float | None = None


RetryHook = Callable[[EachlabsError, float], None]


class RateLimiter:
    """Spaces requests at most `rate` per second across every task of a run."""

    def __init__(self, rate: float):
        self.interval = 1.0 / rate
        self._next = 0.0

    async def wait(self) -> None:
        now = time.monotonic()
        slot = max(now, self._next)
        self._next = slot + self.interval
        if slot > now:
            await asyncio.sleep(slot - now)


class _CountedStream(httpx.AsyncByteStream):
    """A response body that tells its pool shard when it is closed."""

    def __init__(self, stream: httpx.AsyncByteStream, release: Callable[[], None]):
        self._stream, self._release = stream, release
        self._released = False

    async def __aiter__(self):
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            if not self._released:
                self._released = True
                self._release()


class ShardedPoolTransport(httpx.AsyncBaseTransport):
    """Keep-alive connection pooling spread over several small httpcore pools.

    httpcore's pool does bookkeeping proportional to the square of its connection count on every
    request (measured: 64 connections cost ~20 ms of CPU per prediction). Pools of at most
    `per_shard` connections keep that flat; each request goes to the least busy shard, so the
    client still holds up to `max_connections` keep-alive connections in total.
    """

    def __init__(self, max_connections: int, per_shard: int = 4, keepalive_expiry: float = 30.0):
        shards = max(1, math.ceil(max_connections / per_shard))
        size = math.ceil(max_connections / shards)
        limits = httpx.Limits(max_connections=size, max_keepalive_connections=size,
                              keepalive_expiry=keepalive_expiry)
        ssl_context = httpx.create_ssl_context()  # one certificate store for every shard
        self._shards = [httpx.AsyncHTTPTransport(limits=limits, verify=ssl_context)
                        for _ in range(shards)]
        self._busy = [0] * shards

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        index = min(range(len(self._shards)), key=self._busy.__getitem__)
        self._busy[index] += 1

        def release() -> None:
            self._busy[index] -= 1

        try:
            response = await self._shards[index].handle_async_request(request)
        except BaseException:
            release()
            raise
        response.stream = _CountedStream(response.stream, release)  # type: ignore[arg-type]
        return response

    async def aclose(self) -> None:
        for shard in self._shards:
            await shard.aclose()


def origin(url: str | httpx.URL) -> tuple[str, str, int | None]:
    u = httpx.URL(str(url))
    port = u.port or {"http": 80, "https": 443}.get(u.scheme)
    return u.scheme, u.host, port


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
        when = when.replace(tzinfo=timezone.utc)
    now_ts = now if now is not None else datetime.now(timezone.utc).timestamp()
    return max(0.0, when.timestamp() - now_ts)


def _clean(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= MAX_MESSAGE_CHARS else text[:MAX_MESSAGE_CHARS] + "…"


def _message_from(value: Any) -> str | None:
    if isinstance(value, str) and value.strip():
        return value
    if isinstance(value, dict):
        for key in ("message", "error", "detail", "msg", "description"):
            found = _message_from(value.get(key))
            if found:
                return found
        return json.dumps(value, default=str)[:MAX_MESSAGE_CHARS]
    if isinstance(value, list) and value:
        parts = [m for m in (_message_from(v) for v in value[:3]) if m]
        return "; ".join(parts) or None
    return None


def host_message(response: httpx.Response) -> str:
    """The host's explanation of an error answer (JSON message/error/detail, else the text)."""
    try:
        data = response.json()
    except (ValueError, UnicodeDecodeError):
        data = None
    found = _message_from(data) if data is not None else None
    if not found:
        found = response.text.strip() or response.reason_phrase or "no message"
    return _clean(found)


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
    for holder, key in ((data, "cost_usd"), (data, "cost"), (data, "price"),
                        (metrics, "cost_usd"), (metrics, "cost")):
        cost = _number(holder.get(key))
        if cost is not None:
            break
    error = _message_from(data.get("error"))
    if state == "failed" and not error:
        error = _message_from(data.get("message")) or f"prediction {status}"
    return PredictionState(status=status, state=state, outputs=outputs,
                           error=_clean(error) if error else None, metrics=dict(metrics),
                           cost_usd=cost)


def prediction_id_from(data: Any) -> str | None:
    if not isinstance(data, dict):
        return None
    for key in ("predictionID", "prediction_id", "predictionId", "id"):
        value = data.get(key)
        if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value).strip():
            return str(value).strip()
    if isinstance(data.get("data"), dict):
        return prediction_id_from(data["data"])
    return None


class EachlabsClient:
    """Async protocol client: one per run, one connection pool, HTTP/1.1 keep-alive."""

    def __init__(self, base_url: str, api_key: Secret | str | None, *, timeout_s: float = 30.0,
                 max_connections: int = 8, retry: RetryPolicy | None = None,
                 requests_per_second: float | None = None,
                 transport: httpx.AsyncBaseTransport | None = None,
                 rng: random.Random | None = None):
        self.base_url = base_url.rstrip("/")
        self._key = api_key if isinstance(api_key, Secret) else Secret(api_key)
        self.redact = Redactor(self._key)
        self.retry = retry or RetryPolicy()
        self._origin = origin(self.base_url)
        self._limiter = RateLimiter(requests_per_second) if requests_per_second else None
        self._rng = rng or random.Random()
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s),
            follow_redirects=False,  # redirects are followed by hand so the key never leaves its origin
            transport=transport or ShardedPoolTransport(max_connections),
            headers={"Accept": "application/json", "User-Agent": "flux-depth-assets/eachlabs"},
        )

    def __repr__(self) -> str:
        return f"EachlabsClient(base_url={self.base_url!r}, api_key=<redacted>)"

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> "EachlabsClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ protocol

    async def create(self, payload: dict[str, Any], *, deadline: float | None = None,
                     on_retry: RetryHook | None = None) -> tuple[str, int, int]:
        """(prediction id, attempts, HTTP status). Raises `EachlabsError`."""
        response, attempts = await self._send("POST", f"{self.base_url}/v1/prediction/",
                                              payload=payload, api=True, deadline=deadline,
                                              on_retry=on_retry)
        data = self._json(response, attempts)
        pid = prediction_id_from(data)
        if pid is None:
            what = _message_from(data) if isinstance(data, dict) else None
            raise EachlabsError(self.redact(
                f"create answered HTTP {response.status_code} without a prediction id"
                + (f": {_clean(what)}" if what else "")),
                status=response.status_code, attempts=attempts)
        return pid, attempts, response.status_code

    async def get(self, prediction_id: str, *, deadline: float | None = None,
                  on_retry: RetryHook | None = None) -> tuple[PredictionState, int, int]:
        """(normalised state, attempts, HTTP status). Raises `EachlabsError` (404: unknown id)."""
        url = f"{self.base_url}/v1/prediction/{quote(prediction_id, safe='')}"
        response, attempts = await self._send("GET", url, api=True, deadline=deadline,
                                              on_retry=on_retry)
        return parse_prediction(self._json(response, attempts)), attempts, response.status_code

    async def download(self, url: str, *, deadline: float | None = None,
                       on_retry: RetryHook | None = None) -> tuple[bytes, str, int, int]:
        """(bytes, content type, attempts, HTTP status) of an output URL or `data:` URI."""
        if url.startswith("data:"):
            head, _, payload = url.partition(",")
            try:
                data = base64.b64decode(payload, validate=True) if ";base64" in head \
                    else payload.encode()
            except (binascii.Error, ValueError):
                raise EachlabsError("output data URI is not valid base64") from None
            return data, head[5:].split(";")[0], 0, 200
        response, attempts = await self._send("GET", url, api=False, deadline=deadline,
                                              on_retry=on_retry)
        content = response.content
        if len(content) > MAX_OUTPUT_BYTES:
            raise EachlabsError(f"output is larger than {MAX_OUTPUT_BYTES} bytes",
                                status=response.status_code, attempts=attempts)
        return content, response.headers.get("content-type", ""), attempts, response.status_code

    # ------------------------------------------------------------------ transport

    def _json(self, response: httpx.Response, attempts: int) -> Any:
        try:
            return response.json()
        except (ValueError, UnicodeDecodeError):
            raise EachlabsError(self.redact(
                f"HTTP {response.status_code} answer is not JSON: {_clean(response.text[:120])}"),
                status=response.status_code, attempts=attempts) from None

    async def _send(self, method: str, url: str, *, payload: Any = None, api: bool,
                    deadline: float | None, on_retry: RetryHook | None
                    ) -> tuple[httpx.Response, int]:
        attempt = 0
        while True:
            attempt += 1
            try:
                if api and self._limiter is not None:
                    await self._limiter.wait()
                response = await self._follow(method, url, payload)
            except httpx.TransportError as exc:
                connect = isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))
                error = EachlabsError(
                    self.redact(f"{type(exc).__name__}: {_clean(str(exc)) or 'no detail'}"),
                    retryable=not isinstance(exc, httpx.UnsupportedProtocol),
                    uncertain=not connect)
            except EachlabsError:
                raise
            else:
                code = response.status_code
                if code < 300:
                    return response, attempt
                retryable = code == 429 or code >= 500
                error = EachlabsError(
                    self.redact(f"HTTP {code}: {host_message(response)}"), status=code,
                    retryable=retryable,
                    retry_after=parse_retry_after(response.headers.get("retry-after"))
                    if retryable else None,
                    uncertain=code >= 500)
            error.attempts = attempt
            if not error.retryable:
                raise error
            if attempt > self.retry.max_retries:
                error.add_note_to_message(f"gave up after {attempt} attempts")
                raise error
            wait = self.retry.delay(attempt, error.retry_after, self._rng)
            if deadline is not None and time.monotonic() + wait > deadline:
                error.add_note_to_message(f"no retry: waiting {wait:.1f} s would pass the "
                                          "prediction deadline")
                raise error
            if on_retry is not None:
                on_retry(error, wait)
            await asyncio.sleep(wait)

    async def _follow(self, method: str, url: str, payload: Any) -> httpx.Response:
        """One request, following redirects by hand: the key goes only to the API's origin."""
        current = httpx.URL(url)
        for _ in range(MAX_REDIRECTS + 1):
            headers = {"X-API-Key": self._key.reveal()} \
                if origin(current) == self._origin and self._key else {}
            response = await self._http.request(method, current, json=payload, headers=headers)
            if response.status_code not in REDIRECTS or "location" not in response.headers:
                return response
            await response.aclose()
            if method == "POST" and response.status_code not in (307, 308):
                raise EachlabsError(f"create was redirected with HTTP {response.status_code}; "
                                    "refusing to turn it into a GET", status=response.status_code)
            current = current.join(response.headers["location"])
            if current.scheme not in ("http", "https"):
                raise EachlabsError(f"redirect to a non-http(s) URL ({current.scheme})",
                                    status=response.status_code)
        raise EachlabsError(f"more than {MAX_REDIRECTS} redirects", status=response.status_code)


def url_host(url: str) -> str:
    return urlsplit(url).netloc

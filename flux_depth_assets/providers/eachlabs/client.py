"""The Eachlabs wire protocol over one `httpx.AsyncClient`: create, poll, download. Thin on purpose.

Protocol (design/API_NOTES.md):
- `POST {base}/v1/prediction/` with `X-API-Key` and `{"model", "version", "input", "webhook_url"}`
  → `{"status": "success", "message": ..., "predictionID": "<id>"}`;
- `GET {base}/v1/prediction/{id}` → `status` (starting/processing → success | failed/error/canceled),
  `output` (a URL or a list of URLs), optional `error`, `logs`, `metrics`; unknown fields ignored;
- the output URL is downloaded at once (it may expire).

Answers are read by the pure functions in `protocol`; retry timing and the rate limit live in
`pacing`. This module only sends.

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
import random
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal, Self
from urllib.parse import urlsplit

import httpx

from flux_depth_assets.providers.eachlabs.pacing import RateLimiter, RetryPolicy
from flux_depth_assets.providers.eachlabs.protocol import (
    EachlabsError,
    PredictionState,
    clean_message,
    message_from,
)
from flux_depth_assets.redaction import mask

if TYPE_CHECKING:
    from flux_depth_assets.providers.hosts.base import HostAdapter

REDIRECTS = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 5
MAX_OUTPUT_BYTES = 200 * 1024 * 1024


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
    """Replaces every rendering of the secrets in a text (escaped, repr, percent-encoded, in
    pieces, an identifying prefix) with `***`."""

    def __init__(self, *secrets: Secret | str | None):
        values = [s.reveal() if isinstance(s, Secret) else s for s in secrets]
        self._values = [v for v in values if v]

    def __call__(self, text: object) -> str:
        return mask(str(text), self._values)


RetryHook = Callable[[EachlabsError, float], None]


def origin(url: str | httpx.URL) -> tuple[str, str, int | None]:
    u = httpx.URL(str(url))
    port = u.port or {"http": 80, "https": 443}.get(u.scheme)
    return u.scheme, u.host, port


class EachlabsClient:
    """Async protocol client: one per run, one connection pool, HTTP/1.1 keep-alive.

    `adapter` (default: Eachlabs) is the host's wire dialect (`providers.hosts`): it shapes the
    create and poll requests, names the key header and where the key may go, reads the answers
    and classifies errors; this class only sends, retries and follows redirects.

    `cancel_at_deadline` (off by default) also hands the prediction deadline to hosts that take
    one (Replicate's `Cancel-After`). Off, a prediction still running at the deadline stays
    journaled and the next run collects it for free; on, the host cancels it (Replicate still
    bills a canceled prediction, not an aborted one) and the next run pays for a new one.
    """

    def __init__(
        self,
        base_url: str,
        api_key: Secret | str | None,
        *,
        timeout_s: float = 30.0,
        max_connections: int = 8,
        retry: RetryPolicy | None = None,
        requests_per_second: float | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        rng: random.Random | None = None,
        adapter: HostAdapter | None = None,
        cancel_at_deadline: bool = False,
    ):
        if adapter is None:
            from flux_depth_assets.providers.hosts.eachlabs import EachlabsAdapter

            adapter = EachlabsAdapter()
        self.adapter = adapter
        self.cancel_at_deadline = cancel_at_deadline
        self._poll_urls: dict[str, str] = {}  # prediction id -> the host's poll URL, if it gave one
        self.base_url = base_url.rstrip("/")
        self._key = api_key if isinstance(api_key, Secret) else Secret(api_key)
        self.redact = Redactor(self._key)
        self.retry = retry or RetryPolicy()
        self._limiter = RateLimiter(requests_per_second) if requests_per_second else None
        self._rng = rng or random.Random()
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s),
            follow_redirects=False,  # redirects are followed by hand so the key never leaves its origin
            transport=transport,
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            headers={
                "Accept": "application/json",
                "User-Agent": f"flux-depth-assets/{adapter.name}",
            },
        )

    def __repr__(self) -> str:
        return f"EachlabsClient(base_url={self.base_url!r}, api_key=<redacted>)"

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ protocol

    async def create(
        self,
        payload: dict[str, Any],
        *,
        deadline: float | None = None,
        on_retry: RetryHook | None = None,
    ) -> tuple[str, int, int]:
        """(prediction id, attempts, HTTP status). Raises `EachlabsError`.

        `payload` is `{"model", "version", "input"}`; the adapter shapes its host's request from
        it (with `cancel_at_deadline`, also the deadline, where the host takes one)."""
        left = (
            max(0.0, deadline - time.monotonic())
            if deadline is not None and self.cancel_at_deadline
            else None
        )
        request = self.adapter.create_request(
            self.base_url,
            payload.get("model", ""),
            payload.get("version"),
            payload.get("input", {}),
            left,
        )
        response, attempts = await self._send(
            request.method,
            request.url,
            payload=request.json,
            api=True,
            deadline=deadline,
            on_retry=on_retry,
            phase="create",
            headers=request.headers,
        )
        data = self._json(response, attempts)
        created = self.adapter.parse_create(data)
        pid = created.prediction_id if created is not None else None
        if created is not None and created.poll_url:
            self._poll_urls[created.prediction_id] = created.poll_url
        if pid is None:
            what = message_from(data) if isinstance(data, dict) else None
            raise EachlabsError(
                self.redact(
                    f"create answered HTTP {response.status_code} without a prediction id"
                    + (f": {clean_message(what)}" if what else "")
                ),
                status=response.status_code,
                attempts=attempts,
            )
        return pid, attempts, response.status_code

    async def get(
        self,
        prediction_id: str,
        *,
        deadline: float | None = None,
        on_retry: RetryHook | None = None,
    ) -> tuple[PredictionState, int, int]:
        """(normalised state, attempts, HTTP status). Raises `EachlabsError` (404: unknown id)."""
        from flux_depth_assets.providers.hosts.base import Created

        request = self.adapter.poll_request(
            self.base_url, Created(prediction_id, self._poll_urls.get(prediction_id))
        )
        response, attempts = await self._send(
            "GET", request.url, api=True, deadline=deadline, on_retry=on_retry, phase="poll"
        )
        poll = self.adapter.parse_poll(self._json(response, attempts))
        state = PredictionState(
            status=poll.status,
            state=poll.coarse,
            outputs=list(poll.outputs),
            error=poll.error,
            metrics=dict(poll.metrics),
            cost_usd=poll.cost_usd,
        )
        return state, attempts, response.status_code

    async def download(
        self, url: str, *, deadline: float | None = None, on_retry: RetryHook | None = None
    ) -> tuple[bytes, str, int, int]:
        """(bytes, content type, attempts, HTTP status) of an output URL or `data:` URI."""
        if url.startswith("data:"):
            head, _, payload = url.partition(",")
            try:
                data = (
                    base64.b64decode(payload, validate=True)
                    if ";base64" in head
                    else payload.encode()
                )
            except (binascii.Error, ValueError):
                raise EachlabsError("output data URI is not valid base64") from None
            return data, head[5:].split(";")[0], 0, 200
        response, attempts = await self._send(
            "GET", url, api=False, deadline=deadline, on_retry=on_retry, phase="download"
        )
        content = response.content
        if len(content) > MAX_OUTPUT_BYTES:
            raise EachlabsError(
                f"output is larger than {MAX_OUTPUT_BYTES} bytes",
                status=response.status_code,
                attempts=attempts,
            )
        return content, response.headers.get("content-type", ""), attempts, response.status_code

    # ------------------------------------------------------------------ transport

    def _json(self, response: httpx.Response, attempts: int) -> Any:
        try:
            return response.json()
        except (ValueError, UnicodeDecodeError):
            raise EachlabsError(
                self.redact(
                    f"HTTP {response.status_code} answer is not JSON: "
                    f"{clean_message(response.text[:120])}"
                ),
                status=response.status_code,
                attempts=attempts,
            ) from None

    async def _send(
        self,
        method: str,
        url: str,
        *,
        payload: Any = None,
        api: bool,
        deadline: float | None,
        on_retry: RetryHook | None,
        phase: Literal["create", "poll", "download"],
        headers: Mapping[str, str] | None = None,
    ) -> tuple[httpx.Response, int]:
        attempt = 0
        while True:
            attempt += 1
            try:
                if api and self._limiter is not None:
                    await self._limiter.wait()
                response = await self._follow(method, url, payload, headers or {})
            except (httpx.LocalProtocolError, httpx.UnsupportedProtocol) as exc:
                # the request could not even be built (e.g. an illegal header value): it was
                # never sent and can never succeed, so no retry; h11's text quotes the header
                # value (the key), so it is not shown at all
                raise EachlabsError(
                    f"the request could not be sent ({type(exc).__name__}): "
                    "a header or the URL is not valid HTTP; nothing was sent",
                    attempts=attempt,
                ) from None
            except httpx.TransportError as exc:
                connect = isinstance(
                    exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
                )
                error = EachlabsError(
                    self.redact(f"{type(exc).__name__}: {clean_message(str(exc)) or 'no detail'}"),
                    retryable=True,
                    uncertain=not connect,
                )
            except EachlabsError:
                raise
            else:
                code = response.status_code
                if code < 300:
                    return response, attempt
                failure = self.adapter.classify(phase, response)  # 429/5xx retry, Retry-After
                error = EachlabsError(
                    self.redact(f"HTTP {code}: {failure.message}"),
                    status=code,
                    retryable=failure.retryable,
                    retry_after=failure.retry_after,
                    uncertain=failure.uncertain,
                    kind=failure.kind.value,
                )
            error.attempts = attempt
            if not error.retryable:
                raise error
            if attempt > self.retry.max_retries:
                error.add_note_to_message(f"gave up after {attempt} attempts")
                raise error
            wait = self.retry.delay(attempt, error.retry_after, self._rng)
            if deadline is not None and time.monotonic() + wait > deadline:
                error.add_note_to_message(
                    f"no retry: waiting {wait:.1f} s would pass the prediction deadline"
                )
                raise error
            if on_retry is not None:
                on_retry(error, wait)
            await asyncio.sleep(wait)

    async def _follow(
        self, method: str, url: str, payload: Any, extra_headers: Mapping[str, str]
    ) -> httpx.Response:
        """One request, following redirects by hand: the key goes only where the adapter allows
        (the API's own origin, by default)."""
        current = httpx.URL(url)
        for _ in range(MAX_REDIRECTS + 1):
            headers = dict(extra_headers)
            if self._key and self.adapter.key_allowed(str(current), self.base_url):
                headers.update(self.adapter.auth_headers(self._key.reveal()))
            response = await self._http.request(method, current, json=payload, headers=headers)
            if response.status_code not in REDIRECTS or "location" not in response.headers:
                return response
            await response.aclose()
            if method == "POST" and response.status_code not in (307, 308):
                raise EachlabsError(
                    f"create was redirected with HTTP {response.status_code}; "
                    "refusing to turn it into a GET",
                    status=response.status_code,
                )
            current = current.join(response.headers["location"])
            if current.scheme not in ("http", "https"):
                raise EachlabsError(
                    f"redirect to a non-http(s) URL ({current.scheme})", status=response.status_code
                )
        raise EachlabsError(f"more than {MAX_REDIRECTS} redirects", status=response.status_code)


def url_host(url: str) -> str:
    return urlsplit(url).netloc

"""What differs between hosts of the same model, and nothing else: the adapter seam.

A host adapter is a set of pure functions over one host's wire protocol: how a create request is
shaped (URL, JSON body, headers), which header carries the key and where the key may be sent, how
the host spells its statuses (mapped onto `HostState`), where the output URL is, how an error
answer maps onto an `ErrorKind` (which says what the shared client must do: retry, stop the
account, skip the host, recreate the prediction), the price and the limits the host publishes.

Everything stateful (concurrency, retries, the journal, the cache, the lease, lineage, budgets, the
result check, the account limits) is shared and lives outside the adapters, so an adapter never
sends a request itself and is tested offline with plain dicts and `httpx.Response` objects.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, ClassVar, Literal
from urllib.parse import quote

import httpx

from flux_depth_assets.providers.eachlabs.client import origin
from flux_depth_assets.providers.eachlabs.protocol import (
    PredictionState,
    clean_message,
    host_message,
    parse_retry_after,
)

Coarse = Literal["running", "succeeded", "failed"]


class HostState(StrEnum):
    """A prediction's state in the shared vocabulary every adapter maps its statuses onto."""

    RUNNING = "running"  # queued, starting, processing, pending, or a spelling we do not know
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # the model or the host failed it
    MODERATED = "moderated"  # the host's safety filter refused the input or the output
    CANCELED = "canceled"  # stopped while running (a deadline or a cancel): charged
    ABORTED = "aborted"  # stopped before it ran (Replicate's deadline): not charged
    UNKNOWN = "unknown"  # the host does not know the id (BFL's "Task not found"; a 404 elsewhere)

    @property
    def coarse(self) -> Coarse:
        """running | succeeded | failed: what the shared flow branches on."""
        if self is HostState.RUNNING:
            return "running"
        return "succeeded" if self is HostState.SUCCEEDED else "failed"

    @property
    def charged(self) -> bool:
        """Whether the host bills a prediction that ended in this state (conservative: yes)."""
        return self is not HostState.ABORTED


class ErrorKind(StrEnum):
    """What an error answer means for the shared client."""

    RATE_LIMITED = "rate_limited"  # retry after the host's delay
    TRANSIENT = "transient"  # 5xx, connection trouble: retry with backoff
    AUTH = "auth"  # bad or missing key: every request on this account fails
    OUT_OF_CREDIT = "out_of_credit"  # 402: every create on this account fails
    MODEL_UNAVAILABLE = "model_unavailable"  # the host does not serve the model (retired, renamed)
    UNKNOWN_PREDICTION = "unknown_prediction"  # a poll for an id the host does not know
    OUTPUT_EXPIRED = "output_expired"  # the output URL is gone (signed URL expired, deleted)
    BAD_REQUEST = "bad_request"  # this image's request is wrong (400/422): fail this image only


Phase = Literal["create", "poll", "download"]


@dataclass(frozen=True)
class HostError:
    """An error answer, classified. `message` is the host's own explanation, one short line."""

    kind: ErrorKind
    status: int | None
    message: str
    retry_after: float | None = None

    @property
    def retryable(self) -> bool:
        return self.kind in (ErrorKind.RATE_LIMITED, ErrorKind.TRANSIENT)

    @property
    def stops_account(self) -> bool:
        """True when no further request on this account can succeed (every run must stop)."""
        return self.kind in (ErrorKind.AUTH, ErrorKind.OUT_OF_CREDIT)

    @property
    def skips_host(self) -> bool:
        """True when the host does not serve the model: fail over for the rest of the run."""
        return self.kind is ErrorKind.MODEL_UNAVAILABLE

    @property
    def uncertain(self) -> bool:
        """A 5xx may have reached the host: a create may have been made (and charged)."""
        return self.status is not None and self.status >= 500


@dataclass(frozen=True)
class HostRequest:
    """One request to send. `headers` never hold the key: the client adds `auth_headers` itself,
    and only where `key_allowed` says so."""

    method: Literal["GET", "POST"]
    url: str
    json: dict[str, Any] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Created:
    """A create answer: the prediction id and, where the host gives one, the URL to poll."""

    prediction_id: str
    poll_url: str | None = None


@dataclass(frozen=True)
class HostPoll:
    """One poll answer, normalised. `status` is the host's own word, lower-cased."""

    status: str
    state: HostState
    outputs: tuple[str, ...] = ()
    error: str | None = None
    metrics: Mapping[str, Any] = field(default_factory=dict)
    cost_usd: float | None = None

    @property
    def coarse(self) -> Coarse:
        return self.state.coarse


@dataclass(frozen=True)
class PublishedLimits:
    """Limits the host publishes for one account (None: none published). `sources` say where."""

    max_in_flight: int | None = None
    creates_per_minute: int | None = None
    low_credit_creates_per_minute: int | None = None
    output_ttl_s: float | None = None  # output URLs stop working after this long
    sources: tuple[str, ...] = ()


@dataclass(frozen=True)
class CreateCall:
    """The arguments of one create request, as each host's `create` reads them."""

    base: str  # the API's base URL without a trailing slash
    model: str
    version: str | None
    inputs: Mapping[str, Any]
    deadline_s: float | None = None


class HostAdapter(abc.ABC):
    """One host's protocol. Subclasses set the class attributes (`poll_path` too) and implement
    `auth_headers`, `create`, `parse_create` and `parse_poll`."""

    name: ClassVar[str]
    default_base_url: ClassVar[str]
    api_key_env: ClassVar[str]  # read through Dagster's EnvVar; never logged
    base_url_env: ClassVar[str]
    default_model: ClassVar[str]  # flux-depth-pro under this host's name
    default_version: ClassVar[str | None] = None
    price_usd: ClassVar[float] = 0.05  # per created prediction (none of these hosts reports it)
    limits: ClassVar[PublishedLimits] = PublishedLimits()
    poll_path: ClassVar[str]  # the poll endpoint below the base URL, `{id}` the quoted id

    # ------------------------------------------------------------------ requests

    @abc.abstractmethod
    def auth_headers(self, key: str) -> dict[str, str]:
        """The header(s) that carry the key."""

    def key_allowed(self, url: str, base_url: str) -> bool:
        """Whether the key may be sent to `url` (by default: the API's own origin only)."""
        return origin(url) == origin(base_url)

    def create_request(
        self,
        base_url: str,
        model: str,
        version: str | None,
        inputs: Mapping[str, Any],
        deadline_s: float | None = None,
    ) -> HostRequest:
        """The create request for the shared model inputs (`control_image`, `prompt`, ...)."""
        return self.create(CreateCall(base_url.rstrip("/"), model, version, inputs, deadline_s))

    @abc.abstractmethod
    def create(self, call: CreateCall) -> HostRequest:
        """The host's create request for `call` (its base URL has no trailing slash)."""

    @abc.abstractmethod
    def parse_create(self, data: Any) -> Created | None:
        """The created prediction, or None when the answer carries no id."""

    def poll_request(self, base_url: str, created: Created) -> HostRequest:
        """The request that polls `created`: its own poll URL where the key may go there, else
        `poll_path` on the API."""
        if created.poll_url and self.key_allowed(created.poll_url, base_url):
            return HostRequest("GET", created.poll_url)
        pid = quote(created.prediction_id, safe="")
        return HostRequest("GET", base_url.rstrip("/") + self.poll_path.format(id=pid))

    @abc.abstractmethod
    def parse_poll(self, data: Any) -> HostPoll:
        """A poll answer, normalised; tolerant of missing fields and unknown statuses."""

    # ------------------------------------------------------------------ errors

    def classify(self, phase: Phase, response: httpx.Response) -> HostError:
        """An error answer (status >= 300) mapped onto an `ErrorKind`; override for host quirks."""
        code = response.status_code
        message = host_message(response)
        retry_after = None
        if code == 429:
            kind = ErrorKind.RATE_LIMITED
        elif code >= 500:
            kind = ErrorKind.TRANSIENT
        elif phase == "download":  # output URLs carry no key: a 401/403 is an expired signature
            kind = ErrorKind.OUTPUT_EXPIRED
        elif code in (401, 403):
            kind = ErrorKind.AUTH
        elif code == 402:
            kind = ErrorKind.OUT_OF_CREDIT
        elif code in (404, 410):
            kind = {
                "create": ErrorKind.MODEL_UNAVAILABLE,
                "poll": ErrorKind.UNKNOWN_PREDICTION,
                "download": ErrorKind.OUTPUT_EXPIRED,
            }[phase]
        else:
            kind = ErrorKind.BAD_REQUEST
        if kind in (ErrorKind.RATE_LIMITED, ErrorKind.TRANSIENT):
            retry_after = parse_retry_after(response.headers.get("retry-after"))
        return HostError(kind=kind, status=code, message=message, retry_after=retry_after)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def created_from(data: Any, poll_url: Callable[[dict[str, Any]], Any]) -> Created | None:
    """A created prediction from an `{"id": ...}` answer; `poll_url` picks its poll URL."""
    if not isinstance(data, dict):
        return None
    pid = data.get("id")
    if not isinstance(pid, str) or not pid.strip():
        return None
    poll = poll_url(data)
    return Created(pid.strip(), poll if isinstance(poll, str) and poll else None)


def poll_from(reading: PredictionState, state: HostState, **changes: Any) -> HostPoll:
    """A poll answer from the shared tolerant reading (`parse_prediction`) in the host's own
    `state`; `changes` are the fields the host reads otherwise."""
    poll = HostPoll(
        status=reading.status,
        state=state,
        outputs=tuple(reading.outputs),
        error=reading.error,
        metrics=dict(reading.metrics),
        cost_usd=reading.cost_usd,
    )
    return replace(poll, **changes)


def short_error(value: str | None) -> str | None:
    """One cleaned line, or None."""
    return clean_message(value) if value else None

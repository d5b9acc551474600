"""Replicate: `Authorization: Bearer`, create on the model's endpoint, poll `urls.get`.

- create `POST /v1/models/{owner}/{name}/predictions` with `{"input": {...}}` (an official model,
  no version); with a 64-hex version id, `POST /v1/predictions` with `{"version", "input"}`;
- a `Cancel-After` header sets the deadline: the host cancels a prediction still running then
  (`canceled`, charged) or aborts one that never started (`aborted`, not charged);
- statuses `starting`/`processing` → running, `succeeded`, `failed`, `canceled`, `aborted`;
  a failure whose error says the input or output was flagged (E005, "sensitive", NSFW) is moderated;
- `output` is a URL (or a list); outputs are deleted after an hour;
- 429 carries the delay in the JSON body (`retry_after`) as well as, sometimes, a header.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import quote

import httpx

from flux_depth_assets.providers.eachlabs.protocol import _number as positive_number
from flux_depth_assets.providers.eachlabs.protocol import parse_prediction
from flux_depth_assets.providers.hosts.base import (
    Created,
    ErrorKind,
    HostAdapter,
    HostError,
    HostPoll,
    HostRequest,
    HostState,
    Phase,
    PublishedLimits,
)

VERSION_RE = re.compile(r"^[0-9a-f]{64}$")
MODERATION_HINTS = ("e005", "flagged as sensitive", "nsfw", "safety filter", "moderat")
STATES = {
    "succeeded": HostState.SUCCEEDED,
    "failed": HostState.FAILED,
    "canceled": HostState.CANCELED,
    "cancelled": HostState.CANCELED,
    "aborted": HostState.ABORTED,
}


def cancel_after(seconds: float) -> str:
    """A `Cancel-After` value in whole seconds (Replicate accepts `30s`, `5m`, `1h30m`)."""
    return f"{max(5, math.ceil(seconds))}s"


class ReplicateAdapter(HostAdapter):
    name: ClassVar[str] = "replicate"
    default_base_url: ClassVar[str] = "https://api.replicate.com"
    api_key_env: ClassVar[str] = "REPLICATE_API_TOKEN"
    base_url_env: ClassVar[str] = "REPLICATE_BASE_URL"
    default_model: ClassVar[str] = "black-forest-labs/flux-depth-pro"
    default_version: ClassVar[str | None] = None
    price_usd: ClassVar[float] = 0.05
    limits: ClassVar[PublishedLimits] = PublishedLimits(
        creates_per_minute=600,
        low_credit_creates_per_minute=6,
        output_ttl_s=3600.0,
        sources=(
            (
                "https://replicate.com/docs/topics/predictions/rate-limits (600 creates/min; "
                "lower with little credit)"
            ),
            (
                "https://replicate.com/docs/topics/predictions/data-retention (outputs "
                "deleted after an hour)"
            ),
            (
                "https://replicate.com/changelog/2025-10-16-prediction-deadlines "
                "(Cancel-After; canceled is charged, aborted is not)"
            ),
            "https://replicate.com/black-forest-labs/flux-depth-pro ($0.05 per image)",
        ),
    )

    def auth_headers(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    def create_request(
        self,
        base_url: str,
        model: str,
        version: str | None,
        inputs: Mapping[str, Any],
        deadline_s: float | None = None,
    ) -> HostRequest:
        base = base_url.rstrip("/")
        headers = {"Cancel-After": cancel_after(deadline_s)} if deadline_s else {}
        if version and VERSION_RE.match(version):
            return HostRequest(
                "POST",
                f"{base}/v1/predictions",
                json={"version": version, "input": dict(inputs)},
                headers=headers,
            )
        owner, _, name = model.partition("/")
        if not owner or not name:
            raise ValueError(f"a Replicate model is 'owner/name', not {model!r}")
        url = f"{base}/v1/models/{quote(owner, safe='')}/{quote(name, safe='')}/predictions"
        return HostRequest("POST", url, json={"input": dict(inputs)}, headers=headers)

    def parse_create(self, data: Any) -> Created | None:
        if not isinstance(data, dict):
            return None
        pid = data.get("id")
        if not isinstance(pid, str) or not pid.strip():
            return None
        urls = data.get("urls")
        get = urls.get("get") if isinstance(urls, dict) else None
        return Created(pid.strip(), get if isinstance(get, str) and get else None)

    def poll_request(self, base_url: str, created: Created) -> HostRequest:
        if created.poll_url and self.key_allowed(created.poll_url, base_url):
            return HostRequest("GET", created.poll_url)
        pid = quote(created.prediction_id, safe="")
        return HostRequest("GET", f"{base_url.rstrip('/')}/v1/predictions/{pid}")

    def parse_poll(self, data: Any) -> HostPoll:
        shape = parse_prediction(data)  # output URLs, error text, metrics: the shared reading
        state = STATES.get(shape.status, HostState.RUNNING)
        if (
            state is HostState.FAILED
            and shape.error
            and any(h in shape.error.lower() for h in MODERATION_HINTS)
        ):
            state = HostState.MODERATED
        error = shape.error
        if state.coarse == "failed" and not error:
            error = f"prediction {shape.status}"
        outputs = tuple(shape.outputs) if state is HostState.SUCCEEDED else ()
        return HostPoll(
            status=shape.status,
            state=state,
            outputs=outputs,
            error=error,
            metrics=dict(shape.metrics),
            cost_usd=None,
        )  # Replicate reports no cost

    def classify(self, phase: Phase, response: httpx.Response) -> HostError:
        error = super().classify(phase, response)
        if error.kind is ErrorKind.RATE_LIMITED and error.retry_after is None:
            try:
                body = response.json()
            except ValueError:
                body = None
            if isinstance(body, dict):
                wait = positive_number(body.get("retry_after"))
                if wait is not None:
                    return HostError(error.kind, error.status, error.message, retry_after=wait)
        return error

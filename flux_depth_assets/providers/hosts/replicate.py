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
from typing import Any
from urllib.parse import quote

import httpx

from flux_depth_assets.providers.eachlabs.protocol import _number as positive_number
from flux_depth_assets.providers.eachlabs.protocol import parse_prediction
from flux_depth_assets.providers.hosts.base import (
    CreateCall,
    Created,
    ErrorKind,
    HostAdapter,
    HostError,
    HostPoll,
    HostRequest,
    HostState,
    Phase,
    PublishedLimits,
    created_from,
    poll_from,
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


def get_url(data: dict[str, Any]) -> Any:
    """The poll URL Replicate gives under `urls.get`."""
    urls = data.get("urls")
    return urls.get("get") if isinstance(urls, dict) else None


class ReplicateAdapter(HostAdapter):
    name = "replicate"
    default_base_url = "https://api.replicate.com"
    api_key_env = "REPLICATE_API_TOKEN"
    base_url_env = "REPLICATE_BASE_URL"
    default_model = "black-forest-labs/flux-depth-pro"
    poll_path = "/v1/predictions/{id}"
    limits = PublishedLimits(
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

    def create(self, call: CreateCall) -> HostRequest:
        headers = {"Cancel-After": cancel_after(call.deadline_s)} if call.deadline_s else {}
        inputs = dict(call.inputs)
        if call.version and VERSION_RE.match(call.version):
            body = {"version": call.version, "input": inputs}
            return HostRequest("POST", f"{call.base}/v1/predictions", json=body, headers=headers)
        owner, _, name = call.model.partition("/")
        if not owner or not name:
            raise ValueError(f"a Replicate model is 'owner/name', not {call.model!r}")
        url = f"{call.base}/v1/models/{quote(owner, safe='')}/{quote(name, safe='')}/predictions"
        return HostRequest("POST", url, json={"input": inputs}, headers=headers)

    def parse_create(self, data: Any) -> Created | None:
        return created_from(data, get_url)

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
        return poll_from(shape, state, outputs=outputs, error=error, cost_usd=None)  # no cost given

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

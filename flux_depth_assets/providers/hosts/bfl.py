"""Black Forest Labs' own API, the template for hosts that copy its shape.

- create `POST /v1/{model}` with header `x-key` and the inputs as the JSON body (not wrapped);
  `control_image` is raw base64 or a URL, so a data URI is sent as its base64 payload;
- the answer is `{"id", "polling_url"}`; poll `polling_url` (possibly a regional host of the same
  domain, e.g. `api.us1.bfl.ai`, which needs the key too) until `status` is `Ready`;
- the output is `result.sample`, a signed URL that expires after 10 minutes: download at once;
- statuses `Pending` (and other spellings) → running, `Ready`, `Error`/`Failed`, `Content
  Moderated`, `Request Moderated`, `Task not found` (the id is unknown);
- 402 means out of credit; 429 means more than 24 tasks in flight on the account.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from flux_depth_assets.providers.eachlabs.client import origin
from flux_depth_assets.providers.eachlabs.protocol import _number as positive_number
from flux_depth_assets.providers.eachlabs.protocol import _output_urls, message_from
from flux_depth_assets.providers.hosts import base
from flux_depth_assets.providers.hosts.base import HostPoll, HostState, created_from, short_error

STATES = {
    "ready": HostState.SUCCEEDED,
    "error": HostState.FAILED,
    "failed": HostState.FAILED,
    "content moderated": HostState.MODERATED,
    "request moderated": HostState.MODERATED,
    "task not found": HostState.UNKNOWN,
}


def base64_payload(control_image: str) -> str:
    """BFL takes raw base64 or a URL: strip a data URI's header."""
    head, sep, payload = control_image.partition(",")
    return (
        payload if sep and head.startswith("data:") and head.endswith(";base64") else control_image
    )


class BflAdapter(base.HostAdapter):
    name = "bfl"
    default_base_url = "https://api.bfl.ai"
    api_key_env = "BFL_API_KEY"
    base_url_env = "BFL_BASE_URL"
    default_model = "flux-pro-1.0-depth"
    poll_path = "/v1/get_result?id={id}"
    limits = base.PublishedLimits(
        max_in_flight=24,
        output_ttl_s=600.0,
        sources=(
            (
                "https://docs.bfl.ai/api_integration/integration_guidelines (24 active tasks "
                "per account, 429 beyond; result URLs signed, valid 10 minutes; 402 = out of "
                "credit)"
            ),
            "https://docs.bfl.ai/release-notes (flux-pro-1.0-depth retired 2025-10-31)",
        ),
    )

    def auth_headers(self, key: str) -> dict[str, str]:
        return {"x-key": key}

    def key_allowed(self, url: str, base_url: str) -> bool:
        """The API's origin, or an https host of the same domain (regional polling hosts)."""
        if origin(url) == origin(base_url):
            return True
        scheme, host, _ = origin(url)
        _, base_host, _ = origin(base_url)
        domain = base_host.removeprefix("api.")
        return scheme == "https" and "." in domain and host.endswith("." + domain)

    def create(self, call: base.CreateCall) -> base.HostRequest:
        body = dict(call.inputs)
        if isinstance(body.get("control_image"), str):
            body["control_image"] = base64_payload(body["control_image"])
        return base.HostRequest("POST", f"{call.base}/v1/{quote(call.model, safe='')}", json=body)

    def parse_create(self, data: Any) -> base.Created | None:
        return created_from(data, lambda d: d.get("polling_url"))

    def parse_poll(self, data: Any) -> HostPoll:
        if not isinstance(data, dict):
            return HostPoll(status="", state=HostState.RUNNING)
        status = str(data.get("status") or "").strip().lower()
        state = STATES.get(status, HostState.RUNNING)
        result = data.get("result")
        outputs: tuple[str, ...] = ()
        if state is HostState.SUCCEEDED and isinstance(result, dict):
            outputs = tuple(_output_urls(result.get("sample")))
        error = None
        if state.coarse == "failed":
            details = (
                data.get("details")
                or data.get("error")
                or (result if isinstance(result, (dict, str)) else None)
            )
            error = short_error(message_from(details)) or f"prediction {status}"
        metrics = {}
        if isinstance(result, dict) and (seconds := positive_number(result.get("duration"))):
            metrics["predict_time"] = seconds
        return HostPoll(
            status=status,
            state=state,
            outputs=outputs,
            error=error,
            metrics=metrics,
            cost_usd=positive_number(data.get("cost_usd")),
        )

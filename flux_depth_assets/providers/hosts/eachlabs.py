"""Eachlabs (the reference host): `X-API-Key`, `POST /v1/prediction/`, poll by id, `output` URL.

Answers are read with the tolerant parsers that already serve the Eachlabs client
(`providers.eachlabs.protocol`), so switching the client onto this adapter changes no behaviour:
the coarse state, outputs, error text and cost are exactly `parse_prediction`'s. The finer
`HostState` only splits that provider's "failed" into moderated / canceled / failed.
"""

from __future__ import annotations

from typing import Any

from flux_depth_assets.providers.eachlabs.protocol import parse_prediction, prediction_id_from
from flux_depth_assets.providers.hosts import base
from flux_depth_assets.providers.hosts.base import HostPoll, HostState, poll_from

MODERATED_STATUSES = frozenset({"content moderated", "request moderated"})
CANCELED_STATUSES = frozenset({"canceled", "cancelled", "aborted"})


class EachlabsAdapter(base.HostAdapter):
    name = "eachlabs"
    default_base_url = "https://api.eachlabs.ai"
    api_key_env = "EACHLABS_API_KEY"
    base_url_env = "EACHLABS_BASE_URL"
    default_model = "flux-depth-pro"
    default_version = "0.0.1"
    poll_path = "/v1/prediction/{id}"
    limits = base.PublishedLimits(
        sources=(
            (
                "https://www.eachlabs.ai/ (model page: $0.05 per execution; no account limits "
                "published)"
            ),
        )
    )

    def auth_headers(self, key: str) -> dict[str, str]:
        return {"X-API-Key": key}

    def create(self, call: base.CreateCall) -> base.HostRequest:
        body = {
            "model": call.model,
            "version": call.version if call.version is not None else self.default_version,
            "input": dict(call.inputs),
            "webhook_url": "",
        }
        return base.HostRequest("POST", f"{call.base}/v1/prediction/", json=body)

    def parse_create(self, data: Any) -> base.Created | None:
        pid = prediction_id_from(data)
        return base.Created(pid) if pid is not None else None

    def parse_poll(self, data: Any) -> HostPoll:
        legacy = parse_prediction(data)
        if legacy.state == "succeeded":
            state = HostState.SUCCEEDED
        elif legacy.state == "running":
            state = HostState.RUNNING
        elif legacy.status in MODERATED_STATUSES:
            state = HostState.MODERATED
        elif legacy.status in CANCELED_STATUSES:
            state = HostState.CANCELED  # Eachlabs does not say a stopped one is free: charged
        else:
            state = HostState.FAILED
        return poll_from(legacy, state)

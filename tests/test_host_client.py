"""The hosted client speaking each host's dialect through its adapter, over loopback."""

from __future__ import annotations

import asyncio
import io
import time
from typing import Any

import httpx
import pytest
from PIL import Image

from flux_depth_assets.fakeapi import running_fake_api
from flux_depth_assets.providers.eachlabs.client import EachlabsClient
from flux_depth_assets.providers.eachlabs.pacing import RetryPolicy
from flux_depth_assets.providers.eachlabs.protocol import EachlabsError
from flux_depth_assets.providers.hosts import ADAPTERS
from flux_depth_assets.providers.hosts.base import ErrorKind
from tests.hostcalls import inputs


def payload(name: str, shade: int = 0) -> dict[str, Any]:
    adapter = ADAPTERS[name]
    return {
        "model": adapter.default_model,
        "version": adapter.default_version,
        "input": inputs(shade),
    }


async def round_trip(client: EachlabsClient, name: str) -> tuple[str, bytes]:
    pid, _, _ = await client.create(payload(name), deadline=time.monotonic() + 600)
    for _ in range(500):
        state, _, _ = await client.get(pid)
        if state.state != "running":
            break
        await asyncio.sleep(0.02)
    assert state.state == "succeeded", state
    data, _, _, status = await client.download(state.outputs[0])
    assert status == 200
    return pid, data


@pytest.mark.parametrize("name", sorted(ADAPTERS))
def test_client_round_trip_in_each_dialect(name):
    seen: list[httpx.Request] = []

    async def record(request: httpx.Request) -> None:
        seen.append(request)

    async def scenario(base_url: str) -> bytes:
        client = EachlabsClient(base_url, "the-key", adapter=ADAPTERS[name])
        client._http.event_hooks["request"].append(record)
        try:
            return (await round_trip(client, name))[1]
        finally:
            await client.aclose()

    with running_fake_api(dialect=name, latency_s=0.1, api_keys=frozenset({"the-key"})) as server:
        data = asyncio.run(scenario(server.base_url))
        assert server.stats()["creates"] == 1 and server.stats()["unauthorized"] == 0
    assert Image.open(io.BytesIO(data)).mode == "L"
    header = {"eachlabs": "x-api-key", "replicate": "authorization", "bfl": "x-key"}[name]
    assert all(header in r.headers for r in seen[:-1])  # the create and every poll
    assert (
        seen[0].url.path
        == {
            "eachlabs": "/v1/prediction/",
            "replicate": "/v1/models/black-forest-labs/flux-depth-pro/predictions",
            "bfl": "/v1/flux-pro-1.0-depth",
        }[name]
    )
    assert seen[0].headers.get("user-agent") == f"flux-depth-assets/{name}"
    # a prediction past the deadline stays journaled for the next run: no host-side cancel
    assert "cancel-after" not in seen[0].headers


def test_cancel_at_deadline_sends_replicates_cancel_after():
    seen: list[httpx.Request] = []

    async def record(request: httpx.Request) -> None:
        seen.append(request)

    async def scenario(base_url: str) -> None:
        client = EachlabsClient(
            base_url, "k", adapter=ADAPTERS["replicate"], cancel_at_deadline=True
        )
        client._http.event_hooks["request"].append(record)
        try:
            await client.create(payload("replicate"), deadline=time.monotonic() + 90)
        finally:
            await client.aclose()

    with running_fake_api(dialect="replicate", latency_s=0.1) as server:
        asyncio.run(scenario(server.base_url))
    assert seen[0].headers["cancel-after"] in ("89s", "90s")


def test_replicate_429_body_delay_is_honoured_by_the_client():
    async def scenario(base_url: str) -> list[float]:
        waits: list[float] = []
        client = EachlabsClient(
            base_url, "k", adapter=ADAPTERS["replicate"], retry=RetryPolicy(max_retries=0)
        )
        try:
            await client.create(payload("replicate", 1))
            with pytest.raises(EachlabsError) as info:
                await client.create(payload("replicate", 2), on_retry=lambda e, w: waits.append(w))
            assert info.value.status == 429 and info.value.kind == ErrorKind.RATE_LIMITED
            assert info.value.retry_after is not None and 0 < info.value.retry_after <= 30
        finally:
            await client.aclose()
        return waits

    with running_fake_api(
        dialect="replicate", latency_s=0.1, creates_per_window=1, window_s=30
    ) as server:
        asyncio.run(scenario(server.base_url))
        assert server.stats()["creates"] == 1


@pytest.mark.parametrize("name", sorted(ADAPTERS))
def test_client_errors_carry_the_adapters_kind(name):
    async def scenario(base_url: str) -> EachlabsError:
        client = EachlabsClient(base_url, "k", adapter=ADAPTERS[name])
        try:
            with pytest.raises(EachlabsError) as info:
                await client.create(payload(name))
            return info.value
        finally:
            await client.aclose()

    with running_fake_api(dialect=name, credit_usd=0.0) as server:
        error = asyncio.run(scenario(server.base_url))
    assert error.status == 402 and error.kind == ErrorKind.OUT_OF_CREDIT
    assert not error.retryable and error.attempts == 1 and "credit" in error.message

"""Each adapter against the loopback host in that host's dialect: round trip and faults."""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from PIL import Image

from flux_depth_assets.fakeapi import fake_api_process, running_fake_api
from flux_depth_assets.fakeapi.dialects import parse_cancel_after
from flux_depth_assets.fakeapi.faults import max_in_window
from flux_depth_assets.providers.hosts import ADAPTERS, BflAdapter, ReplicateAdapter
from flux_depth_assets.providers.hosts.base import Created, ErrorKind, HostState
from tests.hostcalls import Driver

HOSTS = sorted(ADAPTERS)


@contextlib.contextmanager
def host(name: str, **options: Any) -> Iterator[tuple[Any, Driver]]:
    options.setdefault("latency_s", 0.1)
    with running_fake_api(dialect=name, **options) as server:
        driver = Driver(ADAPTERS[name], server.base_url)
        try:
            yield server, driver
        finally:
            driver.close()


@pytest.mark.parametrize("name", HOSTS)
def test_round_trip_in_each_dialect(name):
    with host(name) as (server, d):
        created = d.created()
        assert d.poll(created).state is HostState.RUNNING
        done = d.wait(created)
        assert done.state is HostState.SUCCEEDED and len(done.outputs) == 1
        response = d.download(done.outputs[0])
        assert response.status_code == 200
        image = Image.open(io.BytesIO(response.content))
        assert image.format == "PNG" and image.mode == "L" and image.size == (80, 60)
        stats = server.stats()
        assert stats["creates"] == 1 and stats["charged_usd"] == pytest.approx(0.05)
        assert len(stats["create_times"]) == 1 and stats["downloads"] == 1


@pytest.mark.parametrize("name", HOSTS)
def test_out_of_credit_is_a_402_that_stops_the_account(name):
    with host(name, credit_usd=0.10) as (server, d):
        assert d.create(1).status_code < 300 and d.create(2).status_code < 300
        refused = d.create(3)
        error = d.adapter.classify("create", refused)
        assert refused.status_code == 402 and error.kind is ErrorKind.OUT_OF_CREDIT
        assert error.stops_account and not error.retryable
        assert "credit" in error.message
        assert server.stats()["creates"] == 2 and server.stats()["out_of_credit"] == 1


@pytest.mark.parametrize("name", HOSTS)
def test_retired_model_is_a_404_that_skips_the_host(name):
    adapter = ADAPTERS[name]
    with host(name, retired_models=(adapter.default_model,)) as (server, d):
        refused = d.create()
        error = adapter.classify("create", refused)
        assert refused.status_code == 404 and "not found" in error.message
        assert error.kind is ErrorKind.MODEL_UNAVAILABLE and error.skips_host
        assert server.stats()["creates"] == 0 and server.stats()["charged_usd"] == 0


@pytest.mark.parametrize("name", HOSTS)
def test_wrong_key_is_an_auth_error(name):
    with host(name, api_keys=frozenset({"right"})) as (server, d):
        d.key = "wrong"
        error = d.adapter.classify("create", d.create())
        assert error.kind is ErrorKind.AUTH and error.stops_account
        assert server.stats()["unauthorized"] == 1 and server.stats()["creates"] == 0


@pytest.mark.parametrize("name", HOSTS)
def test_creates_per_window_answer_429_and_the_adapter_reads_the_delay(name):
    with host(name, creates_per_window=2, window_s=30) as (server, d):
        assert d.create(1).status_code < 300 and d.create(2).status_code < 300
        refused = d.create(3)
        error = d.adapter.classify("create", refused)
        assert refused.status_code == 429 and error.kind is ErrorKind.RATE_LIMITED
        assert error.retry_after is not None and 0 < error.retry_after <= 30
        assert server.stats()["window_limited"] == 1


def test_replicate_429_carries_retry_after_in_the_body_only():
    with host("replicate", creates_per_window=1, window_s=30) as (_, d):
        d.create(1)
        refused = d.create(2)
        assert "retry-after" not in refused.headers
        body = refused.json()
        assert body["status"] == 429 and 0 < body["retry_after"] <= 30 and body["detail"]


def test_replicate_cancel_after_cancels_a_prediction_still_running():
    assert [parse_cancel_after(v) for v in ("90", "30s", "5m", "1h30m45s", "x", "")] == [
        90.0,
        30.0,
        300.0,
        5445.0,
        None,
        None,
    ]
    with host("replicate", latency_s=60.0) as (server, d):
        response = d.create(deadline_s=5)
        assert response.status_code == 201 and response.json()["status"] == "starting"
        created = ReplicateAdapter().parse_create(response.json())
        assert created is not None and created.poll_url is not None
        pred = server.state.host_state.prediction(created.prediction_id)
        answer = server.state._describe(pred, pred.created_at + 5.5, server.base_url)
        poll = ReplicateAdapter().parse_poll(answer)
        assert poll.state is HostState.CANCELED and poll.state.charged
        assert server.state._describe(pred, pred.created_at + 4.9, server.base_url)["status"] in (
            "starting",
            "processing",
        )
        bad = d.http.post(
            f"{d.base_url}/v1/models/black-forest-labs/flux-depth-pro/predictions",
            json={"input": {}},
            headers={"Authorization": "Bearer k", "Cancel-After": "2s"},
        )
        assert bad.status_code == 400 and "Cancel-After" in bad.json()["detail"]


@pytest.mark.parametrize(
    "name, statuses",
    [("replicate", {"failed"}), ("bfl", {"content moderated", "request moderated"})],
)
def test_moderation_statuses(name, statuses):
    with host(name, moderation_ratio=1.0) as (server, d):
        done = d.wait(d.created())
        assert done.state is HostState.MODERATED and done.status in statuses
        assert done.outputs == () and done.error
        assert server.stats()["creates"] == 1


def test_bfl_result_url_is_signed_and_expires():
    with host("bfl", output_ttl_s=0.5) as (_server, d):
        done = d.wait(d.created())
        url = done.outputs[0]
        assert "sig=" in url and "exp=" in url
        assert d.download(url).status_code == 200
        tampered = url.replace("exp=", "exp=9")
        assert d.download(tampered).status_code == 403
        deadline = time.monotonic() + 10
        while (response := d.download(url)).status_code == 200:  # until the server expires it
            assert time.monotonic() < deadline, "the signed URL never expired"
            time.sleep(0.05)
        assert response.status_code == 403
        error = BflAdapter().classify("download", response)
        assert error.kind is ErrorKind.OUTPUT_EXPIRED and not error.stops_account


def test_bfl_unknown_task_and_active_cap():
    with host("bfl", latency_s=30.0, max_active=1) as (server, d):
        assert d.poll(Created("nope")).state is HostState.UNKNOWN
        assert d.create(1).status_code == 200
        refused = d.create(2)
        assert refused.status_code == 429 and "active" in refused.json()["detail"]
        assert server.stats()["active_limited"] == 1 and server.stats()["creates"] == 1


def test_replicate_unknown_prediction_is_a_404():
    with host("replicate") as (_, d):
        response = d.send(ReplicateAdapter().poll_request(d.base_url, Created("nope")))
        assert ReplicateAdapter().classify("poll", response).kind is ErrorKind.UNKNOWN_PREDICTION


def test_max_in_window():
    assert max_in_window([], 1.0) == 0
    assert max_in_window([0.0, 0.5, 0.99, 1.0, 1.5], 1.0) == 3
    assert max_in_window([0.0, 2.0, 4.0], 1.0) == 1


def test_cli_dialect_option_in_a_child_process():
    with fake_api_process(
        latency_s=0.05, extra_args=["--dialect", "bfl", "--credit", "0.05"]
    ) as proc:
        d = Driver(BflAdapter(), proc.base_url)
        try:
            assert d.create(1).status_code == 200
            assert d.create(2).status_code == 402
        finally:
            d.close()
        assert proc.stats()["creates"] == 1
        assert httpx.get(f"{proc.base_url}/v1/prediction/x").status_code == 404  # no eachlabs

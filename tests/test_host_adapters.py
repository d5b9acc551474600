"""Host adapters: request shapes, status vocabularies, output locations, error mapping (offline)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from flux_depth_assets.providers.eachlabs.protocol import parse_prediction
from flux_depth_assets.providers.hosts import (
    ADAPTERS,
    BflAdapter,
    EachlabsAdapter,
    ReplicateAdapter,
    adapter_for,
)
from flux_depth_assets.providers.hosts.base import Created, ErrorKind, HostState
from flux_depth_assets.providers.hosts.replicate import cancel_after
from tests.hostcalls import inputs

INPUTS = {**inputs(), "control_image": "data:image/jpeg;base64,QUJD"}

# every answer shape the Eachlabs parser is tested with, plus moderation/cancel spellings
EACHLABS_ANSWERS: list[Any] = [
    None,
    [],
    "x",
    {},
    {"status": "processing"},
    {"status": "starting"},
    {"status": "queued"},
    {"status": "success", "output": "https://cdn/x.png"},
    {"status": "success", "output": ["https://cdn/a.png", "https://cdn/b.png"]},
    {"status": "succeeded", "output": {"url": "https://cdn/u.png"}},
    {"status": "SUCCESS", "result": {"sample": "https://cdn/s.png"}},
    {"data": {"status": "success", "output": "https://cdn/d.png", "cost": 0.07}},
    {
        "status": "success",
        "output": "data:image/png;base64,AAAA",
        "metrics": {"cost_usd": 0.04, "predict_time": 3.5},
    },
    {"status": "failed", "error": "model crashed"},
    {"status": "error"},
    {"status": "failed", "message": "nope"},
    {"status": "canceled"},
    {"status": "cancelled"},
    {"status": "aborted"},
    {"status": "Content Moderated"},
    {"status": "Request Moderated", "error": {"detail": "x"}},
    {"status": "weird-new-status"},
    {"status": "success", "output": "ftp://not-a-url"},
    {"status": "success", "price": "0.05"},
    {"status": "success", "cost": True},
]


@pytest.mark.parametrize("answer", EACHLABS_ANSWERS)
def test_eachlabs_adapter_reads_exactly_what_the_eachlabs_client_reads(answer):
    legacy = parse_prediction(answer)
    poll = EachlabsAdapter().parse_poll(answer)
    assert (
        poll.coarse,
        poll.status,
        list(poll.outputs),
        poll.error,
        dict(poll.metrics),
        poll.cost_usd,
    ) == (
        legacy.state,
        legacy.status,
        legacy.outputs,
        legacy.error,
        legacy.metrics,
        legacy.cost_usd,
    )


def test_eachlabs_adapter_splits_failed_into_moderated_and_canceled():
    a = EachlabsAdapter()
    assert a.parse_poll({"status": "Content Moderated"}).state is HostState.MODERATED
    assert a.parse_poll({"status": "canceled"}).state is HostState.CANCELED
    assert a.parse_poll({"status": "failed"}).state is HostState.FAILED


def test_eachlabs_request_shape_is_the_clients():
    a = EachlabsAdapter()
    req = a.create_request("http://h:1/", "flux-depth-pro", "0.0.1", INPUTS, deadline_s=600)
    assert (req.method, req.url) == ("POST", "http://h:1/v1/prediction/")
    assert req.json == {
        "model": "flux-depth-pro",
        "version": "0.0.1",
        "input": INPUTS,
        "webhook_url": "",
    }
    assert dict(req.headers) == {}
    assert a.auth_headers("k") == {"X-API-Key": "k"}
    created = a.parse_create({"status": "success", "predictionID": "p/1"})
    assert created == Created("p/1")
    assert a.poll_request("http://h:1", created).url == "http://h:1/v1/prediction/p%2F1"
    assert a.parse_create({"status": "success"}) is None


def test_replicate_request_shape_deadline_and_version():
    a = ReplicateAdapter()
    req = a.create_request(
        "https://api.replicate.com", a.default_model, None, INPUTS, deadline_s=599.2
    )
    assert req.url == (
        "https://api.replicate.com/v1/models/black-forest-labs/flux-depth-pro/predictions"
    )
    assert req.json == {"input": INPUTS}
    assert dict(req.headers) == {"Cancel-After": "600s"}
    assert cancel_after(1) == "5s"  # the host's minimum
    version = "a" * 64
    req = a.create_request("https://api.replicate.com", a.default_model, version, INPUTS)
    assert req.url.endswith("/v1/predictions") and req.json == {"version": version, "input": INPUTS}
    assert "Cancel-After" not in req.headers
    with pytest.raises(ValueError, match="owner/name"):
        a.create_request("https://api.replicate.com", "flux-depth-pro", None, INPUTS)
    assert a.auth_headers("r8_x") == {"Authorization": "Bearer r8_x"}


def test_replicate_polls_urls_get_only_on_its_own_origin():
    a = ReplicateAdapter()
    base = "https://api.replicate.com"
    created = a.parse_create(
        {"id": "abc", "status": "starting", "urls": {"get": f"{base}/v1/predictions/abc"}}
    )
    assert created == Created("abc", f"{base}/v1/predictions/abc")
    assert a.poll_request(base, created).url == f"{base}/v1/predictions/abc"
    # a urls.get on another origin would not get the key: poll by id on the API instead
    elsewhere = Created("abc", "https://evil.example/v1/predictions/abc")
    assert a.poll_request(base, elsewhere).url == f"{base}/v1/predictions/abc"
    assert a.parse_create({"status": "starting"}) is None


@pytest.mark.parametrize(
    "answer, state, outputs",
    [
        ({"status": "starting"}, HostState.RUNNING, ()),
        ({"status": "processing", "output": None}, HostState.RUNNING, ()),
        (
            {"status": "succeeded", "output": "https://r/o.png"},
            HostState.SUCCEEDED,
            ("https://r/o.png",),
        ),
        (
            {"status": "succeeded", "output": ["https://r/o.png"]},
            HostState.SUCCEEDED,
            ("https://r/o.png",),
        ),
        ({"status": "failed", "error": "CUDA out of memory"}, HostState.FAILED, ()),
        (
            {"status": "failed", "error": "The input or output was flagged as sensitive. (E005)"},
            HostState.MODERATED,
            (),
        ),
        ({"status": "canceled"}, HostState.CANCELED, ()),
        ({"status": "aborted"}, HostState.ABORTED, ()),
    ],
)
def test_replicate_status_vocabulary(answer, state, outputs):
    poll = ReplicateAdapter().parse_poll(answer)
    assert poll.state is state and poll.outputs == outputs
    assert poll.cost_usd is None
    if state.coarse == "failed":
        assert poll.error


def test_aborted_is_the_only_uncharged_state():
    assert [s for s in HostState if not s.charged] == [HostState.ABORTED]


def test_bfl_request_shape_and_polling_url():
    a = BflAdapter()
    req = a.create_request("https://api.bfl.ai", a.default_model, None, INPUTS)
    assert req.url == "https://api.bfl.ai/v1/flux-pro-1.0-depth"
    assert req.json is not None and req.json["control_image"] == "QUJD"  # raw base64
    assert req.json["prompt"] == "" and "input" not in req.json
    url_input = dict(INPUTS, control_image="https://img/x.jpg")
    assert a.create_request("https://api.bfl.ai", "m", None, url_input).json == url_input
    assert a.auth_headers("k") == {"x-key": "k"}
    created = a.parse_create(
        {"id": "t1", "polling_url": "https://api.us1.bfl.ai/v1/get_result?id=t1"}
    )
    assert created == Created("t1", "https://api.us1.bfl.ai/v1/get_result?id=t1")
    assert a.poll_request("https://api.bfl.ai", created).url == created.poll_url
    assert (
        a.poll_request("https://api.bfl.ai", Created("t1")).url
        == "https://api.bfl.ai/v1/get_result?id=t1"
    )


@pytest.mark.parametrize(
    "url, allowed",
    [
        ("https://api.bfl.ai/v1/get_result?id=1", True),
        ("https://api.us1.bfl.ai/v1/get_result?id=1", True),
        ("http://api.us1.bfl.ai/v1/get_result?id=1", False),  # never plain http off-origin
        ("https://bfl.ai.evil.example/x", False),
        ("https://evilbfl.ai/x", False),
    ],
)
def test_bfl_sends_its_key_only_within_its_domain(url, allowed):
    assert BflAdapter().key_allowed(url, "https://api.bfl.ai") is allowed


@pytest.mark.parametrize(
    "answer, state",
    [
        ({"id": "1", "status": "Pending"}, HostState.RUNNING),
        (
            {"id": "1", "status": "Ready", "result": {"sample": "https://d/s.jpg?sig=x"}},
            HostState.SUCCEEDED,
        ),
        ({"id": "1", "status": "Error", "details": {"message": "boom"}}, HostState.FAILED),
        ({"id": "1", "status": "Content Moderated"}, HostState.MODERATED),
        ({"id": "1", "status": "Request Moderated"}, HostState.MODERATED),
        ({"id": "1", "status": "Task not found"}, HostState.UNKNOWN),
        ({"id": "1", "status": "SomethingNew"}, HostState.RUNNING),
    ],
)
def test_bfl_status_vocabulary(answer, state):
    poll = BflAdapter().parse_poll(answer)
    assert poll.state is state
    if state is HostState.SUCCEEDED:
        assert poll.outputs == ("https://d/s.jpg?sig=x",)
    else:
        assert poll.outputs == ()
    if state.coarse == "failed":
        assert poll.error
    assert (
        BflAdapter().parse_poll({"status": "Error", "details": {"message": "boom"}}).error == "boom"
    )


def _resp(status: int, body: Any = None, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)


@pytest.mark.parametrize("name", sorted(ADAPTERS))
@pytest.mark.parametrize(
    "phase, status, kind",
    [
        ("create", 401, ErrorKind.AUTH),
        ("poll", 403, ErrorKind.AUTH),
        ("create", 402, ErrorKind.OUT_OF_CREDIT),
        ("create", 404, ErrorKind.MODEL_UNAVAILABLE),
        ("poll", 404, ErrorKind.UNKNOWN_PREDICTION),
        ("download", 404, ErrorKind.OUTPUT_EXPIRED),
        ("download", 410, ErrorKind.OUTPUT_EXPIRED),
        ("download", 403, ErrorKind.OUTPUT_EXPIRED),  # a signed URL past its expiry, not a bad key
        ("create", 422, ErrorKind.BAD_REQUEST),
        ("create", 400, ErrorKind.BAD_REQUEST),
        ("create", 429, ErrorKind.RATE_LIMITED),
        ("poll", 502, ErrorKind.TRANSIENT),
    ],
)
def test_error_mapping(name, phase, status, kind):
    error = adapter_for(name).classify(phase, _resp(status, {"detail": "the host says why"}))
    assert error.kind is kind and error.status == status
    assert error.message == "the host says why"
    assert error.retryable is (kind in (ErrorKind.RATE_LIMITED, ErrorKind.TRANSIENT))
    assert error.stops_account is (kind in (ErrorKind.AUTH, ErrorKind.OUT_OF_CREDIT))
    assert error.skips_host is (kind is ErrorKind.MODEL_UNAVAILABLE)
    assert error.uncertain is (status >= 500)


def test_retry_after_header_everywhere_and_replicate_body():
    for adapter in ADAPTERS.values():
        error = adapter.classify("create", _resp(429, {}, {"Retry-After": "7"}))
        assert error.retry_after == 7.0
    body = {
        "title": "Request was throttled",
        "status": 429,
        "retry_after": 3,
        "detail": "Request was throttled. Expected available in 3 seconds.",
    }
    assert ReplicateAdapter().classify("create", _resp(429, body)).retry_after == 3.0
    assert EachlabsAdapter().classify("create", _resp(429, body)).retry_after is None
    assert ReplicateAdapter().classify("create", _resp(402, {"retry_after": 3})).retry_after is None


def test_adapter_registry_and_published_limits():
    assert set(ADAPTERS) == {"eachlabs", "replicate", "bfl"}
    with pytest.raises(KeyError, match="known hosts: eachlabs, replicate, bfl"):
        adapter_for("fal")
    assert ReplicateAdapter.limits.creates_per_minute == 600
    assert ReplicateAdapter.limits.low_credit_creates_per_minute == 6
    assert BflAdapter.limits.max_in_flight == 24 and BflAdapter.limits.output_ttl_s == 600
    for adapter in ADAPTERS.values():
        assert adapter.limits.sources, adapter.name  # every published figure names its source
        assert "key" not in repr(adapter).lower()

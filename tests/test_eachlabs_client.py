"""The protocol client: tolerant parsing (pure functions) and, with respx, answer shapes and
failures the loopback server cannot produce (HTTP-date Retry-After, timeouts, cross-origin
redirects, odd JSON)."""

from __future__ import annotations

import asyncio
import email.utils
import time

import httpx
import pytest
import respx

from flux_depth_assets.providers.eachlabs.client import EachlabsClient
from flux_depth_assets.providers.eachlabs.pacing import RetryPolicy
from flux_depth_assets.providers.eachlabs.protocol import (
    EachlabsError,
    parse_prediction,
    parse_retry_after,
    prediction_id_from,
)

BASE = "https://api.eachlabs.test"
KEY = "client-test-key"


def run(coro):
    return asyncio.run(coro)


async def _with_client(fn, **kw):
    client = EachlabsClient(
        BASE, KEY, retry=kw.pop("retry", RetryPolicy(backoff_base_s=0.01)), **kw
    )
    try:
        return await fn(client)
    finally:
        await client.aclose()


# --------------------------------------------------------------------------- pure parsing


@pytest.mark.parametrize(
    "status,state",
    [
        ("processing", "running"),
        ("starting", "running"),
        ("queued", "running"),
        ("in_progress", "running"),
        ("", "running"),
        ("SUCCESS", "succeeded"),
        ("succeeded", "succeeded"),
        ("Ready", "succeeded"),
        ("failed", "failed"),
        ("error", "failed"),
        ("canceled", "failed"),
        ("cancelled", "failed"),
        ("Content Moderated", "failed"),
    ],
)
def test_statuses(status, state):
    assert parse_prediction({"status": status}).state == state


@pytest.mark.parametrize(
    "output,urls",
    [
        ("https://cdn.test/a.png", ["https://cdn.test/a.png"]),
        (
            ["https://cdn.test/a.png", "https://cdn.test/b.png"],
            ["https://cdn.test/a.png", "https://cdn.test/b.png"],
        ),
        ({"url": "https://cdn.test/a.png"}, ["https://cdn.test/a.png"]),
        ([{"image": "https://cdn.test/a.png"}], ["https://cdn.test/a.png"]),
        ("data:image/png;base64,AAAA", ["data:image/png;base64,AAAA"]),
        (None, []),
        ("", []),
        ("not a url", []),
        (42, []),
    ],
)
def test_output_shapes(output, urls):
    assert parse_prediction({"status": "success", "output": output}).outputs == urls


def test_unknown_fields_envelopes_errors_and_cost():
    state = parse_prediction(
        {
            "status": "success",
            "output": "https://x/y.png",
            "whatever": [1],
            "metrics": {"predict_time": 15.2, "cost": "0.06"},
            "logs": "...",
        }
    )
    assert state.state == "succeeded" and state.cost_usd == pytest.approx(0.06)
    assert state.metrics["predict_time"] == 15.2
    assert (
        parse_prediction({"data": {"status": "failed", "error": {"message": "NSFW"}}}).error
        == "NSFW"
    )
    assert parse_prediction({"status": "error"}).error == "prediction error"
    assert (
        parse_prediction({"status": "failed", "message": "out of memory"}).error == "out of memory"
    )
    assert parse_prediction({"status": "success", "cost": True}).cost_usd is None
    assert parse_prediction(["not", "a", "dict"]).state == "running"
    assert parse_prediction({"status": "failed", "error": "x" * 1000}).error.endswith("…")


def test_prediction_id_spellings():
    assert prediction_id_from({"predictionID": "a"}) == "a"
    assert prediction_id_from({"prediction_id": "b"}) == "b"
    assert prediction_id_from({"id": 12}) == "12"
    assert prediction_id_from({"data": {"predictionId": "c"}}) == "c"
    assert prediction_id_from({"status": "error", "message": "no credit"}) is None


def test_retry_after_parsing():
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("-4") == 0.0
    now = time.time()
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert 28 <= parse_retry_after(date, now=now) <= 31


def test_backoff_grows_with_jitter_and_retry_after_wins():
    import random

    policy, rng = RetryPolicy(backoff_base_s=0.5, backoff_max_s=4.0), random.Random(1)
    waits = [policy.delay(n, None, rng) for n in range(1, 7)]
    assert 0.25 <= waits[0] <= 0.5 and 2.0 <= waits[-1] <= 4.0
    assert all(3.0 <= policy.delay(1, 3.0, rng) <= 3.35 for _ in range(20))


# --------------------------------------------------------------------------- over respx


@respx.mock
def test_retry_after_http_date_is_honoured():
    when = email.utils.formatdate(time.time() + 2, usegmt=True)
    route = respx.post(f"{BASE}/v1/prediction/").mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": when}, json={"message": "slow down"}),
            httpx.Response(200, json={"status": "success", "predictionID": "p1"}),
        ]
    )
    waits: list[float] = []
    pid, attempts, status = run(
        _with_client(lambda c: c.create({"input": {}}, on_retry=lambda e, w: waits.append(w)))
    )
    assert (pid, attempts, status) == ("p1", 2, 200) and route.call_count == 2
    assert 0.9 <= waits[0] <= 2.5  # the date has one-second resolution


@respx.mock
def test_timeouts_are_retried_and_flagged_uncertain_for_creates():
    route = respx.post(f"{BASE}/v1/prediction/").mock(side_effect=httpx.ReadTimeout("slow"))
    with pytest.raises(EachlabsError) as info:
        run(
            _with_client(
                lambda c: c.create({"input": {}}),
                retry=RetryPolicy(max_retries=2, backoff_base_s=0.01),
            )
        )
    assert route.call_count == 3 and info.value.attempts == 3
    assert info.value.uncertain and info.value.status is None
    assert "ReadTimeout" in str(info.value) and "gave up after 3 attempts" in str(info.value)


@respx.mock
def test_connect_timeout_then_success():
    respx.get(f"{BASE}/v1/prediction/p1").mock(
        side_effect=[
            httpx.ConnectTimeout("no route"),
            httpx.Response(200, json={"status": "processing", "unexpected": {"a": 1}}),
        ]
    )
    state, attempts, _ = run(_with_client(lambda c: c.get("p1")))
    assert state.state == "running" and attempts == 2


@pytest.mark.parametrize(
    "status,body,expected",
    [
        (422, {"detail": [{"msg": "steps must be <= 50"}]}, "HTTP 422: steps must be <= 50"),
        (402, {"error": "insufficient credit"}, "HTTP 402: insufficient credit"),
        (403, "forbidden", "HTTP 403: forbidden"),
        (400, {"status": "error", "message": "bad control_image"}, "HTTP 400: bad control_image"),
    ],
)
@respx.mock
def test_client_errors_are_not_retried(status, body, expected):
    kwargs = {"json": body} if isinstance(body, dict) else {"text": body}
    route = respx.post(f"{BASE}/v1/prediction/").mock(return_value=httpx.Response(status, **kwargs))
    with pytest.raises(EachlabsError) as info:
        run(_with_client(lambda c: c.create({"input": {}})))
    assert route.call_count == 1 and info.value.status == status and not info.value.retryable
    assert str(info.value) == expected


@respx.mock
def test_create_answer_without_an_id():
    respx.post(f"{BASE}/v1/prediction/").mock(
        return_value=httpx.Response(200, json={"status": "error", "message": "model is warming up"})
    )
    with pytest.raises(EachlabsError, match="without a prediction id: model is warming up"):
        run(_with_client(lambda c: c.create({"input": {}})))


@respx.mock
def test_non_json_answer_is_a_clear_error():
    respx.get(f"{BASE}/v1/prediction/p1").mock(return_value=httpx.Response(200, text="<html>"))
    with pytest.raises(EachlabsError, match="not JSON"):
        run(_with_client(lambda c: c.get("p1")))


@respx.mock
def test_the_key_goes_only_to_the_api_origin():
    api = respx.get(f"{BASE}/outputs/a.png").mock(
        return_value=httpx.Response(
            302, headers={"Location": "https://cdn.elsewhere.test/signed/a.png?sig=1"}
        )
    )
    cdn = respx.get("https://cdn.elsewhere.test/signed/a.png").mock(
        return_value=httpx.Response(
            200, content=b"\x89PNG\r\n\x1a\n...", headers={"Content-Type": "image/png"}
        )
    )
    other = respx.get("https://other.test/b.png").mock(
        return_value=httpx.Response(200, content=b"x")
    )

    async def both(c):
        return await c.download(f"{BASE}/outputs/a.png"), await c.download(
            "https://other.test/b.png"
        )

    (data, ctype, _, status), _ = run(_with_client(both))
    assert data.startswith(b"\x89PNG") and ctype == "image/png" and status == 200
    assert api.calls[0].request.headers["X-API-Key"] == KEY  # same origin as the API
    assert "X-API-Key" not in cdn.calls[0].request.headers  # a redirect to another origin
    assert "X-API-Key" not in other.calls[0].request.headers  # an output host


@respx.mock
def test_a_create_is_never_turned_into_a_get_by_a_redirect():
    respx.post(f"{BASE}/v1/prediction/").mock(
        return_value=httpx.Response(302, headers={"Location": f"{BASE}/login"})
    )
    with pytest.raises(EachlabsError, match="refusing to turn it into a GET"):
        run(_with_client(lambda c: c.create({"input": {}})))


def test_data_uri_outputs_are_decoded_locally():
    data, ctype, attempts, _ = run(
        _with_client(lambda c: c.download("data:image/png;base64,iVBORw0KGgo="))
    )
    assert data.startswith(b"\x89PNG") and ctype == "image/png" and attempts == 0


def test_client_repr_hides_the_key():
    async def check(c):
        return repr(c), repr(c._key), str(c._key)

    texts = run(_with_client(check))
    assert all(KEY not in t for t in texts) and "redacted" in texts[0]

"""The loopback server speaks the Eachlabs protocol: paths, key, JSON shapes, statuses, knobs, stats."""

from __future__ import annotations

import base64
import io
import time

import httpx
import numpy as np
import pytest
from PIL import Image

from flux_depth_assets.fakeapi import build_parser, fake_api_process, main, running_fake_api
from tests.manual_clock import hold_predictions

KEY = {"X-API-Key": "any-key"}


def data_uri(size=(80, 60), fmt="JPEG") -> str:
    rng = np.random.default_rng(0)
    im = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB")
    buf = io.BytesIO()
    im.save(buf, format=fmt)
    mime = "jpeg" if fmt == "JPEG" else fmt.lower()
    return f"data:image/{mime};base64," + base64.b64encode(buf.getvalue()).decode()


def body(control=None, **inputs) -> dict:
    return {
        "model": "flux-depth-pro",
        "version": "0.0.1",
        "webhook_url": "",
        "input": {"control_image": control or data_uri(), "output_format": "png", **inputs},
    }


def create(client: httpx.Client, **kw) -> httpx.Response:
    return client.post("/v1/prediction/", json=body(**kw), headers=KEY)


def wait_done(client: httpx.Client, pid: str, timeout: float = 5.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = client.get(f"/v1/prediction/{pid}", headers=KEY).json()
        if answer["status"] not in ("starting", "processing"):
            return answer
        time.sleep(0.02)
    raise AssertionError("prediction did not finish")


def test_create_poll_download_round_trip():
    with running_fake_api(latency_s=0.3) as server, httpx.Client(base_url=server.base_url) as c:
        clock = hold_predictions(server)
        created = create(c, control=data_uri((90, 70)))
        assert created.status_code == 200
        answer = created.json()
        assert answer["status"] == "success" and answer["message"] and answer["predictionID"]
        pid = answer["predictionID"]
        first = c.get(f"/v1/prediction/{pid}", headers=KEY).json()
        assert first["status"] in ("starting", "processing") and first["output"] is None
        assert "control_image" not in first["input"]  # never echoes the (large) image back
        clock.advance(0.3)
        done = wait_done(c, pid)
        assert done["status"] == "success" and done["error"] is None
        assert done["metrics"]["predict_time"] == pytest.approx(0.3, abs=0.01)
        assert done["output"] == f"{server.base_url}/outputs/{pid}.png"
        image = c.get(done["output"])  # no key needed, like a signed URL
        assert image.status_code == 200 and image.headers["content-type"] == "image/png"
        with Image.open(io.BytesIO(image.content)) as im:
            assert im.size == (90, 70) and im.mode == "L"
            depth = np.asarray(im, dtype=np.float32)
        assert depth[-10:].mean() > depth[:10].mean()  # white = near = bottom of the frame
        stats = c.get("/stats").json()
    assert stats["creates"] == 1 and stats["polls"] >= 2 and stats["downloads"] == 1
    assert stats["charged_usd"] == pytest.approx(0.05)
    assert list(stats["creates_per_image"].values()) == [1]


def test_trailing_slash_is_optional_and_jpg_output():
    with running_fake_api(latency_s=0.0) as server, httpx.Client(base_url=server.base_url) as c:
        r = c.post("/v1/prediction", json=body(output_format="jpg"), headers=KEY)
        done = wait_done(c, r.json()["predictionID"])
        assert done["output"].endswith(".jpg")
        assert c.get(done["output"]).headers["content-type"] == "image/jpeg"


def test_key_is_required():
    with (
        running_fake_api(api_keys={"good"}, echo_key_in_errors=True) as server,
        httpx.Client(base_url=server.base_url) as c,
    ):
        missing = c.post("/v1/prediction/", json=body())
        assert missing.status_code == 401 and "X-API-Key" in missing.json()["message"]
        wrong = c.post("/v1/prediction/", json=body(), headers={"X-API-Key": "bad-key-1"})
        assert wrong.status_code == 401 and "bad-key-1" in wrong.json()["message"]  # careless host
        assert c.get("/v1/prediction/anything").status_code == 401
        assert (
            c.post("/v1/prediction/", json=body(), headers={"X-API-Key": "good"}).status_code == 200
        )
        assert server.stats()["unauthorized"] == 3


@pytest.mark.parametrize(
    "change,status,words",
    [
        ({"model": "other-model"}, 404, "not found"),
        ({"input": {"control_image": "x", "steps": 60}}, 422, "steps"),
        ({"input": {"control_image": "x", "guidance": 0}}, 422, "guidance"),
        ({"input": {"control_image": "x", "safety_tolerance": 7}}, 422, "safety_tolerance"),
        ({"input": {"control_image": "x", "output_format": "gif"}}, 422, "output_format"),
        ({"input": {"control_image": "x", "seed": "7"}}, 422, "seed"),
        ({"input": {"prompt": "no image"}}, 422, "control_image"),
        ({"input": {"control_image": "data:image/png;base64,!!!"}}, 400, "base64"),
        (
            {"input": {"control_image": "data:image/png;base64,aGVsbG8="}},
            400,
            "could not be decoded",
        ),
        ({"input": {"control_image": "ftp://x/y.png"}}, 400, "http(s)"),
    ],
)
def test_bad_inputs(change, status, words):
    with running_fake_api() as server, httpx.Client(base_url=server.base_url) as c:
        r = c.post("/v1/prediction/", json={**body(), **change}, headers=KEY)
        assert r.status_code == status and words in r.json()["message"]
        assert r.json()["status"] == "error"
        assert server.stats()["creates"] == 0


def test_images_over_4_megapixels_are_refused():
    with running_fake_api() as server, httpx.Client(base_url=server.base_url, timeout=30) as c:
        r = create(c, control=data_uri((2200, 2000)))
        assert r.status_code == 400 and "pixels" in r.json()["message"]


def test_unknown_prediction_and_output_are_404():
    with running_fake_api() as server, httpx.Client(base_url=server.base_url) as c:
        assert c.get("/v1/prediction/nope", headers=KEY).status_code == 404
        assert c.get("/outputs/nope.png").status_code == 404


def test_output_is_not_served_before_success():
    with running_fake_api(latency_s=2.0) as server, httpx.Client(base_url=server.base_url) as c:
        hold_predictions(server)  # never done: whatever the machine's speed
        pid = create(c).json()["predictionID"]
        assert c.get(f"/outputs/{pid}.png").status_code == 404


def test_rate_limit_answers_429_with_retry_after():
    with running_fake_api(rate_limit=2) as server, httpx.Client(base_url=server.base_url) as c:
        codes = [c.get("/v1/prediction/x", headers=KEY) for _ in range(4)]
        assert [r.status_code for r in codes] == [404, 404, 429, 429]
        assert int(codes[2].headers["Retry-After"]) >= 1
        assert c.get("/stats").json()["rate_limited"] == 2  # /stats itself is not limited


def test_error_rate_answers_500_and_502():
    with running_fake_api(error_rate=1.0) as server, httpx.Client(base_url=server.base_url) as c:
        codes = {c.get("/v1/prediction/x", headers=KEY).status_code for _ in range(30)}
        assert codes == {500, 502}


def test_fail_ratio_is_deterministic_per_seed():
    def outcomes(seed):
        with (
            running_fake_api(latency_s=0.0, fail_ratio=0.5, seed=seed) as server,
            httpx.Client(base_url=server.base_url) as c,
        ):
            pids = [
                create(c, control=data_uri((20 + i, 20))).json()["predictionID"] for i in range(12)
            ]
            return [wait_done(c, pid)["status"] for pid in pids]

    first = outcomes(1)
    assert first == outcomes(1) and {"success", "failed"} <= set(first)


def test_failed_prediction_shape():
    with (
        running_fake_api(latency_s=0.0, fail_ratio=1.0) as server,
        httpx.Client(base_url=server.base_url) as c,
    ):
        done = wait_done(c, create(c).json()["predictionID"])
        assert (
            done["status"] == "failed" and done["output"] is None and "simulated" in done["error"]
        )
        assert server.stats()["failed_predictions"] == 1


def test_list_output_and_reported_cost():
    with (
        running_fake_api(
            latency_s=0.0, output_style="list", report_cost=True, price_usd=0.1
        ) as server,
        httpx.Client(base_url=server.base_url) as c,
    ):
        done = wait_done(c, create(c).json()["predictionID"])
        assert isinstance(done["output"], list) and done["cost"] == 0.1


def test_a_prompt_gives_an_rgb_render():
    with running_fake_api(latency_s=0.0) as server, httpx.Client(base_url=server.base_url) as c:
        done = wait_done(c, create(c, prompt="a cosy attic").json()["predictionID"])
        with Image.open(io.BytesIO(c.get(done["output"]).content)) as im:
            assert im.mode == "RGB"


def test_loopback_urls_are_fetched_and_others_are_not():
    with running_fake_api(latency_s=0.0) as server, httpx.Client(base_url=server.base_url) as c:
        # an image served by the fake itself: fetched over loopback
        first = wait_done(c, create(c).json()["predictionID"])
        r = create(c, control=first["output"])
        assert r.status_code == 200
        # a public URL is never fetched (no network in tests): a gradient stands in for it
        r = create(c, control="https://images.example.com/photo.jpg")
        assert r.status_code == 200
        done = wait_done(c, r.json()["predictionID"])
        with Image.open(io.BytesIO(c.get(done["output"]).content)) as im:
            assert im.size == (512, 512)


def test_counts_predictions_running_at_once():
    with running_fake_api(latency_s=0.5) as server, httpx.Client(base_url=server.base_url) as c:
        clock = hold_predictions(server)
        for i in range(3):
            create(c, control=data_uri((20 + i, 20)))
        stats = server.stats()
        assert stats["active_predictions"] == 3 and stats["max_active_predictions"] == 3
        clock.advance(0.6)
        create(c)
        stats = server.stats()
        assert stats["active_predictions"] == 1 and stats["max_active_predictions"] == 3
        assert stats["max_inflight_requests"] == 1


def test_cli_flags():
    args = build_parser().parse_args(
        [
            "--port",
            "0",
            "--latency",
            "1.5",
            "--fail-ratio",
            "0.1",
            "--rate-limit",
            "20",
            "--error-rate",
            "0.05",
        ]
    )
    assert (args.port, args.latency_s, args.fail_ratio, args.rate_limit, args.error_rate) == (
        0,
        1.5,
        0.1,
        20.0,
        0.05,
    )
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    assert main(["--port", "0", "--fail-ratio", "2"]) == 2  # refused, with a message


@pytest.mark.slow
def test_runs_as_a_subprocess():
    with fake_api_process(latency_s=0.1, extra_args=["--api-key", "k1"]) as server:
        with httpx.Client(base_url=server.base_url) as c:
            assert c.get("/").json()["status"] == "ok"
            assert (
                c.post("/v1/prediction/", json=body(), headers={"X-API-Key": "zz"}).status_code
                == 401
            )
            pid = c.post("/v1/prediction/", json=body(), headers={"X-API-Key": "k1"}).json()[
                "predictionID"
            ]
        assert server.stats()["creates"] == 1 and pid
    assert server.process.returncode is not None  # stopped on exit

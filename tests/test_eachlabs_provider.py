"""The eachlabs provider end to end over real HTTP against the loopback server (in-process).

Each test starts its own fake host on a free 127.0.0.1 port and a fresh storage root; latencies
are a fraction of a second so the module stays quick.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import socket
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from flux_depth_assets.config.models import EachlabsParams, EachlabsProviderConfig
from flux_depth_assets.fakeapi import running_fake_api
from flux_depth_assets.providers.base import ProviderInput
from flux_depth_assets.providers.eachlabs import (
    EachlabsNotReady,
    EachlabsProvider,
    JournalEntry,
    PredictionJournal,
    RetryPolicy,
)
from flux_depth_assets.providers.eachlabs.client import EachlabsClient
from flux_depth_assets.providers.eachlabs.images import prepare_control_image
from flux_depth_assets.providers.eachlabs.pacing import PollScheduler
from flux_depth_assets.storage.store import Storage
from tests.manual_clock import hold_predictions

FAST_RETRY = RetryPolicy(max_retries=4, backoff_base_s=0.01, backoff_max_s=0.05)


# --------------------------------------------------------------------------- helpers (shared)


def make_image(i: int, size: tuple[int, int] = (64, 48)) -> Image.Image:
    rng = np.random.default_rng(1000 + i)
    small = rng.integers(0, 256, size=(size[1] // 8 + 1, size[0] // 8 + 1, 3), dtype=np.uint8)
    return Image.fromarray(small, "RGB").resize(size, Image.Resampling.BILINEAR)


def make_items(
    provider: EachlabsProvider,
    n: int,
    size: tuple[int, int] = (64, 48),
    source_uri: str = "",
    first: int = 0,
) -> list[ProviderInput]:
    items = []
    for i in range(first, first + n):
        im = make_image(i, size)
        sha = hashlib.sha256(im.tobytes()).hexdigest()
        items.append(
            ProviderInput(
                image_id=f"img-{i:03d}",
                source_sha256=sha,
                cache_key=provider.cache_key(sha),
                load_image=lambda im=im: im.copy(),  # type: ignore[misc]
                source_uri=source_uri,
            )
        )
    return items


def make_provider(
    base_url: str,
    storage: Storage | None,
    key: str | None = "test-key",
    retry: RetryPolicy = FAST_RETRY,
    progress_interval_s: float = 0.2,
    **config,
) -> EachlabsProvider:
    settings: dict[str, Any] = dict(
        poll_interval_s=0.05, max_concurrency=4, timeout_s=5.0, prediction_deadline_s=30.0
    )
    settings.update(config)
    return EachlabsProvider(
        EachlabsProviderConfig(**settings),
        api_key=key,
        base_url_override=base_url,
        journal_storage=storage,
        retry=retry,
        progress_interval_s=progress_interval_s,
        seed=7,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def storage(tmp_path) -> Storage:
    return Storage(str(tmp_path / "root"))


def journal_keys(storage: Storage) -> list[str]:
    return PredictionJournal(storage).keys()


# --------------------------------------------------------------------------- happy paths


def test_happy_path_depth(storage):
    with running_fake_api(latency_s=0.2) as server:
        provider = make_provider(server.base_url, storage)
        items = make_items(provider, 5)
        lines: list[str] = []
        preds = provider.predict_many(items, progress=lines.append)
        stats = server.stats()
    assert [p.image_id for p in preds] == [i.image_id for i in items]
    for p in preds:
        assert p.status == "succeeded", p.error
        assert p.depth is not None and p.depth.dtype == np.float32 and p.depth.shape == (48, 64)
        assert 0.0 <= float(p.depth.min()) and float(p.depth.max()) <= 1.0
        # the fake's depth is mostly a ground-plane ramp: larger = nearer at the bottom
        assert p.depth[-8:].mean() > p.depth[:8].mean()
        assert p.prediction_id and p.attempts == 1 and p.http_status == 200
        assert p.cost_usd == pytest.approx(0.05)
        assert p.render_bytes is None and p.error is None
        assert p.extra["created"] and not p.extra["resumed"] and p.extra["polls"] >= 1
        assert p.latency_s > 0.15
    assert stats["creates"] == 5 and sorted(stats["creates_per_image"].values()) == [1] * 5
    assert stats["charged_usd"] == pytest.approx(0.25)
    assert stats["unauthorized"] == 0
    # kept until the caller says the results are durable (cached), then cleared
    assert len(journal_keys(storage)) == 5
    provider.settle([i.cache_key for i in items])
    assert journal_keys(storage) == []
    assert "finished 5/5" in lines[-1] and "$0.25" in lines[-1]


@pytest.mark.parametrize("fmt", ["png", "jpg"])
def test_render_mode_returns_the_bytes(storage, fmt):
    with running_fake_api(latency_s=0.1) as server:
        provider = make_provider(
            server.base_url,
            storage,
            mode="render",
            params=EachlabsParams(prompt="a sunlit loft", output_format=fmt),
        )
        preds = provider.predict_many(make_items(provider, 2))
    for p in preds:
        assert p.status == "succeeded", p.error
        assert p.depth is None and p.render_format == fmt
        with Image.open(io.BytesIO(p.render_bytes)) as im:
            assert im.mode == "RGB" and im.size == (64, 48)


def test_output_as_a_list_and_host_reported_cost(storage):
    with running_fake_api(
        latency_s=0.1, output_style="list", report_cost=True, price_usd=0.07
    ) as server:
        provider = make_provider(server.base_url, storage)
        preds = provider.predict_many(make_items(provider, 2))
    for p in preds:
        assert p.status == "succeeded", p.error
        assert p.cost_usd == pytest.approx(0.07)  # the host's figure wins over price_usd
        assert p.extra["host_cost_usd"] == pytest.approx(0.07)


def test_large_images_are_downscaled_to_4_megapixels(storage):
    with running_fake_api(latency_s=0.1) as server:  # the fake rejects > 4 MiB pixels
        provider = make_provider(server.base_url, storage)
        [item] = make_items(provider, 1, size=(2600, 1700))  # 4.42 MP
        [pred] = provider.predict_many([item])
    assert pred.status == "succeeded", pred.error
    w, h = pred.extra["sent_size"]
    assert w * h <= 4_000_000 and abs(w / h - 2600 / 1700) < 0.01
    assert pred.depth.shape == (1700, 2600)  # back at the source size


def test_prepare_control_image_keeps_small_images_and_aspect():
    uri, size = prepare_control_image(make_image(0, (300, 200)))
    assert uri.startswith("data:image/jpeg;base64,") and size == (300, 200)
    _, size = prepare_control_image(Image.new("RGB", (4000, 1000)))
    assert size[0] * size[1] <= 4_000_000 and abs(size[0] / size[1] - 4.0) < 0.01


def test_source_url_transport_sends_the_url(storage):
    with running_fake_api(latency_s=0.1) as server:
        provider = make_provider(server.base_url, storage, image_transport="source_url")
        # a public http(s) source: the fake does not fetch non-loopback URLs (gradient instead)
        items = make_items(
            provider, 1, size=(512, 512), source_uri="https://images.example.com/a.jpg"
        )
        items += make_items(provider, 1, first=1, source_uri="s3://bucket/b.jpg")
        # a url_manifest URL stored without its credentials/signature: the host gets the bytes
        hidden = "https://images.example.com/c.jpg#url-sha256=0123456789abcdef"
        items += make_items(provider, 1, first=2, source_uri=hidden)
        preds = provider.predict_many(items)
        stats = server.stats()
    assert [p.status for p in preds] == ["succeeded"] * 3
    assert preds[0].extra["transport"] == "source_url" and preds[0].depth.shape == (512, 512)
    assert preds[1].extra["transport"] == "data_uri"  # s3:// is not a URL the host can fetch
    assert preds[2].extra["transport"] == "data_uri"
    assert any(k.startswith("url:") for k in stats["creates_per_image"])


def test_predict_many_from_inside_a_running_event_loop(storage):
    with running_fake_api(latency_s=0.05) as server:
        provider = make_provider(server.base_url, storage)
        items = make_items(provider, 1)

        async def notebook_cell():
            return provider.predict_many(items)

        [pred] = asyncio.run(notebook_cell())
    assert pred.status == "succeeded"


def test_progress_lines_while_in_flight(storage):
    with running_fake_api(latency_s=0.6) as server:
        clock = hold_predictions(server)  # they finish only once a progress line was seen
        provider = make_provider(server.base_url, storage, progress_interval_s=0.1)
        lines: list[str] = []

        def progress(line: str) -> None:
            lines.append(line)
            if "in flight" in line:
                clock.advance(0.6)

        provider.predict_many(make_items(provider, 3), progress=progress)
    ticks = [line for line in lines if "in flight" in line]
    assert ticks, lines
    assert "/3 done" in ticks[0] and "retries" in ticks[0] and "$0.15 so far" in ticks[-1]


def test_cache_key_depends_on_host_model_and_params():
    a = make_provider("http://127.0.0.1:1", None)
    assert a.cache_key("x" * 64) == make_provider("http://127.0.0.1:1", None).cache_key("x" * 64)
    assert a.cache_key("x" * 64) != make_provider("https://api.eachlabs.ai", None).cache_key(
        "x" * 64
    )
    assert a.cache_key("x" * 64) != make_provider(
        "http://127.0.0.1:1", None, params=EachlabsParams(steps=20)
    ).cache_key("x" * 64)
    assert a.cache_key("x" * 64) != make_provider(
        "http://127.0.0.1:1", None, mode="render"
    ).cache_key("x" * 64)


# --------------------------------------------------------------------------- errors and retries


def test_missing_key_fails_before_anything_is_sent(storage):
    with running_fake_api(latency_s=0.05) as server:
        provider = make_provider(server.base_url, storage, key=None)
        with pytest.raises(EachlabsNotReady, match="EACHLABS_API_KEY"):
            provider.check_ready()
        with pytest.raises(EachlabsNotReady, match="EACHLABS_API_KEY"):
            provider.predict_many(make_items(provider, 2))
        assert server.stats()["requests"] == 0
    for bad in ("   ", "abc-123\nxyz-789", "abc-123 ", "abc\x00def"):
        with pytest.raises(EachlabsNotReady, match="EACHLABS_API_KEY") as info:
            make_provider("http://x", None, key=bad).check_ready()
        assert "Nothing was sent" in str(info.value) and "abc" not in str(info.value)


def test_429_retry_after_is_honoured(storage):
    with running_fake_api(latency_s=0.2, rate_limit=3) as server:
        provider = make_provider(server.base_url, storage, max_concurrency=6)
        preds = provider.predict_many(make_items(provider, 6))
        stats = server.stats()
    assert all(p.status == "succeeded" for p in preds), [p.error for p in preds]
    assert stats["rate_limited"] > 0
    retried = [p for p in preds if p.extra["retries"]]
    assert retried
    for p in retried:  # the fake says Retry-After: 1 (seconds); never retried sooner
        assert p.extra["retry_wait_s"] >= 1.0 * p.extra["retries"]
    assert stats["creates"] == 6  # a 429 creates nothing: no image paid twice


def test_500_and_502_are_retried(storage):
    with running_fake_api(latency_s=0.1, error_rate=0.3, seed=3) as server:
        # Which request draws an error depends on how the requests interleave; with 12 retries a
        # give-up (0.3^13 per request) never happens, whatever the machine's load.
        patient = RetryPolicy(max_retries=12, backoff_base_s=0.01, backoff_max_s=0.05)
        provider = make_provider(server.base_url, storage, retry=patient)
        preds = provider.predict_many(make_items(provider, 8))
        stats = server.stats()
    assert all(p.status == "succeeded" for p in preds), [p.error for p in preds]
    assert stats["injected_errors"] > 0
    assert sum(p.extra["retries"] for p in preds) == stats["injected_errors"]
    assert (
        stats["status_counts"].get("500", 0) + stats["status_counts"].get("502", 0)
        == stats["injected_errors"]
    )
    assert stats["creates"] == 8
    assert any(p.attempts > 1 for p in preds) or any(p.extra["polls"] > 1 for p in preds)


def test_401_is_not_retried_and_stops_new_creates(storage):
    with running_fake_api(latency_s=0.05, api_keys={"the-right-key"}) as server:
        provider = make_provider(server.base_url, storage, key="a-wrong-key", max_concurrency=1)
        preds = provider.predict_many(make_items(provider, 3))
        stats = server.stats()
    first, *rest = preds
    assert first.status == "failed" and first.http_status == 401 and first.attempts == 1
    assert "HTTP 401" in first.error and "invalid API key" in first.error
    assert first.cost_usd == 0 and first.prediction_id is None
    for p in rest:
        assert p.status == "failed" and "not sent" in p.error and "HTTP 401" in p.error
    assert stats["api_requests"] == 1 and stats["creates"] == 0


def test_400_is_not_retried_and_says_why(storage):
    with running_fake_api(latency_s=0.05) as server:
        provider = make_provider(server.base_url, storage, image_transport="source_url")
        # a loopback "image" URL the fake fetches and cannot decode (its JSON stats page)
        [pred] = provider.predict_many(
            make_items(provider, 1, source_uri=f"{server.base_url}/stats")
        )
        stats = server.stats()
    assert pred.status == "failed" and pred.http_status == 400 and pred.attempts == 1
    assert "HTTP 400" in pred.error and "could not be decoded" in pred.error
    assert pred.cost_usd == 0 and stats["creates"] == 0 and stats["rejected_inputs"] == 1


def test_unknown_model_404_is_not_retried(storage):
    with running_fake_api(latency_s=0.05) as server:
        provider = make_provider(server.base_url, storage, model="flux-depth-nope")
        [pred] = provider.predict_many(make_items(provider, 1))
    assert pred.status == "failed" and pred.http_status == 404 and pred.attempts == 1
    assert "flux-depth-nope" in pred.error


def test_failed_prediction_is_recorded_not_retried(storage):
    with running_fake_api(latency_s=0.1, fail_ratio=1.0) as server:
        provider = make_provider(server.base_url, storage)
        items = make_items(provider, 3)
        preds = provider.predict_many(items)
        stats = server.stats()
    for p in preds:
        assert p.status == "failed" and p.depth is None
        assert "failed" in p.error and "simulated" in p.error  # the host's own message
        assert p.prediction_id and p.attempts == 1
        assert p.cost_usd == pytest.approx(0.05)  # charged unless the host says otherwise
    assert stats["creates"] == 3
    provider.settle([i.cache_key for i in items])
    assert journal_keys(storage) == []  # final: a later run may try again


def test_connection_errors_are_retried_then_reported(storage):
    provider = make_provider(
        f"http://127.0.0.1:{free_port()}",
        storage,
        retry=RetryPolicy(max_retries=2, backoff_base_s=0.01),
    )
    [pred] = provider.predict_many(make_items(provider, 1))
    assert pred.status == "failed" and pred.http_status is None and pred.attempts == 3
    assert "ConnectError" in pred.error and "gave up after 3 attempts" in pred.error
    assert pred.cost_usd == 0


def test_deadline_keeps_the_prediction_journaled_and_the_next_run_resumes_it(storage):
    with running_fake_api(latency_s=1.5) as server:
        clock = hold_predictions(server)  # not done before the deadline, however slow the run
        provider = make_provider(server.base_url, storage, prediction_deadline_s=0.4)
        items = make_items(provider, 2)
        first = provider.predict_many(items)
        for p in first:
            assert p.status == "failed" and "prediction_deadline_s" in p.error
            assert "journaled" in p.error and p.cost_usd == pytest.approx(0.05)
            assert p.latency_s >= 0.35  # it waited for the deadline
        assert sorted(journal_keys(storage)) == sorted(i.cache_key for i in items)
        provider.settle([i.cache_key for i in items])  # not final: they stay journaled
        assert len(journal_keys(storage)) == 2
        clock.advance(1.5)

        second = make_provider(server.base_url, storage, prediction_deadline_s=10)
        again = second.predict_many(items)
        stats = server.stats()
    assert stats["creates"] == 2  # nothing paid twice
    for before, after in zip(first, again):
        assert after.status == "succeeded", after.error
        assert after.prediction_id == before.prediction_id
        assert after.extra["resumed"] and not after.extra["created"]
        assert after.cost_usd == 0 and after.attempts == 0
        assert after.extra["journaled_predictions"] == {before.prediction_id: 0.05}
    second.settle([i.cache_key for i in items])
    assert journal_keys(storage) == []


def test_concurrency_never_above_max_concurrency(storage):
    with running_fake_api(latency_s=0.25) as server:
        provider = make_provider(server.base_url, storage, max_concurrency=3)
        preds = provider.predict_many(make_items(provider, 12))
        stats = server.stats()
    assert all(p.status == "succeeded" for p in preds)
    assert stats["max_active_predictions"] == 3  # reached, never passed
    assert stats["max_inflight_requests"] <= 3


def test_requests_per_second_spaces_api_calls(storage):
    with running_fake_api(latency_s=0.0, rate_limit=5) as server:
        provider = make_provider(server.base_url, storage, max_concurrency=8, requests_per_second=4)
        preds = provider.predict_many(make_items(provider, 6))
        stats = server.stats()
    assert all(p.status == "succeeded" for p in preds)
    assert stats["rate_limited"] == 0  # the client kept under the host's limit by itself


# --------------------------------------------------------------------------- the journal


def test_journal_is_written_before_the_first_poll(storage, monkeypatch):
    seen: list[bool] = []
    original = EachlabsClient.get

    async def checking_get(self, prediction_id, **kw):
        journal = PredictionJournal(storage)
        ids = {journal.get(k).prediction_id for k in journal.keys()}  # noqa: SIM118 - not a dict
        seen.append(prediction_id in ids)
        return await original(self, prediction_id, **kw)

    monkeypatch.setattr(EachlabsClient, "get", checking_get)
    with running_fake_api(latency_s=0.1) as server:
        provider = make_provider(server.base_url, storage)
        preds = provider.predict_many(make_items(provider, 3))
    assert all(p.status == "succeeded" for p in preds)
    assert seen and all(seen)


def _create_directly(base_url: str, image: Image.Image) -> str:
    uri, _ = prepare_control_image(image)
    answer = httpx.post(
        f"{base_url}/v1/prediction/",
        headers={"X-API-Key": "k"},
        json={
            "model": "flux-depth-pro",
            "version": "0.0.1",
            "webhook_url": "",
            "input": {"control_image": uri, "output_format": "png"},
        },
    )
    answer.raise_for_status()
    return answer.json()["predictionID"]


def _journal(
    storage: Storage, provider: EachlabsProvider, item: ProviderInput, pid: str, **fields
) -> None:
    entry = JournalEntry(
        cache_key=item.cache_key,
        image_id=item.image_id,
        prediction_id=pid,
        host=httpx.URL(provider.base_url).netloc.decode(),
        model="flux-depth-pro",
        version="0.0.1",
        **fields,
    )
    PredictionJournal(storage).write(entry)


def test_a_journaled_prediction_is_polled_not_created_again(storage):
    with running_fake_api(latency_s=0.3) as server:
        provider = make_provider(server.base_url, storage)
        items = make_items(provider, 3)
        pid = _create_directly(server.base_url, items[0].load_image())
        _journal(storage, provider, items[0], pid)
        preds = provider.predict_many(items)
        stats = server.stats()
    assert all(p.status == "succeeded" for p in preds)
    assert preds[0].prediction_id == pid and preds[0].extra["resumed"]
    assert preds[0].cost_usd == 0 and preds[0].attempts == 0
    assert [p.cost_usd for p in preds[1:]] == [0.05, 0.05]
    assert stats["creates"] == 3 and sorted(stats["creates_per_image"].values()) == [1, 1, 1]
    provider.settle([i.cache_key for i in items])
    assert journal_keys(storage) == []


def test_a_journaled_id_unknown_to_the_host_is_created_again_and_recorded(storage):
    with running_fake_api(latency_s=0.1) as server:
        provider = make_provider(server.base_url, storage)
        [item] = make_items(provider, 1)
        _journal(storage, provider, item, "gone-123")
        lines: list[str] = []
        [pred] = provider.predict_many([item], progress=lines.append)
        stats = server.stats()
    assert pred.status == "succeeded" and pred.prediction_id != "gone-123"
    assert pred.extra["replaced_prediction_ids"] == ["gone-123"]
    assert "404" in pred.extra["replaced_because"]
    assert pred.cost_usd == pytest.approx(0.05) and stats["creates"] == 1
    assert any("gone-123" in line and "creating a new prediction" in line for line in lines)


def test_a_journaled_prediction_that_failed_is_created_again_and_recorded(storage):
    with running_fake_api(latency_s=0.05, fail_ratio=1.0) as server:
        provider = make_provider(server.base_url, storage)
        [item] = make_items(provider, 1)
        pid = _create_directly(server.base_url, item.load_image())
        _journal(storage, provider, item, pid)
        [pred] = provider.predict_many([item])
        stats = server.stats()
    assert pred.extra["replaced_prediction_ids"] == [pid]
    assert "failed" in pred.extra["replaced_because"]
    assert pred.status == "failed" and "simulated" in pred.error  # the new one failed too
    assert stats["creates"] == 2


def test_a_downloaded_output_in_the_journal_is_used_without_calling_the_host(storage):
    offline = f"http://127.0.0.1:{free_port()}"  # nothing listens: any request would fail
    provider = make_provider(offline, storage)
    [item] = make_items(provider, 1)
    depth = Image.fromarray(np.tile(np.linspace(0, 255, 48, dtype=np.uint8)[:, None], (1, 64)))
    buf = io.BytesIO()
    depth.save(buf, format="PNG")
    entry = JournalEntry(
        cache_key=item.cache_key,
        image_id=item.image_id,
        prediction_id="p-1",
        host=httpx.URL(offline).netloc.decode(),
        model="flux-depth-pro",
        version="0.0.1",
    )
    PredictionJournal(storage).record_output(entry, buf.getvalue(), "image/png")
    [pred] = provider.predict_many([item])
    assert pred.status == "succeeded" and pred.prediction_id == "p-1" and pred.cost_usd == 0
    assert pred.extra["resumed"] and pred.depth.shape == (48, 64)
    assert pred.depth[-1].mean() > pred.depth[0].mean()
    provider.settle([item.cache_key])
    assert journal_keys(storage) == []


def test_journal_entries_of_another_host_are_ignored(storage):
    with running_fake_api(latency_s=0.05) as server:
        provider = make_provider(server.base_url, storage)
        [item] = make_items(provider, 1)
        entry = JournalEntry(
            cache_key=item.cache_key,
            image_id=item.image_id,
            prediction_id="x",
            host="api.eachlabs.ai",
            model="flux-depth-pro",
            version="0.0.1",
        )
        PredictionJournal(storage).write(entry)
        [pred] = provider.predict_many([item])
    assert pred.status == "succeeded" and not pred.extra["resumed"]


def test_journal_defaults_to_flux_depth_home(tmp_path):
    with running_fake_api(latency_s=0.3) as server:
        hold_predictions(server)  # never done: the deadline always journals it
        provider = make_provider(server.base_url, None, prediction_deadline_s=0.1)
        provider.predict_many(make_items(provider, 1))
    assert PredictionJournal(Storage(str(tmp_path / "home"))).keys()  # conftest's FLUX_DEPTH_HOME


# --------------------------------------------------------------------------- the poll scheduler


def test_poll_scheduler_tracks_a_quantile_of_the_run_time():
    sched = PollScheduler(interval_s=0.25, share=0.8)
    assert sched.first_delay() == 0.25
    sched.observe(1.8, 2.05)  # the first one sets the estimate
    assert sched.first_delay() == pytest.approx(2.05)
    rng = np.random.default_rng(0)
    for _ in range(400):  # run times uniform in [2, 3]: the 80th percentile is 2.8
        run_time = rng.uniform(2.0, 3.0)
        first = sched.first_delay()
        if run_time <= first:
            sched.observe(None, first)
        else:
            polls = np.ceil((run_time - first) / 0.25)
            sched.observe(first + (polls - 1) * 0.25, first + polls * 0.25)
    assert 2.5 < sched.first_delay() < 3.1
    for _ in range(40):  # the host gets faster: done at every first poll, the estimate walks down
        sched.observe(None, sched.first_delay())
    assert sched.first_delay() < 1.2


def test_an_image_listed_twice_is_paid_once(storage):
    with running_fake_api(latency_s=0.05) as server:
        provider = make_provider(server.base_url, storage)
        [a, b] = make_items(provider, 2)
        twin = ProviderInput(
            image_id="img-copy",
            source_sha256=a.source_sha256,
            cache_key=a.cache_key,
            load_image=a.load_image,
        )
        preds = provider.predict_many([a, twin, b])
        stats = server.stats()
    assert [p.image_id for p in preds] == ["img-000", "img-copy", "img-001"]
    assert all(p.status == "succeeded" for p in preds)
    assert preds[1].extra["same_as"] == "img-000" and preds[1].cost_usd == 0
    assert preds[1].prediction_id == preds[0].prediction_id
    assert stats["creates"] == 2

"""The pieces the paid path stands on: the catalog lease, the depth-result check and its breaker,
secret renderings, never retrying what cannot succeed, and uncertain creates in lineage."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from flux_depth_assets.providers.result_check import (
    ResultBreaker,
    check_depth_result,
)
from flux_depth_assets.redaction import mask, renderings, unsafe_key_problem
from flux_depth_assets.storage.lease import CatalogLease, Holder, LeaseBusy, _this_process
from flux_depth_assets.storage.store import Storage

REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- the lease


def _lease_roundtrip(store: Storage) -> None:
    first = CatalogLease(store, "shop", run_id="run-a", wait_s=0).acquire()
    with pytest.raises(LeaseBusy) as info:
        CatalogLease(store, "shop", run_id="run-b", wait_s=0).acquire()
    message = str(info.value)
    assert "\n" not in message and "run-a" in message and "Nothing was sent" in message
    CatalogLease(store, "other", wait_s=0).acquire().release()  # per catalog
    first.release()
    with CatalogLease(store, "shop", run_id="run-b", wait_s=0) as second:
        assert second.generation is not None
    assert store.list("leases/shop") == []


def test_lease_is_exclusive_per_catalog_on_a_local_root(tmp_path):
    _lease_roundtrip(Storage(str(tmp_path)))


def test_lease_is_exclusive_per_catalog_on_s3(s3_env):
    _lease_roundtrip(Storage(f"s3://{s3_env.bucket}/root"))


def _start_holder(tmp_path: Path, ttl_s: float) -> subprocess.Popen:
    """A real process that takes catalog 'shop''s lease (run 'doomed') and keeps it."""
    marker = tmp_path / "held"
    code = textwrap.dedent(f"""
        import threading
        from pathlib import Path
        from flux_depth_assets.storage.lease import CatalogLease
        from flux_depth_assets.storage.store import Storage
        CatalogLease(Storage({str(tmp_path / "root")!r}), "shop", run_id="doomed",
                     ttl_s={ttl_s!r}, wait_s=0).acquire()
        Path({str(marker)!r}).write_text("held")
        threading.Event().wait()
    """)
    child = subprocess.Popen(
        [sys.executable, "-c", code], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}
    )
    while not marker.exists():
        assert child.poll() is None, "the holder died before taking the lease"
        time.sleep(0.02)
    return child


def _state(pid: int) -> bytes:
    with open(f"/proc/{pid}/stat", "rb") as f:
        return f.read().rsplit(b")", 1)[1].split()[0]


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux's /proc")
@pytest.mark.parametrize("reaped", [True, False], ids=["exited", "zombie"])
def test_a_sigkilled_holder_on_this_machine_is_taken_over_at_once(tmp_path, caplog, reaped):
    child = _start_holder(tmp_path, ttl_s=600.0)  # its lease would block for 10 minutes
    store = Storage(str(tmp_path / "root"))
    try:
        with pytest.raises(LeaseBusy, match="doomed"):  # alive and beating: held
            CatalogLease(store, "shop", wait_s=0).acquire()
        child.send_signal(signal.SIGKILL)
        if reaped:
            child.wait(timeout=10)
        else:  # killed but not yet reaped by its parent (this test): a zombie
            deadline = time.monotonic() + 10
            while _state(child.pid) != b"Z":
                assert time.monotonic() < deadline, "the holder never became a zombie"
                time.sleep(0.01)
        with caplog.at_level("WARNING", logger="flux_depth_assets.storage.lease"):
            lease = CatalogLease(store, "shop", run_id="next", wait_s=0).acquire()
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(timeout=10)
    assert lease.generation == 1  # took over generation 0 without waiting
    assert "doomed" in caplog.text and "has exited" in caplog.text
    lease.release()
    assert store.list("leases/shop") == []


def _foreign(store: Storage, expires_in: float, **who: Any) -> None:
    """Generation 0 of 'shop' as a holder elsewhere would have written it."""
    holder = Holder(owner="x", expires_at=time.time() + expires_in, run_id="elsewhere", **who)
    store.write_bytes(CatalogLease(store, "shop")._rel(0), holder.to_bytes())


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux's /proc")
def test_a_holder_that_cannot_be_seen_gone_is_waited_out_until_its_lease_expires(tmp_path):
    store = Storage(str(tmp_path))
    me = _this_process()
    assert me is not None
    boot, ns, started = me
    dead_pid = 2**22 + 7  # above any pid_max: no such process here
    who: dict[str, Any]
    for who in (
        {"pid": dead_pid, "boot_id": "another-machine", "pid_ns": ns, "started": 5},
        {"pid": dead_pid, "boot_id": boot, "pid_ns": "pid:[1]", "started": 5},  # a container
        {"pid": dead_pid},  # a lease file from before processes were named
        {"pid": os.getpid(), "boot_id": boot, "pid_ns": ns, "started": started},  # alive
    ):
        _foreign(store, 60.0, **who)
        with pytest.raises(LeaseBusy, match="elsewhere"):
            CatalogLease(store, "shop", wait_s=0).acquire()
    # the same PID now names a process that started later: the holder is gone
    _foreign(store, 60.0, pid=os.getpid(), boot_id=boot, pid_ns=ns, started=started - 1)
    CatalogLease(store, "shop", wait_s=0).acquire().release()
    # what cannot be seen is waited for until its lease expires, then taken over
    _foreign(store, 0.5, pid=dead_pid, boot_id="another-machine", pid_ns=ns, started=5)
    lease = CatalogLease(store, "shop", run_id="next", wait_s=30, poll_s=0.05).acquire()
    assert lease.generation == 1
    lease.release()


def test_a_holder_that_lost_its_lease_notices_at_its_next_heartbeat(tmp_path):
    store = Storage(str(tmp_path))
    lease = CatalogLease(store, "shop", ttl_s=0.4, wait_s=0).acquire()
    lease.check()  # still ours
    # another run took over (as after this holder missed its heartbeats for a whole TTL)
    store.write_bytes(lease._rel(lease.generation + 1), b'{"owner": "x", "expires_at": 1e12}')
    deadline = time.monotonic() + 30
    while lease.lost is None:
        assert time.monotonic() < deadline, "the heartbeat never noticed"
        time.sleep(0.02)
    with pytest.raises(LeaseBusy, match="Re-running is safe"):
        lease.check()
    lease.release()  # leaves the new holder's file alone
    assert len(store.list("leases/shop")) == 2


# --------------------------------------------------------------------------- result check


def _png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def _jpeg(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def _ramp(w: int, h: int) -> np.ndarray:
    return np.tile(np.linspace(0, 255, h, dtype=np.uint8)[:, None], (1, w))


def test_gray_depth_maps_pass_in_any_encoding():
    gray = Image.fromarray(_ramp(64, 48), "L")
    assert check_depth_result(_png(gray), (64, 48)) is None
    assert check_depth_result(_jpeg(gray.convert("RGB")), (64, 48)) is None  # RGB but gray
    assert check_depth_result(_png(gray.resize((128, 96))), (64, 48)) is None  # scaled: fine


def test_colour_wrong_aspect_and_garbage_are_refused_with_what_to_do():
    rng = np.random.default_rng(0)
    colour = Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8), "RGB")
    problem = check_depth_result(_jpeg(colour), (64, 48))
    assert problem is not None and "colour" in problem.what and "mode: render" in str(problem)
    rotated = Image.fromarray(_ramp(48, 64), "L")  # portrait for a landscape source
    problem = check_depth_result(_png(rotated), (64, 48))
    assert problem is not None and "48x64" in problem.what and "aspect" in problem.what
    problem = check_depth_result(b"<html>rate limited</html>", (64, 48))
    assert problem is not None and "do not decode" in problem.what


def test_breaker_trips_after_three_bad_results():
    breaker = ResultBreaker()
    bad = check_depth_result(b"junk", None)
    for _ in range(2):
        breaker.record(bad)
    assert not breaker.tripped and not breaker.verified
    breaker.record(None)
    assert breaker.verified
    breaker.record(bad)
    assert breaker.tripped and "3 results" in breaker.reason()


# --------------------------------------------------------------------------- secrets


def test_every_rendering_of_a_key_is_masked():
    key = "sk-live-7f3a9c2e\nb81d44a0e5c6"
    texts = [
        f"Illegal header value b{key.encode()!r}",  # h11's escaped bytes
        f"headers={{'X-API-Key': {key!r}}}",  # repr
        f"GET /x?key={httpx.URL('http://h/', params={'k': key}).query.decode()}",  # percent
        f"echoed: {key[:10]}",  # an identifying prefix
        f'json: {{"key": "{key.encode("unicode_escape").decode()}"}}',
    ]
    for text in texts:
        masked = mask(text, [key])
        assert "7f3a9c2e" not in masked and "b81d44a0e5c6" not in masked, masked
        assert "***" in masked
    assert all(len(r) >= 6 for r in renderings(key))


def test_unsafe_keys_are_named_without_their_value():
    assert unsafe_key_problem("abc-DEF_123") is None
    for bad in ("abc\ndef", "abc def", "abc\x07def", "abc\u00e9def"):
        problem = unsafe_key_problem(bad)
        assert problem is not None and "abc" not in problem and "def" not in problem


def test_a_request_that_cannot_be_built_is_not_retried():
    import asyncio

    from flux_depth_assets.providers.eachlabs.client import EachlabsClient, EachlabsError
    from flux_depth_assets.providers.eachlabs.pacing import RetryPolicy

    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise httpx.LocalProtocolError("Illegal header value b'sk-live-7f3a9c2e\\nb81d'")

    async def go() -> EachlabsError:
        client = EachlabsClient(
            "http://127.0.0.1:9",
            "sk-live-7f3a9c2e\nb81d",
            retry=RetryPolicy(max_retries=5, backoff_base_s=0.001),
            transport=httpx.MockTransport(handler),
        )
        try:
            await client.create({"model": "m"})
        except EachlabsError as exc:
            return exc
        finally:
            await client.aclose()
        raise AssertionError("no error")

    error = asyncio.run(go())
    assert len(calls) == 1 and error.attempts == 1 and not error.retryable
    assert "7f3a9c2e" not in error.message and "nothing was sent" in error.message


# --------------------------------------------------------------------------- uncertain creates


def test_a_create_sent_without_answer_is_reported_uncertain_once(tmp_path):
    from flux_depth_assets.fakeapi import running_fake_api
    from flux_depth_assets.lineage import queries
    from flux_depth_assets.providers.eachlabs.journal import JournalEntry, PredictionJournal
    from tests.test_paid_path_faults import make_catalog, run

    cfg, root = make_catalog(tmp_path, 2), tmp_path / "root"
    with running_fake_api(latency_s=0.05) as server:
        assert run(cfg, root, server.base_url, assets=["source_images"]).success
        store = Storage(str(root))
        from flux_depth_assets.config import load_project
        from flux_depth_assets.defs.resources import DepthProviderResource

        catalog = load_project(cfg).catalog("faults")
        provider = DepthProviderResource(
            eachlabs_api_key="k-123456", eachlabs_base_url=server.base_url
        ).for_catalog(catalog)
        rows = queries.read(store, "provider_calls")  # nothing yet
        assert rows.num_rows == 0
        from flux_depth_assets.pipeline.scan import accepted_rows

        first = accepted_rows(store, "faults")[0]
        key = provider.cache_key(first["sha256"])
        PredictionJournal(store).write(
            JournalEntry(
                cache_key=key,
                image_id=first["image_id"],
                prediction_id=None,
                host=httpx.URL(server.base_url).netloc.decode(),
                model="flux-depth-pro",
                version=catalog.provider.version,
                state="sending",
                run_id="crashed-run",
                cost_usd=0.05,
            )
        )
        outcome = run(cfg, root, server.base_url)
        again = run(cfg, root, server.base_url)
        stats = server.stats()
    assert outcome.success and again.success, (outcome.error, again.error)
    calls = queries.read(store, "provider_calls").to_pylist()
    uncertain = [c for c in calls if c["uncertain_attempts"]]
    assert len(uncertain) == 1 and uncertain[0]["uncertain_cost_usd"] == 0.05
    assert uncertain[0]["image_id"] == first["image_id"]
    assert stats["creates"] == 2  # the host never saw the crashed create: one each
    assert round(sum(c["cost_usd"] for c in calls), 2) == round(stats["charged_usd"], 2)
    assert PredictionJournal(store).keys() == []

"""The API key never leaves the request header: not in files under the storage root (journal),
DepthPrediction fields, progress lines, log records, reprs or exception strings, even when the
host or the network stack repeats it back."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import logging
import os
from dataclasses import fields

import httpx
import pytest
import respx

from flux_depth_assets.fakeapi import running_fake_api
from flux_depth_assets.providers.eachlabs import EachlabsNotReady, EachlabsProvider, RetryPolicy
from flux_depth_assets.providers.eachlabs.client import EachlabsClient
from flux_depth_assets.storage.store import Storage
from tests.test_eachlabs_provider import make_items, make_provider

KEY = "sk-live-7Qz9-RECOGNISABLE-FAKE-KEY-31415"
FORMS = [KEY.encode(), base64.b64encode(KEY.encode()), KEY.encode().hex().encode()]


def leaks(blob: str | bytes) -> bool:
    data = blob.encode() if isinstance(blob, str) else blob
    return any(form in data for form in FORMS)


def prediction_texts(preds) -> list[str]:
    out = []
    for p in preds:
        for f in fields(p):
            value = getattr(p, f.name)
            out.append(json.dumps(value, default=str) if f.name == "extra" else repr(value))
        out.append(repr(p))
    return out


@pytest.fixture
def scan(tmp_path, caplog):
    """Collects every text the runs produce, then checks them all at the end of the test."""
    caplog.set_level(logging.DEBUG)  # every logger, httpx/httpcore included
    texts: list[str] = []
    yield texts
    root = tmp_path / "root"
    scanned_files = 0
    for folder, _dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            with open(path, "rb") as fh:
                assert not leaks(fh.read()), f"key found in {path}"
            scanned_files += 1
    records = caplog.get_records("call")
    for record in records:
        assert not leaks(record.getMessage()), f"key in log record {record.name}"
    for text in texts:
        assert not leaks(text), f"key in: {text[:200]}"
    assert texts and records


def run_and_collect(provider, items, texts):
    lines: list[str] = []
    preds = provider.predict_many(items, progress=lines.append)
    texts += lines + prediction_texts(preds) + [repr(provider), str(vars(provider))]
    return preds


def test_key_never_leaks_on_success_deadline_and_errors(tmp_path, scan):
    storage = Storage(str(tmp_path / "root"))
    with running_fake_api(latency_s=0.3) as server:
        ok = make_provider(server.base_url, storage, key=KEY, progress_interval_s=0.05)
        done = make_items(ok, 3)
        preds = run_and_collect(ok, done, scan)
        assert all(p.status == "succeeded" for p in preds)
        ok.settle([i.cache_key for i in done])  # the caller cached them

        # deadline: entries stay in the journal, which is scanned below with every other file
        slow = make_provider(server.base_url, storage, key=KEY, prediction_deadline_s=0.1)
        preds = run_and_collect(slow, make_items(slow, 2, first=10), scan)
        assert all("journaled" in p.error for p in preds)
        assert len(list((tmp_path / "root" / "journal" / "eachlabs").iterdir())) == 2

    # a careless host that repeats the key in its 401 message
    with running_fake_api(latency_s=0.05, api_keys={"another"}, echo_key_in_errors=True) as server:
        bad = make_provider(server.base_url, storage, key=KEY)
        preds = run_and_collect(bad, make_items(bad, 2), scan)
        assert preds[0].http_status == 401 and "***" in preds[0].error


@respx.mock
def test_key_repeated_by_the_network_stack_is_redacted(tmp_path, scan):
    storage = Storage(str(tmp_path / "root"))
    respx.post("https://api.eachlabs.test/v1/prediction/").mock(
        side_effect=httpx.ConnectError(f"proxy refused header X-API-Key: {KEY}")
    )
    provider = make_provider(
        "https://api.eachlabs.test",
        storage,
        key=KEY,
        retry=RetryPolicy(max_retries=1, backoff_base_s=0.01),
    )
    [pred] = run_and_collect(provider, make_items(provider, 1), scan)
    assert pred.status == "failed" and "***" in pred.error and "ConnectError" in pred.error


@respx.mock
def test_key_in_a_host_error_body_or_poll_answer_is_redacted(tmp_path, scan):
    storage = Storage(str(tmp_path / "root"))
    respx.post("https://api.eachlabs.test/v1/prediction/").mock(
        return_value=httpx.Response(200, json={"status": "success", "predictionID": "p-1"})
    )
    respx.get("https://api.eachlabs.test/v1/prediction/p-1").mock(
        return_value=httpx.Response(
            200, json={"status": "failed", "error": f"quota exhausted for key {KEY}"}
        )
    )
    provider = make_provider("https://api.eachlabs.test", storage, key=KEY)
    [pred] = run_and_collect(provider, make_items(provider, 1), scan)
    assert pred.status == "failed" and "quota exhausted for key ***" in pred.error


def test_reprs_and_readiness_errors(scan):
    provider = EachlabsProvider(make_provider("http://x", None).config, api_key=KEY)
    client = EachlabsClient("http://x", KEY)
    scan += [
        repr(provider),
        str(provider),
        str(vars(provider)),
        repr(client),
        str(vars(client)),
        repr(provider._api_key),
    ]
    asyncio.run(client.aclose())
    with pytest.raises(EachlabsNotReady) as info:
        EachlabsProvider(provider.config, api_key=KEY, base_url_override="ftp://x")
    scan.append(str(info.value))
    with pytest.raises(EachlabsNotReady) as info:
        EachlabsProvider(provider.config, api_key=None).check_ready()
    scan.append(str(info.value))
    logging.getLogger("flux_depth_assets").info("reprs checked: %r", provider)


def test_key_in_an_unexpected_exception_is_redacted(tmp_path, scan):
    storage = Storage(str(tmp_path / "root"))

    def broken_loader():
        raise OSError(f"mount failed with token {KEY}")

    provider = make_provider("http://127.0.0.1:9", storage, key=KEY)
    [item] = make_items(provider, 1)
    item = dataclasses.replace(item, load_image=broken_loader)
    [pred] = run_and_collect(provider, [item], scan)
    assert pred.status == "failed" and "OSError" in pred.error and "***" in pred.error

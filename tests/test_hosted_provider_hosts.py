"""`provider: {name: hosted, hosts: [<host>]}` end to end against the loopback host in that
host's dialect: one YAML line switches host; faults; a restart resumes on the same host."""

from __future__ import annotations

from typing import Any

import pytest

from flux_depth_assets.config.models import CatalogConfig
from flux_depth_assets.fakeapi import running_fake_api
from flux_depth_assets.providers.base import DepthProvider
from flux_depth_assets.providers.factory import ProviderSecrets, build_provider
from flux_depth_assets.providers.hosts import ADAPTERS
from flux_depth_assets.storage.store import Storage
from tests.test_eachlabs_provider import make_items

HOSTS = sorted(ADAPTERS)


def hosted_catalog(settings: dict[str, Any]) -> CatalogConfig:
    """A catalog on the `hosted` provider (`settings` hold its hosts), quick polls and short
    deadlines unless `settings` say otherwise."""
    fields = {
        "name": "hosted",
        "poll_interval_s": 0.05,
        "max_concurrency": 4,
        "timeout_s": 5.0,
        "prediction_deadline_s": 30.0,
        "max_retries": 2,
        **settings,
    }
    return CatalogConfig.model_validate(
        {"name": "x", "source": {"type": "local_dir", "path": "p"}, "provider": fields}
    )


def hosted(name: str, base_url: str, key: str = "k", **settings: Any) -> DepthProvider:
    cat = hosted_catalog({"hosts": [name], **settings})
    adapter = ADAPTERS[name]
    secrets = ProviderSecrets(
        env={adapter.api_key_env: key, adapter.base_url_env: base_url},
        eachlabs_api_key=key if name == "eachlabs" else None,
        eachlabs_base_url=base_url if name == "eachlabs" else None,
    )
    return build_provider(cat.provider, secrets)


@pytest.mark.parametrize("name", HOSTS)
def test_one_catalog_on_each_host(tmp_path, name):
    with running_fake_api(dialect=name, latency_s=0.1) as server:
        provider = hosted(name, server.base_url)
        provider.bind_storage(Storage(str(tmp_path / "root")), "run-1")
        preds = provider.predict_many(make_items(provider, 5))
        stats = server.stats()
    assert [p.status for p in preds] == ["succeeded"] * 5, [p.error for p in preds]
    assert all(p.depth is not None and p.depth.shape == (48, 64) for p in preds)
    assert stats["creates"] == 5 and max(stats["creates_per_image"].values()) == 1
    assert sum(p.cost_usd for p in preds) == pytest.approx(stats["charged_usd"])
    assert provider.name == name


@pytest.mark.parametrize("name", HOSTS)
def test_out_of_credit_stops_the_run_after_one_answer(tmp_path, name):
    with running_fake_api(dialect=name, latency_s=0.05, credit_usd=0.10) as server:
        provider = hosted(name, server.base_url, max_concurrency=1)
        provider.bind_storage(Storage(str(tmp_path / "root")), "run-1")
        preds = provider.predict_many(make_items(provider, 6))
        stats = server.stats()
    assert [p.status for p in preds] == ["succeeded"] * 2 + ["failed"] * 4
    assert stats["creates"] == 2 and stats["out_of_credit"] == 1  # one 402, then no more creates
    assert "402" in (preds[2].error or "") and "not sent" in (preds[3].error or "")


@pytest.mark.parametrize("name", ["replicate", "bfl"])
def test_moderated_results_fail_the_image_with_the_hosts_word(tmp_path, name):
    with running_fake_api(dialect=name, latency_s=0.05, moderation_ratio=1.0) as server:
        provider = hosted(name, server.base_url)
        provider.bind_storage(Storage(str(tmp_path / "root")), "run-1")
        (pred,) = provider.predict_many(make_items(provider, 1))
    assert pred.status == "failed" and pred.cost_usd == pytest.approx(0.05)
    assert "moderated" in (pred.error or "").lower() or "flagged" in (pred.error or "")


@pytest.mark.parametrize("name", ["replicate", "bfl"])
def test_a_restart_resumes_on_the_same_host_without_paying_again(tmp_path, name):
    root = Storage(str(tmp_path / "root"))
    with running_fake_api(dialect=name, latency_s=0.3) as server:
        first = hosted(name, server.base_url, prediction_deadline_s=0.1)  # gives up early
        first.bind_storage(root, "run-1")
        items = make_items(first, 3)
        gave_up = first.predict_many(items)
        assert all(p.status == "failed" and "stays journaled" in (p.error or "") for p in gave_up)
        second = hosted(name, server.base_url)
        second.bind_storage(root, "run-2")
        done = second.predict_many(items)
        stats = server.stats()
    assert [p.status for p in done] == ["succeeded"] * 3, [p.error for p in done]
    assert stats["creates"] == 3 and max(stats["creates_per_image"].values()) == 1
    assert sum(p.cost_usd for p in done) == 0  # paid by the first run, resumed for free


def test_account_limits_and_stop_hold_across_two_runs_in_two_processes(tmp_path):
    from tests.test_account_limits_processes import run_children

    root = str(tmp_path / "root")
    with running_fake_api(dialect="bfl", latency_s=0.3) as server:
        common = {
            "host": "bfl",
            "base_url": server.base_url,
            "root": root,
            "n": 4,
            "settings": {"hosts": [{"name": "bfl", "max_in_flight": 2}]},
        }
        reports = run_children(
            [
                {**common, "run_id": "a", "first": 0, "module": "p"},
                {**common, "run_id": "b", "first": 10, "module": "p"},
            ]
        )
        stats = server.stats()
    assert all(r["status"] == ["succeeded"] * 4 for r in reports), reports
    assert stats["creates"] == 8 and stats["max_active_predictions"] <= 2


def test_a_stop_raised_by_another_run_stops_this_one_before_any_create(tmp_path):
    import time

    from flux_depth_assets.providers.hosts.limits import AccountGate, AccountLimits

    root = Storage(str(tmp_path / "root"))
    settings = {"hosts": [{"name": "replicate", "account": "team"}]}
    with running_fake_api(dialect="replicate", latency_s=0.05) as server:
        # another run on the account got a 402 "now" (a minute ahead: after this run starts)
        other = AccountGate(
            root, "replicate", "team", AccountLimits(), clock=lambda: time.time() + 60
        )
        other.stop("HTTP 402: You have insufficient credit")
        provider = hosted("replicate", server.base_url, **settings)
        provider.bind_storage(root, "run-1")
        preds = provider.predict_many(make_items(provider, 3))
        stats = server.stats()
    assert stats["creates"] == 0 and stats["out_of_credit"] == 0
    assert all(
        p.status == "failed" and "stopped by another run" in (p.error or "") for p in preds
    ), [p.error for p in preds]

    old = AccountGate(root, "replicate", "team", AccountLimits(), clock=lambda: time.time() - 60)
    old.stop("HTTP 402: You have insufficient credit")  # raised before the next run starts
    with running_fake_api(dialect="replicate", latency_s=0.05, credit_usd=0.05) as server:
        first = hosted("replicate", server.base_url, max_concurrency=1, **settings)
        first.bind_storage(root, "run-2")  # a later run tries again: the credit may be back
        preds = first.predict_many(make_items(first, 3, first=10))
        assert server.stats()["creates"] == 1 and server.stats()["out_of_credit"] == 1
    assert [p.status for p in preds] == ["succeeded", "failed", "failed"]
    raised = AccountGate(root, "replicate", "team", AccountLimits())
    assert "402" in (raised.stopped_since(0.0) or "")  # and it raised the flag again


def listed(names: list[str], servers: dict[str, str], **settings: Any) -> DepthProvider:
    cat = hosted_catalog({"hosts": names, "max_concurrency": 2, **settings})
    env: dict[str, str | None] = {}
    for name, url in servers.items():
        env[ADAPTERS[name].api_key_env] = "k"
        env[ADAPTERS[name].base_url_env] = url
    secrets = ProviderSecrets(
        eachlabs_api_key=env.get("EACHLABS_API_KEY"),
        eachlabs_base_url=env.get("EACHLABS_BASE_URL"),
        env=env,
    )
    return build_provider(cat.provider, secrets)


def test_failover_from_a_retired_host_to_the_next_without_paying_twice(tmp_path):
    retired = ADAPTERS["bfl"].default_model
    with (
        running_fake_api(dialect="bfl", latency_s=0.05, retired_models=(retired,)) as bfl,
        running_fake_api(dialect="replicate", latency_s=0.05) as replicate,
    ):
        provider = listed(
            ["bfl", "replicate"], {"bfl": bfl.base_url, "replicate": replicate.base_url}
        )
        lines: list[str] = []
        provider.bind_storage(Storage(str(tmp_path / "root")), "run-1")
        preds = provider.predict_many(make_items(provider, 4), lines.append)
        on_bfl, on_replicate = bfl.stats(), replicate.stats()
    assert [p.status for p in preds] == ["succeeded"] * 4, [p.error for p in preds]
    assert {p.extra["host"] for p in preds} == {"replicate"}
    # one answer per create already in flight (max_concurrency 2), then no more requests
    assert on_bfl["creates"] == 0 and 1 <= on_bfl["status_counts"].get("404", 0) <= 2
    assert on_replicate["creates"] == 4 and max(on_replicate["creates_per_image"].values()) == 1
    assert sum(1 for line in lines if "skipped for the rest of this run" in line) == 1


def test_a_restart_resumes_failed_over_images_on_the_host_that_holds_them(tmp_path):
    root = Storage(str(tmp_path / "root"))
    with (
        running_fake_api(dialect="replicate", latency_s=0.05, credit_usd=0.0) as replicate,
        running_fake_api(dialect="bfl", latency_s=0.3) as bfl,
    ):
        servers = {"replicate": replicate.base_url, "bfl": bfl.base_url}
        first = listed(["replicate", "bfl"], servers, prediction_deadline_s=0.1)
        first.bind_storage(root, "run-1")
        items = make_items(first, 3)
        gave_up = first.predict_many(items)  # replicate: 402; bfl: created, deadline passed
        assert all("stays journaled" in (p.error or "") for p in gave_up), gave_up
        replicate.state.faults.config = replicate.state.config = type(replicate.state.config)(
            dialect="replicate", latency_s=0.05
        )  # credit is back
        second = listed(["replicate", "bfl"], servers)
        second.bind_storage(root, "run-2")
        done = second.predict_many(items)
        on_bfl, on_replicate = bfl.stats(), replicate.stats()
    assert [p.status for p in done] == ["succeeded"] * 3, [p.error for p in done]
    assert {p.extra["host"] for p in done} == {"bfl"}  # where they were paid
    assert on_replicate["creates"] == 0 and on_bfl["creates"] == 3
    assert max(on_bfl["creates_per_image"].values()) == 1


def test_an_unreachable_host_is_given_up_after_unavailable_after_s(tmp_path):
    import socket

    with socket.socket() as s:  # a port nobody listens on: every connection is refused
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    with running_fake_api(dialect="replicate", latency_s=0.05) as replicate:
        provider = listed(
            ["eachlabs", "replicate"],
            {"eachlabs": dead, "replicate": replicate.base_url},
            unavailable_after_s=0.001,
            max_retries=1,
            max_concurrency=1,
        )
        provider.bind_storage(Storage(str(tmp_path / "root")), "run-1")
        preds = provider.predict_many(make_items(provider, 3))
        stats = replicate.stats()
    assert [p.status for p in preds] == ["succeeded"] * 3, [p.error for p in preds]
    assert {p.extra["host"] for p in preds} == {"replicate"} and stats["creates"] == 3


def test_lineage_names_the_host_of_every_call_and_costs_by_host_matches_each_bill(tmp_path, capsys):
    import json
    from datetime import UTC, datetime

    from flux_depth_assets.cli import main as cli
    from flux_depth_assets.lineage.queries import read
    from flux_depth_assets.lineage.writer import calls_from_rows, write_rows
    from flux_depth_assets.pipeline.provider_run import prediction_fields

    root = Storage(str(tmp_path / "root"))
    with (  # replicate pays for two images, then answers 402: the rest fail over to bfl
        running_fake_api(dialect="replicate", latency_s=0.05, credit_usd=0.10) as replicate,
        running_fake_api(dialect="bfl", latency_s=0.05) as bfl,
    ):
        provider = listed(
            ["replicate", "bfl"],
            {"replicate": replicate.base_url, "bfl": bfl.base_url},
            max_concurrency=1,
        )
        provider.bind_storage(root, "run-1")
        preds = provider.predict_many(make_items(provider, 5))
        bills = {"replicate": replicate.stats()["charged_usd"], "bfl": bfl.stats()["charged_usd"]}
    assert [p.status for p in preds] == ["succeeded"] * 5, [p.error for p in preds]
    assert bills["replicate"] > 0 and bills["bfl"] > 0
    now = datetime.now(UTC)
    rows = [
        {
            "image_id": p.image_id,
            "status": p.status,
            "provider": provider.name,
            **prediction_fields(p, provider.price_usd, now),
        }
        for p in preds
    ]
    rows.append({"image_id": "hit", "status": "cached", "provider": "hosted", "host": "bfl"})
    calls = calls_from_rows(rows, run_id="run-1", asset="depth_maps", default_time=now)
    old = {**calls[0], "image_id": "old", "provider": "eachlabs", "cost_usd": 0.07}
    old.pop("host")  # a file written before the column: its host is its provider
    for run_id, run_rows in (("run-1", calls), ("run-0", [old])):
        write_rows(
            root,
            "provider_calls",
            catalog="shop",
            day=now.date(),
            run_id=run_id,
            asset="depth_maps",
            rows=run_rows,
        )

    table = read(root, "provider_calls", columns=["image_id", "host"]).to_pylist()
    hosts = {r["image_id"]: r["host"] for r in table}
    assert sorted(hosts[p.image_id] for p in preds) == ["bfl"] * 3 + ["replicate"] * 2
    assert hosts["hit"] is None and hosts["old"] is None  # no call was made / older file

    assert cli(["costs", "--by-host", "--root", str(tmp_path / "root"), "--format", "json"]) == 0
    by_host = {r["host"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(by_host) == {"replicate", "bfl", "hosted", "eachlabs"}
    for name, charged in bills.items():
        assert by_host[name]["cost_usd"] == pytest.approx(charged)
        assert by_host[name]["paid_calls"] == by_host[name]["calls"]
    assert by_host["hosted"]["cached"] == 1 and by_host["hosted"]["cost_usd"] == 0
    assert by_host["eachlabs"]["cost_usd"] == pytest.approx(0.07)

"""HostDispatch: host choice, the account gate before each create, and failover on answers."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from flux_depth_assets.config.models import CatalogConfig
from flux_depth_assets.providers.hosts import ADAPTERS, ErrorKind, HostError
from flux_depth_assets.providers.hosts.dispatch import HostDispatch, Permit
from flux_depth_assets.providers.hosts.plan import host_plan, with_environment
from flux_depth_assets.storage.store import Storage


def hosts(env: dict[str, str], names: list[object]):
    cat = CatalogConfig.model_validate(
        {
            "name": "x",
            "source": {"type": "local_dir", "path": "p"},
            "provider": {"name": "hosted", "hosts": names},
        }
    )
    return with_environment(host_plan(cat.provider), env.get)  # type: ignore[arg-type]


@pytest.fixture
def storage(tmp_path):
    return Storage(str(tmp_path / "root"))


def dispatch(storage, env, names, warnings=None, **kw) -> HostDispatch:
    sink = warnings if warnings is not None else []
    return HostDispatch(hosts(env, names), storage, unavailable_after_s=300, warn=sink.append, **kw)


KEYS = {"REPLICATE_API_TOKEN": "r8_a", "EACHLABS_API_KEY": "e_b", "BFL_API_KEY": "b_c"}


def error(name: str, status: int) -> HostError:
    return ADAPTERS[name].classify("create", httpx.Response(status, json={"detail": "why"}))


def test_a_host_without_a_key_is_skipped_with_one_warning(storage):
    warnings: list[str] = []
    d = dispatch(storage, {"EACHLABS_API_KEY": "k"}, ["replicate", "eachlabs"], warnings)
    chosen = d.host_for()
    assert not isinstance(chosen, str) and chosen.host.name == "eachlabs"
    assert warnings == [
        (
            "replicate: no API key (set REPLICATE_API_TOKEN); skipped for the rest "
            "of this run, using eachlabs"
        )
    ]
    assert d.host_for() == chosen and len(warnings) == 1


def test_retired_model_fails_over_and_journaled_images_stay_on_their_host(storage):
    d = dispatch(storage, KEYS, ["bfl", "replicate"])
    bfl = d.host_for()
    assert not isinstance(bfl, str) and bfl.host.name == "bfl"
    d.observe(bfl, error("bfl", 404))
    after = d.host_for()
    assert not isinstance(after, str) and after.host.name == "replicate"
    held = d.host_for("api.bfl.ai")  # paid there: polled there, never created elsewhere
    assert not isinstance(held, str) and held.host.name == "bfl"
    gone = d.host_for("api.eachlabs.ai")
    assert isinstance(gone, str) and "no longer lists" in gone and "pay twice" in gone


def test_out_of_credit_stops_the_account_for_other_runs_and_leaves_no_host(storage):
    ours = dispatch(storage, KEYS, ["replicate"])
    theirs = dispatch(storage, KEYS, ["replicate"])  # another run, same account, same root
    host = ours.host_for()
    assert not isinstance(host, str)

    async def scenario() -> tuple[object, object]:
        permit = await ours.admit(host)
        assert isinstance(permit, Permit)
        ours.observe(host, error("replicate", 402))
        await ours.release(permit)
        other = theirs.host_for()
        assert not isinstance(other, str)
        return await theirs.admit(other), ours.host_for()

    refused, none_left = asyncio.run(scenario())
    assert isinstance(refused, str) and "account stopped" in refused and "402" in refused
    assert isinstance(none_left, str) and "no host left" in none_left
    assert "r8_a" not in refused


def test_admit_holds_the_in_flight_cap_until_release(storage):
    env = {"BFL_API_KEY": "b"}
    names: list[object] = [{"name": "bfl", "max_in_flight": 1}]
    a, b = (dispatch(storage, env, names, poll_s=0.02) for _ in range(2))

    async def scenario() -> None:
        host_a, host_b = a.host_for(), b.host_for()
        assert not isinstance(host_a, str) and not isinstance(host_b, str)
        first = await a.admit(host_a)
        assert isinstance(first, Permit)
        assert b.gates["bfl"].try_acquire() is None  # the account's only slot is taken
        waiting = asyncio.create_task(b.admit(host_b))
        await a.release(first)
        second = await asyncio.wait_for(waiting, 10)
        assert isinstance(second, Permit) and second.slot.index == first.slot.index

    asyncio.run(scenario())


def test_transient_errors_count_towards_unavailability_only(storage):
    d = dispatch(storage, KEYS, ["eachlabs", "replicate"])
    each = d.host_for()
    assert not isinstance(each, str)
    d.observe(each, error("eachlabs", 503))
    d.observe(each, error("eachlabs", 422))
    d.observe(each, None)
    chosen = d.host_for()
    assert not isinstance(chosen, str) and chosen.host.name == "eachlabs"
    assert error("eachlabs", 503).kind is ErrorKind.TRANSIENT

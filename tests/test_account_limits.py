"""Per-account limits on the storage root: in-flight slots, a sliding window of creates, stop."""

from __future__ import annotations

import threading

import pytest

from flux_depth_assets.providers.hosts.limits import AccountGate, AccountLimits, account_id
from flux_depth_assets.storage.store import Storage
from tests.moto_s3 import moto_endpoint, s3_env  # noqa: F401  (fixtures)


class Clock:
    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def storage(tmp_path):
    return Storage(str(tmp_path / "root"))


def gate(storage, clock, **limits) -> AccountGate:
    return AccountGate(storage, "replicate", "acct", AccountLimits(**limits), clock=clock)


def test_account_id_names_the_account_without_the_key():
    key = "r8_supersecretvalue"
    name = account_id(key)
    assert name == account_id(key) != account_id(key + "x")
    assert key not in name and "supersecret" not in name


def test_in_flight_cap_is_shared_by_every_gate_on_the_account(storage):
    clock = Clock()
    a, b, c = (gate(storage, clock, max_in_flight=2) for _ in range(3))
    sa, sb = a.try_acquire(), b.try_acquire()
    assert sa is not None and sb is not None and sa.index != sb.index
    assert c.try_acquire() is None
    a.release(sa)
    sc = c.try_acquire()
    assert sc is not None and sc.index == sa.index and sc.generation == sa.generation + 1
    assert a.try_acquire() is None
    # another account is not affected
    other = AccountGate(storage, "replicate", "other", AccountLimits(max_in_flight=2), clock=clock)
    assert other.try_acquire() is not None


def test_a_dead_holder_frees_its_slot_after_the_lease_and_cannot_take_it_back(storage):
    clock = Clock()
    dead = gate(storage, clock, max_in_flight=1, lease_ttl_s=10)
    live = gate(storage, clock, max_in_flight=1, lease_ttl_s=10)
    slot = dead.try_acquire()
    assert slot is not None
    clock.t += 9
    assert live.try_acquire() is None
    dead.renew()  # a holder that renews keeps it
    clock.t += 9
    assert live.try_acquire() is None
    clock.t += 11  # no renewal for longer than the lease: the slot is free
    taken = live.try_acquire()
    assert taken is not None and taken.generation == slot.generation + 1
    dead.renew()  # the late holder's renewal touches its own old generation only
    assert gate(storage, clock, max_in_flight=1, lease_ttl_s=10).try_acquire() is None


def test_concurrent_acquirers_never_exceed_the_cap(storage):
    clock = Clock()
    gates = [gate(storage, clock, max_in_flight=3) for _ in range(12)]
    barrier = threading.Barrier(len(gates))
    won: list[object] = []
    lock = threading.Lock()

    def race(g: AccountGate) -> None:
        barrier.wait()
        slot = g.try_acquire()
        if slot is not None:
            with lock:
                won.append(slot)

    threads = [threading.Thread(target=race, args=(g,)) for g in gates]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 3


def test_sliding_window_counts_claims_from_every_gate(storage):
    clock = Clock()
    a = gate(storage, clock, per_window=3, window_s=10, margin_s=0.5)
    b = gate(storage, clock, per_window=3, window_s=10, margin_s=0.5)
    assert [a.try_claim(), b.try_claim(), a.try_claim()] == [0.0, 0.0, 0.0]
    assert b.try_claim() == pytest.approx(10.5)
    clock.t += 4
    assert a.try_claim() == pytest.approx(6.5)
    clock.t += 6.5
    assert a.try_claim() == 0.0  # the first three claims left the window together
    assert b.try_claim() == 0.0 and a.try_claim() == 0.0
    assert b.try_claim() == pytest.approx(10.5)  # the window holds three again


def test_window_never_admits_more_than_the_cap_in_any_interval(storage):
    clock = Clock()
    gates = [gate(storage, clock, per_window=4, window_s=10, margin_s=0.0) for _ in range(3)]
    claimed: list[float] = []
    for step in range(400):  # three gates taking turns, time creeping forward
        g = gates[step % 3]
        if g.try_claim() == 0.0:
            claimed.append(clock.t)
        clock.t += 0.37
    assert len(claimed) > 40
    for i, t in enumerate(claimed):
        assert sum(1 for u in claimed[i:] if u < t + 10) <= 4
    files = storage.list("accounts/replicate/acct/rate")
    assert len(files) <= 4 * 4  # old claims are swept


def test_a_missing_earlier_claim_makes_the_gate_wait_a_window_instead_of_overshooting(storage):
    clock = Clock()
    g = gate(storage, clock, per_window=2, window_s=10, margin_s=0.0)
    assert g.try_claim() == 0.0 and g.try_claim() == 0.0
    storage.delete("accounts/replicate/acct/rate/000000000000.json")
    clock.t += 50
    assert g.try_claim() == pytest.approx(10.0)


def test_stop_flag_stops_runs_already_going_but_not_later_ones(storage):
    clock = Clock()
    running = gate(storage, clock, stop_check_s=0.0)
    started = clock.t
    assert running.stopped_since(started) is None
    clock.t += 5
    gate(storage, clock).stop("HTTP 402: insufficient credit")
    assert running.stopped_since(started) == "HTTP 402: insufficient credit"
    clock.t += 5
    later = gate(storage, clock)
    assert later.stopped_since(clock.t) is None  # a top-up may have happened: try once


def test_no_caps_means_no_storage_traffic(storage):
    g = gate(storage, Clock())
    assert g.try_claim() == 0.0
    assert g.try_acquire() is not None
    assert storage.list("accounts") == []


def test_limits_reject_nonsense():
    with pytest.raises(ValueError):
        AccountLimits(max_in_flight=0)
    with pytest.raises(ValueError):
        AccountLimits(window_s=0)


def test_async_acquire_waits_for_a_release_and_claim_waits_out_the_window(storage):
    import asyncio
    import json

    holder = AccountGate(storage, "bfl", "acct", AccountLimits(max_in_flight=1, poll_s=0.01))
    waiter = AccountGate(storage, "bfl", "acct", AccountLimits(max_in_flight=1, poll_s=0.01))
    rate = AccountLimits(per_window=1, window_s=0.3, margin_s=0.0, poll_s=0.01)
    a, b = (AccountGate(storage, "replicate", "acct", rate) for _ in range(2))

    async def scenario() -> None:
        slot = await holder.acquire()
        task = asyncio.create_task(waiter.acquire())
        await asyncio.sleep(0.05)
        assert not task.done()  # all slots held: it waits
        holder.release(slot)
        got = await asyncio.wait_for(task, 10)
        assert got.index == slot.index and got.generation == slot.generation + 1
        await asyncio.wait_for(a.claim(), 10)
        await asyncio.wait_for(b.claim(), 10)  # has to wait until the first claim is 0.3 s old

    asyncio.run(scenario())
    times = sorted(
        json.loads(storage.read_bytes(rel))["t"]
        for rel in storage.list("accounts/replicate/acct/rate")
    )
    assert len(times) == 2 and times[1] - times[0] >= 0.3


def test_keep_renewed_extends_the_lease(storage):
    import asyncio
    import json

    g = AccountGate(storage, "bfl", "acct", AccountLimits(max_in_flight=1, lease_ttl_s=0.09))
    slot = g.try_acquire()
    assert slot is not None
    rel = f"accounts/bfl/acct/inflight/{slot.rel}"
    first = json.loads(storage.read_bytes(rel))["expires_at"]

    async def renew_a_few_times() -> None:
        task = asyncio.create_task(g.keep_renewed())
        while json.loads(storage.read_bytes(rel))["expires_at"] == first:
            await asyncio.sleep(0.01)
        task.cancel()

    asyncio.run(asyncio.wait_for(renew_a_few_times(), 10))
    assert json.loads(storage.read_bytes(rel))["expires_at"] > first


def test_limits_on_an_s3_root(s3_env):  # noqa: F811  (the fixture imported above)
    root = f"s3://{s3_env.bucket}/root"
    options = {"client_kwargs": {"endpoint_url": s3_env.endpoint}}
    clock = Clock()
    gates = [
        AccountGate(
            Storage(root, options),
            "bfl",
            "acct",
            AccountLimits(max_in_flight=2, per_window=2, window_s=10, margin_s=0.0),
            clock=clock,
        )
        for _ in range(3)
    ]
    held = [g.try_acquire() for g in gates]
    assert sum(s is not None for s in held) == 2
    assert [g.try_claim() for g in gates] == [0.0, 0.0, pytest.approx(10.0)]
    started = clock.t
    clock.t += 1
    gates[0].stop("HTTP 402: out of credit")
    assert gates[2].stopped_since(started) == "HTTP 402: out of credit"

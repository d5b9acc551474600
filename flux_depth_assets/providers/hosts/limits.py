"""Per-host-account limits held across processes: predictions in flight, creates per window, stop.

Hosts limit an *account*, not a run: Replicate allows 600 creates a minute (6 with little credit),
BFL 24 tasks in flight. Every run and worker sharing a key shares those budgets, so the state lives
in the storage root (`accounts/<host>/<account>/`), built only on `Storage.create_exclusive`
(atomic create-if-absent: a local link or an S3 conditional PUT), reads, writes and deletes:

- **in flight**: `inflight/<slot>/<generation>.json` for slots 0..cap-1. A slot is held by whoever
  created its newest generation, until that file's `expires_at` (the holder renews it; a release
  writes `expires_at: 0`). Taking a free or expired slot means creating the next generation, which
  only one contender can do. A SIGKILLed holder blocks its slot for at most `lease_ttl_s`.
- **per window** (a sliding window, not fixed buckets): create number `n` is claimed by creating
  `rate/<n>.json` holding the claim time, and only once `window_s + margin_s` have passed since
  claim `n - cap`. Claims are contiguous, so any `window_s` holds at most `cap` of them.
- **stop**: `stop.json` records the first answer that no request on the account can survive (402,
  a rejected key). Runs that were already going stop creating; a run started later tries once
  (the flag may be stale after a top-up) and raises it again if the host still refuses.

Times are wall-clock seconds: processes on several machines need synchronised clocks (NTP); a
skew of s seconds can let `cap` creates through in `window_s - s`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from flux_depth_assets.paths import safe_segment

ACCOUNTS_DIR = "accounts"


class ExclusiveStorage(Protocol):
    """What the limits need from `storage.store.Storage`."""

    is_local: bool

    def create_exclusive(self, rel: str, data: bytes) -> bool: ...
    def read_bytes(self, rel: str) -> bytes: ...
    def write_bytes(self, rel: str, data: bytes) -> str: ...
    def exists(self, rel: str) -> bool: ...
    def delete(self, rel: str) -> None: ...
    def list(self, rel_dir: str) -> list[str]: ...
    def files_under(self, rel_dir: str) -> set[str]: ...


def account_id(key: str) -> str:
    """A stable, non-reversible name for the account a key belongs to (never the key itself)."""
    return "key-" + hashlib.sha256(key.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class AccountLimits:
    """Caps for one account; None means no cap. `window_s` is the per-window unit (a minute)."""

    max_in_flight: int | None = None
    per_window: int | None = None
    window_s: float = 60.0
    margin_s: float = 0.25  # added to the window: a request is sent a little after its claim
    lease_ttl_s: float = 120.0  # an in-flight slot whose holder stopped renewing frees after this
    poll_s: float = 0.25  # how often a waiter looks again (other processes cannot wake it)
    stop_check_s: float = 1.0  # how long a "not stopped" answer is trusted

    def __post_init__(self) -> None:
        for name in ("max_in_flight", "per_window"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 or None")
        if self.window_s <= 0 or self.lease_ttl_s <= 0 or self.poll_s <= 0:
            raise ValueError("window_s, lease_ttl_s and poll_s must be > 0")


@dataclass(frozen=True)
class Slot:
    """An in-flight slot this process holds."""

    index: int
    generation: int

    @property
    def rel(self) -> str:
        return f"{self.index}/{self.generation:012d}.json"


class AccountStopped(Exception):
    """The account refused a request that no retry can fix (out of credit, bad key)."""


class AccountGate:
    """The shared limits of one host account, as seen by one process. Thread-safe enough for one
    event loop calling its sync methods through `asyncio.to_thread` (no shared mutable state
    besides the hints below, which only ever move forward)."""

    def __init__(
        self,
        storage: ExclusiveStorage,
        host: str,
        account: str,
        limits: AccountLimits,
        *,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ):
        self.storage = storage
        self.dir = f"{ACCOUNTS_DIR}/{safe_segment(host)}/{safe_segment(account)}"
        self.limits = limits
        self.clock = clock
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._rng = rng or random.Random()
        self._next: int | None = None  # the next rate claim number to try
        self._held: set[Slot] = set()
        self._stop_checked: tuple[float, str | None] | None = None

    def __repr__(self) -> str:
        return f"AccountGate({self.dir!r}, {self.limits})"

    # ------------------------------------------------------------------ in flight

    def try_acquire(self) -> Slot | None:
        """A free in-flight slot, now, or None when all are held."""
        cap = self.limits.max_in_flight
        if cap is None:
            return Slot(-1, 0)
        base = f"{self.dir}/inflight"
        newest: dict[int, int] = {}
        for rel in self.storage.files_under(base):
            parts = rel.rsplit("/", 2)
            if (
                len(parts) == 3
                and parts[2].endswith(".json")
                and parts[1].isdigit()
                and parts[2][:-5].isdigit()
            ):
                index, generation = int(parts[1]), int(parts[2][:-5])
                newest[index] = max(generation, newest.get(index, -1))
        now = self.clock()
        order = list(range(cap))
        self._rng.shuffle(order)  # contenders spread over the slots instead of all racing for 0
        for index in order:
            gen = newest.get(index)
            if gen is not None and not self._expired(f"{base}/{index}/{gen:012d}.json", now):
                continue
            slot = Slot(index, 0 if gen is None else gen + 1)
            if self.storage.create_exclusive(f"{base}/{slot.rel}", self._lease(now)):
                self._held.add(slot)
                if slot.generation >= 2:  # keep the previous generation for readers mid-scan
                    self._forget(f"{base}/{index}/{slot.generation - 2:012d}.json")
                return slot
        return None

    def release(self, slot: Slot) -> None:
        """Free `slot` (idempotent)."""
        if slot.index < 0 or slot not in self._held:
            return
        self._held.discard(slot)
        self.storage.write_bytes(
            f"{self.dir}/inflight/{slot.rel}",
            json.dumps({"owner": self.owner, "expires_at": 0}).encode(),
        )

    def renew(self) -> int:
        """Extend every slot this process holds (call every `lease_ttl_s / 3`); how many."""
        now = self.clock()
        for slot in list(self._held):
            self.storage.write_bytes(f"{self.dir}/inflight/{slot.rel}", self._lease(now))
        return len(self._held)

    def _lease(self, now: float) -> bytes:
        return json.dumps(
            {"owner": self.owner, "expires_at": now + self.limits.lease_ttl_s}
        ).encode()

    def _expired(self, rel: str, now: float) -> bool:
        try:
            expires = float(json.loads(self.storage.read_bytes(rel))["expires_at"])
        except FileNotFoundError:
            return True  # released and cleaned up between the listing and this read
        except (ValueError, KeyError, TypeError):
            return False  # being written right now (or unreadable): treat as held
        return expires <= now

    def _forget(self, rel: str) -> None:
        try:
            self.storage.delete(rel)
        except OSError:
            pass  # garbage only; the next holder of the slot tries again

    # ------------------------------------------------------------------ per window

    def try_claim(self) -> float:
        """Claim one create within the window cap: 0.0 when claimed, else seconds to wait."""
        cap = self.limits.per_window
        if cap is None:
            return 0.0
        base = f"{self.dir}/rate"
        for _ in range(64):  # each lost race moves forward; bounded so a storm cannot spin
            n = self._next if self._next is not None else self._scan(base)
            now = self.clock()
            if n >= cap:
                earlier = self._claim_time(f"{base}/{n - cap:012d}.json", now)
                wait = earlier + self.limits.window_s + self.limits.margin_s - now
                if wait > 0:
                    self._next = n
                    return wait
            if self.storage.create_exclusive(
                f"{base}/{n:012d}.json", json.dumps({"t": now, "owner": self.owner}).encode()
            ):
                self._next = n + 1
                if n % cap == 0 and n >= 3 * cap:
                    self._sweep(base, n - 2 * cap)
                return 0.0
            self._next = max(n + 1, self._scan(base))
        return self.limits.poll_s

    def _scan(self, base: str) -> int:
        numbers = [
            int(name[:-5])
            for name in (r.rsplit("/", 1)[-1] for r in self.storage.list(base))
            if name.endswith(".json") and name[:-5].isdigit()
        ]
        return max(numbers) + 1 if numbers else 0

    def _claim_time(self, rel: str, now: float) -> float:
        try:
            return float(json.loads(self.storage.read_bytes(rel))["t"])
        except FileNotFoundError:
            return now  # swept or lost: assume it was just now (waits a window, never overshoots)
        except (ValueError, KeyError, TypeError):
            return now

    def _sweep(self, base: str, below: int) -> None:
        for rel in self.storage.list(base):
            name = rel.rsplit("/", 1)[-1]
            if name.endswith(".json") and name[:-5].isdigit() and int(name[:-5]) < below:
                self._forget(rel)

    # ------------------------------------------------------------------ stop flag

    def stop(self, reason: str) -> None:
        """Raise the account's stop flag (`reason`: one line, never a key)."""
        now = self.clock()
        self.storage.write_bytes(
            f"{self.dir}/stop.json",
            json.dumps({"reason": reason, "at": now, "owner": self.owner}).encode(),
        )
        self._stop_checked = (now, reason)

    def stopped_since(self, started_at: float) -> str | None:
        """The stop reason if the flag was raised at or after `started_at` (this run's start)."""
        now = self.clock()
        if self._stop_checked is not None:
            checked_at, reason = self._stop_checked
            if reason is not None or now - checked_at < self.limits.stop_check_s:
                return reason
        reason = None
        try:
            raw = json.loads(self.storage.read_bytes(f"{self.dir}/stop.json"))
            if float(raw["at"]) >= started_at:
                reason = str(raw["reason"])
        except FileNotFoundError:
            pass
        except (ValueError, KeyError, TypeError):
            reason = None
        self._stop_checked = (now, reason)
        return reason

    # ------------------------------------------------------------------ async helpers

    async def acquire(self) -> Slot:
        """Wait for an in-flight slot (polling storage every `poll_s`)."""
        while True:
            slot = await asyncio.to_thread(self.try_acquire)
            if slot is not None:
                return slot
            await asyncio.sleep(self.limits.poll_s * (0.5 + self._rng.random()))

    async def claim(self) -> None:
        """Wait until one more create fits in the window, and claim it."""
        while (wait := await asyncio.to_thread(self.try_claim)) > 0:
            await asyncio.sleep(wait)

    async def keep_renewed(self) -> None:
        """Renew the held slots every third of the lease until cancelled (run it as a task)."""
        while True:
            await asyncio.sleep(self.limits.lease_ttl_s / 3)
            await asyncio.to_thread(self.renew)

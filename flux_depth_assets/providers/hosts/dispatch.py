"""One run's hosts, put together: which host an image goes to, and what a create must pass first.

The hosted client asks `HostDispatch` three things, and nothing else about hosts:

- `host_for(journaled_netloc)`: the host for an image (the one holding its journaled prediction,
  else the preferred host still in play), or a one-line reason why there is none;
- `admit(host)` before every create: refuses when the account was stopped (402, bad key) by any
  run sharing it, else waits for an in-flight slot and a place in the account's window of creates
  (both shared through the storage root) and returns a `Permit`, released when the prediction is
  final (`release`);
- `observe(host, error)` after every answer: feeds the failover roster, and raises the account's
  stop flag on an error no request can survive.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass

from flux_depth_assets.providers.hosts.base import HostError
from flux_depth_assets.providers.hosts.failover import HostRoster
from flux_depth_assets.providers.hosts.limits import AccountGate, ExclusiveStorage, Slot
from flux_depth_assets.providers.hosts.plan import MINUTE_S, HostCredentials


@dataclass(frozen=True)
class Permit:
    """Leave to create one prediction on `host`; release it when the prediction is final."""

    host: HostCredentials
    slot: Slot


class HostDispatch:
    """The hosts of one run. Use from the run's event loop."""

    def __init__(
        self,
        hosts: list[HostCredentials],
        storage: ExclusiveStorage,
        *,
        unavailable_after_s: float,
        warn: Callable[[str], None],
        clock: Callable[[], float] = time.time,
        window_s: float = MINUTE_S,
        poll_s: float = 0.25,
    ):
        self.hosts = {h.host.name: h for h in hosts}
        self.roster = HostRoster(list(self.hosts), unavailable_after_s, warn=warn)
        self.gates = {
            name: AccountGate(
                storage,
                name,
                h.host.account_name(h.key),
                dataclasses.replace(h.host.limits(window_s), poll_s=poll_s),
                clock=clock,
            )
            for name, h in self.hosts.items()
            if h.key
        }
        self.started_at = clock()
        for name, h in self.hosts.items():
            if not h.key:
                self.roster.skip(name, f"no API key (set {h.host.api_key_env})")

    def host_for(self, journaled_netloc: str | None = None) -> HostCredentials | str:
        """The host for an image, or why there is none (one line)."""
        if journaled_netloc is not None:
            held = next((h for h in self.hosts.values() if h.host.netloc == journaled_netloc), None)
            if held is None:
                return (
                    f"its prediction is held by {journaled_netloc}, which this catalog no "
                    "longer lists; it stays journaled (creating it elsewhere would pay twice)"
                )
            return held
        name = self.roster.current()
        if name is None:
            reasons = "; ".join(f"{h}: {r}" for h, r in self.roster.skipped.items())
            return f"no host left ({reasons})"
        return self.hosts[name]

    async def admit(self, host: HostCredentials) -> Permit | str:
        """Wait for leave to create on `host`; a one-line refusal when the account is stopped
        or the host was skipped meanwhile."""
        name = host.host.name
        gate = self.gates.get(name)
        if gate is None or name in self.roster.skipped:
            return f"{name} is not used in this run ({self.roster.skipped.get(name, 'no key')})"
        reason = await asyncio.to_thread(gate.stopped_since, self.started_at)
        if reason is not None:
            self.roster.skip(name, f"the account was stopped by another run ({reason})")
            return f"{name}: account stopped ({reason})"
        slot = await gate.acquire()
        try:
            await gate.claim()
        except BaseException:
            await asyncio.to_thread(gate.release, slot)
            raise
        return Permit(host, slot)

    async def release(self, permit: Permit) -> None:
        gate = self.gates.get(permit.host.host.name)
        if gate is not None:
            await asyncio.to_thread(gate.release, permit.slot)

    def observe(self, host: HostCredentials, error: HostError | None) -> None:
        """Feed one answer from `host` (None: a normal answer) to the roster and the account."""
        name = host.host.name
        if error is not None and error.stops_account and name in self.gates:
            self.gates[name].stop(f"HTTP {error.status}: {error.message}")
        self.roster.observe(name, error.kind if error is not None else None)

    async def keep_renewed(self) -> None:
        """Renew every held in-flight slot until cancelled (run as one task per run)."""
        await asyncio.gather(*(g.keep_renewed() for g in self.gates.values()))

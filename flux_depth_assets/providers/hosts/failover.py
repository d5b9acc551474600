"""Which host serves the next image: the preference list minus the hosts skipped in this run.

A host is skipped for the rest of the run, with one warning, when it answers that it does not
serve the model (retired, renamed), when its account cannot pay or authenticate (the account
stop), or when it has been unavailable (only transient errors after retries) for longer than
`unavailable_after_s`. An image whose prediction the journal already holds on some host stays
on that host, whatever the list says: polling it is free, creating it elsewhere pays twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from flux_depth_assets.providers.hosts.base import ErrorKind

SKIP_AT_ONCE = frozenset({ErrorKind.MODEL_UNAVAILABLE, ErrorKind.AUTH, ErrorKind.OUT_OF_CREDIT})
UNAVAILABLE = frozenset({ErrorKind.TRANSIENT, ErrorKind.RATE_LIMITED})


class HostRoster:
    """One run's view of its hosts. Not thread-safe: use it from the run's event loop."""

    def __init__(
        self,
        hosts: list[str],
        unavailable_after_s: float,
        *,
        warn: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
    ):
        if not hosts:
            raise ValueError("a roster needs at least one host")
        self.hosts = list(hosts)
        self.unavailable_after_s = unavailable_after_s
        self.warn = warn
        self.clock = clock
        self.skipped: dict[str, str] = {}
        self._failing_since: dict[str, float] = {}

    def current(self) -> str | None:
        """The preferred host still in play, or None when every host is skipped."""
        return next((h for h in self.hosts if h not in self.skipped), None)

    def host_for(self, journaled_host: str | None) -> str | None:
        """Where an image goes: the host holding its journaled prediction, else `current()`."""
        return journaled_host if journaled_host is not None else self.current()

    def skip(self, host: str, reason: str) -> None:
        """Take `host` out for the rest of the run (warns once)."""
        if host in self.skipped:
            return
        self.skipped[host] = reason
        after = self.current()
        self.warn(
            f"{host}: {reason}; skipped for the rest of this run"
            + (f", using {after}" if after else "; no host left")
        )

    def observe(self, host: str, kind: ErrorKind | None) -> None:
        """Feed the outcome of one request to `host` (None: it answered normally)."""
        if kind is None:
            self._failing_since.pop(host, None)
            return
        if kind in SKIP_AT_ONCE:
            self.skip(
                host,
                {
                    ErrorKind.MODEL_UNAVAILABLE: "does not serve the model",
                    ErrorKind.AUTH: "rejected the API key",
                    ErrorKind.OUT_OF_CREDIT: "the account is out of credit",
                }[kind],
            )
        elif kind in UNAVAILABLE:
            since = self._failing_since.setdefault(host, self.clock())
            if self.clock() - since >= self.unavailable_after_s:
                self.skip(
                    host, f"unavailable for {self.unavailable_after_s:g} s (unavailable_after_s)"
                )

"""One paid run per catalog at a time, whatever starts it (CLI, UI, sensor, backfill, workers).

A lease is a generation file under the storage root, `leases/<catalog>/<generation>.json`, created
with `Storage.create_exclusive`, so of two runs racing for the same generation exactly one wins,
on a local folder and on S3 alike. The holder rewrites its file every `ttl_s / 4` (heartbeat);
a holder that was SIGKILLed stops doing so and its lease expires after `ttl_s`, so it never
blocks the catalog for long. Whoever then creates the next generation holds the lease; older
generations are removed by the winner.

A holder on the same machine is not waited for once its process has exited: the lease names
the process (boot id, PID namespace, PID and start time, from Linux's `/proc`), and a run that
sees the same boot and namespace but no such process takes the lease over at once. Anything it
cannot prove gone (another machine or container, no `/proc`) it waits out as above.

A run that finds the lease held waits up to `wait_s`, then refuses with one line (`LeaseBusy`)
naming the holder; nothing has been paid at that point.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Self

from flux_depth_assets.paths import safe_segment
from flux_depth_assets.storage.store import Storage

log = logging.getLogger(__name__)
LEASE_DIR = "leases"
TTL_ENV = "FLUX_DEPTH_LEASE_TTL_S"
WAIT_ENV = "FLUX_DEPTH_LEASE_WAIT_S"
DEFAULT_TTL_S = 60.0
DEFAULT_WAIT_S = 60.0
_DIGITS = 12


class LeaseBusy(RuntimeError):
    """Another run holds the catalog's lease (and kept it for longer than this run would wait)."""


def _float_env(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    try:
        return max(0.0, float(raw)) if raw else default
    except ValueError:
        return default


@dataclass
class Holder:
    """What a lease file says: who holds it and until when (epoch seconds)."""

    owner: str
    expires_at: float
    since: str = ""
    host: str = ""
    pid: int = 0
    run_id: str = ""
    # which process on which boot (see `_this_process`); empty where /proc is missing
    boot_id: str = ""
    pid_ns: str = ""
    started: int = 0

    def to_bytes(self) -> bytes:
        return json.dumps(self.__dict__, sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Holder:
        raw = json.loads(data)
        return cls(**{k: raw[k] for k in cls.__dataclass_fields__ if k in raw})

    def describe(self) -> str:
        who = f"run {self.run_id}" if self.run_id else "another run"
        return f"{who} (pid {self.pid} on {self.host or 'unknown host'}, since {self.since})"

    def has_exited(self) -> bool:
        """True only when the holding process is provably gone: it ran on this boot of this
        machine, in this PID namespace, and its PID now names no process, a zombie, or a
        process started at another time (the PID was reused)."""
        if not (self.boot_id and self.pid_ns and self.pid > 0 and self.started > 0):
            return False
        me = _this_process()
        if me is None or (self.boot_id, self.pid_ns) != (me[0], me[1]):
            return False
        now = _process_start(self.pid)
        return now is None or now != self.started


def _process_start(pid: int) -> int | None:
    """Start time (clock ticks after boot) of a live process, None if there is none or only a
    zombie. Fields after the command name, which may hold spaces and parentheses: state is
    the first, start time the 20th."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return None if fields[0] in (b"Z", b"X", b"x") else int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def _this_process() -> tuple[str, str, int] | None:
    """(boot id, PID namespace, start time) of this process; None without Linux's /proc.
    Read once per process (every heartbeat writes it; a forked child has its own)."""
    return _identity(os.getpid())


@functools.cache
def _identity(pid: int) -> tuple[str, str, int] | None:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
        ns = os.readlink("/proc/self/ns/pid")
    except OSError:
        return None
    started = _process_start(pid)
    return None if started is None or not boot else (boot, ns, started)


@dataclass
class CatalogLease:
    """The paid-run lease of one catalog. Use as a context manager or `acquire()`/`release()`."""

    storage: Storage
    catalog: str
    run_id: str = ""
    ttl_s: float = field(default_factory=lambda: _float_env(TTL_ENV, DEFAULT_TTL_S))
    wait_s: float = field(default_factory=lambda: _float_env(WAIT_ENV, DEFAULT_WAIT_S))
    poll_s: float = 0.2
    on_wait: Callable[[str], None] | None = None
    owner: str = field(default_factory=lambda: uuid.uuid4().hex)
    generation: int | None = None
    lost: str | None = None  # set by the heartbeat when another run took the lease over
    _since: str = ""
    _stop: threading.Event = field(default_factory=threading.Event)
    _beat: threading.Thread | None = None

    @property
    def directory(self) -> str:
        return f"{LEASE_DIR}/{safe_segment(self.catalog)}"

    def _rel(self, generation: int) -> str:
        return f"{self.directory}/{generation:0{_DIGITS}d}.json"

    def _holder(self) -> Holder:
        boot_id, pid_ns, started = _this_process() or ("", "", 0)
        return Holder(
            owner=self.owner,
            expires_at=time.time() + self.ttl_s,
            since=self._since or datetime.now(UTC).isoformat(timespec="seconds"),
            host=socket.gethostname(),
            pid=os.getpid(),
            run_id=self.run_id,
            boot_id=boot_id,
            pid_ns=pid_ns,
            started=started,
        )

    def _generations(self) -> list[int]:
        out = []
        for rel in self.storage.list(self.directory):
            name = rel.rsplit("/", 1)[-1]
            stem = name[: -len(".json")] if name.endswith(".json") else ""
            if len(stem) == _DIGITS and stem.isdigit():
                out.append(int(stem))
        return sorted(out)

    def _read(self, generation: int) -> Holder | None:
        try:
            return Holder.from_bytes(self.storage.read_bytes(self._rel(generation)))
        except FileNotFoundError:
            return None
        except (ValueError, TypeError):  # a torn or foreign file: treat as expired
            return Holder(owner="?", expires_at=0.0)

    # ------------------------------------------------------------------ acquire / release

    def try_acquire(self) -> Holder | None:
        """Take the lease if free; None on success, else the current holder."""
        generations = self._generations()
        if generations:
            top = generations[-1]
            holder = self._read(top)
            if holder is not None and holder.expires_at > time.time():
                if not holder.has_exited():
                    return holder
                log.warning(
                    "catalog %r: taking over the lease of %s, whose process has exited",
                    self.catalog,
                    holder.describe(),
                )
            target = top + 1 if holder is not None else top
        else:
            target = 0
        self._since = datetime.now(UTC).isoformat(timespec="seconds")
        if not self.storage.create_exclusive(self._rel(target), self._holder().to_bytes()):
            return self._read(target) or Holder(owner="?", expires_at=time.time())
        self.generation = target
        for old in generations:  # expired or released generations below ours
            if old < target:
                self.storage.delete(self._rel(old))
        self._start_heartbeat()
        return None

    def acquire(self) -> CatalogLease:
        """Take the lease, waiting up to `wait_s`; raises `LeaseBusy` with one line otherwise."""
        deadline = time.monotonic() + self.wait_s
        announced = False
        while True:
            holder = self.try_acquire()
            if holder is None:
                return self
            if time.monotonic() >= deadline:
                raise LeaseBusy(
                    f"catalog {self.catalog!r} is being paid for by {holder.describe()}; "
                    f"waited {self.wait_s:g} s ({WAIT_ENV}). Nothing was sent; run again when "
                    "it has finished"
                )
            if not announced and self.on_wait is not None:
                self.on_wait(
                    f"catalog {self.catalog!r}: waiting up to {self.wait_s:g} s for "
                    f"{holder.describe()} to finish its paid run"
                )
                announced = True
            time.sleep(min(self.poll_s, max(0.0, deadline - time.monotonic())))

    def release(self) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join(timeout=10)
            self._beat = None
        if self.generation is not None and self.lost is None:
            try:
                self.storage.delete(self._rel(self.generation))
            except Exception as exc:  # noqa: BLE001 - storage gone read-only: it just expires
                log.warning("could not remove the lease of catalog %r: %s", self.catalog, exc)
        self.generation = None

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    # ------------------------------------------------------------------ heartbeat

    def _start_heartbeat(self) -> None:
        self._stop.clear()
        self._beat = threading.Thread(
            target=self._heartbeat, daemon=True, name=f"lease-{self.catalog}"
        )
        self._beat.start()

    def _heartbeat(self) -> None:
        assert self.generation is not None
        interval = max(0.05, self.ttl_s / 4)
        while not self._stop.wait(interval):
            try:
                newer = [g for g in self._generations() if g > self.generation]
                if newer:
                    self.lost = (
                        f"the lease of catalog {self.catalog!r} was taken over by "
                        "another run (this run missed its heartbeats)"
                    )
                    return
                self.storage.write_bytes(self._rel(self.generation), self._holder().to_bytes())
            except Exception as exc:  # noqa: BLE001 - a missed beat; the next one tries again
                log.debug("lease heartbeat of catalog %r failed: %s", self.catalog, exc)

    def check(self) -> None:
        """Raise `LeaseBusy` if the lease was lost (call between batches of paid work)."""
        if self.lost:
            raise LeaseBusy(f"{self.lost}; stopped creating predictions. Re-running is safe")

"""What an upload sensor tick decides, as plain functions: listing, cursor and decision.

The Dagster sensor (`defs/upload_sensors.py`) lists the source with `list_fingerprints` (stat-only:
no object is read), reads its cursor with `UploadCursor.from_json` and asks `evaluate_tick` whether
to request a run; everything here is pure apart from the listing, so it is tested without Dagster.

The cursor stays a few hundred bytes whatever the catalog size (see `UploadCursor`): it keeps an
order-independent digest of the settled listing instead of the keys, so new, changed, deleted and
late objects (e.g. moved in with an old mtime) are all detected, and it never depends on the order
in which the source lists objects.

Settling: an object younger than `settle_seconds`, or whose size changed since the previous tick,
is not taken. While anything is settling the run waits (the run rescans the whole catalog, so a
half-written file would otherwise be read), for at most `max_settle_wait_seconds` after the first
waiting change, so a folder that never goes quiet still refreshes.

Run keys are `upload:<catalog>:<generation>:<hash of previous and new digest>`: a tick retried
with the same cursor asks for the same key, so Dagster never launches it twice.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from flux_depth_assets.config.models import (
    LocalDirSource,
    S3PrefixSource,
    UploadSensorConfig,
    UrlManifestSource,
)
from flux_depth_assets.sources.base import SourceError

CURSOR_VERSION = 1
EDGE_CAP = 64  # ids of objects at the high-water mark kept to tell "new" at the boundary
PENDING_CAP = 256  # unsettled objects whose size is remembered to see them still growing
_MASK = (1 << 64) - 1


# --------------------------------------------------------------------------- listing


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """What the sensor knows about an object without reading it."""

    key: str
    size: int
    mtime: float  # seconds since the epoch; 0 = unknown
    etag: str = ""


def _compile_include(patterns: list[str]) -> Callable[[str], Any]:
    return re.compile("|".join(f"(?:{fnmatch.translate(p.lower())})" for p in patterns)).match


def _stat_entry(entry: os.DirEntry[str], real_root: str) -> os.stat_result | None:
    """The file's stat, following a link only when it stays inside the folder; None to skip."""
    if entry.is_symlink():
        real = os.path.realpath(entry.path)
        if not real.startswith(real_root + os.sep) or not os.path.isfile(real):
            return None
        return os.stat(real)
    if entry.is_file(follow_symlinks=False):
        return entry.stat(follow_symlinks=False)
    return None


def walk_local_dir(source: LocalDirSource) -> list[Fingerprint]:
    """The `local_dir` listing rules (hidden names skipped, include on the file name, links that
    leave the folder refused) with one `lstat` per file: ~0.3 s for 100k files."""
    from flux_depth_assets.sources.local_dir import check_root

    root = source.path
    # missing folder, system folder or inside the storage root: SourceError, as in the scan
    storage_dirs = {str(p) for p in check_root(source)[1]}  # never watch our own outputs
    real_root = os.path.realpath(root)
    match = _compile_include(source.include)
    out: list[Fingerprint] = []
    stack = [(root, "")]
    while stack:
        directory, rel = stack.pop()
        try:
            entries = os.scandir(directory)
        except OSError:
            continue  # vanished or unreadable sub-folder: same as the scan, which skips it
        with entries:
            for entry in entries:
                name = entry.name
                if name.startswith("."):
                    continue
                try:
                    if entry.is_dir(follow_symlinks=False):
                        if source.recursive and os.path.realpath(entry.path) not in storage_dirs:
                            stack.append((entry.path, f"{rel}{name}/"))
                        continue
                    st = _stat_entry(entry, real_root) if match(name.lower()) else None
                except OSError:
                    continue  # deleted between listing and stat
                if st is not None:
                    out.append(Fingerprint(f"{rel}{name}", st.st_size, st.st_mtime))
    return out


def _manifest_fingerprint(source: UrlManifestSource) -> Fingerprint:
    # The manifest file is what changes; the images behind its URLs are not polled.
    import fsspec

    try:
        fs, path = fsspec.core.url_to_fs(source.path)
        info = fs.info(path)
    except FileNotFoundError:
        raise SourceError(f"url_manifest {source.path!r} does not exist") from None
    except Exception as exc:  # noqa: BLE001 - fsspec backends raise their own types; one line names the source
        raise SourceError(f"url_manifest {source.path!r}: {type(exc).__name__}: {exc}") from None
    mtime = info.get("mtime") or info.get("LastModified") or info.get("created") or 0
    if hasattr(mtime, "timestamp"):
        mtime = mtime.timestamp()
    return Fingerprint(
        os.path.basename(path),
        int(info.get("size") or 0),
        float(mtime),
        str(info.get("ETag", "")).strip('"'),
    )


def list_fingerprints(
    source: LocalDirSource | S3PrefixSource | UrlManifestSource, *, s3_client: Any | None = None
) -> list[Fingerprint]:
    """The source's objects as fingerprints, in no particular order."""
    if isinstance(source, LocalDirSource):
        return walk_local_dir(source)
    if isinstance(source, S3PrefixSource):
        from flux_depth_assets.sources.s3_prefix import iter_s3_prefix

        return [
            Fingerprint(o.key, o.size, o.mtime, o.etag) for o in iter_s3_prefix(source, s3_client)
        ]
    if isinstance(source, UrlManifestSource):
        return [_manifest_fingerprint(source)]
    raise SourceError(f"source type {source.type!r} cannot be watched")


# --------------------------------------------------------------------------- the cursor


def _fp_hash(fp: Fingerprint) -> int:
    # mtime in whole microseconds so float formatting never changes the digest
    raw = f"{fp.key}\0{fp.size}\0{round(fp.mtime * 1e6)}\0{fp.etag}".encode()
    return int.from_bytes(hashlib.blake2b(raw, digest_size=8).digest(), "big")


def _key_id(key: str) -> str:
    return hashlib.blake2b(key.encode(), digest_size=6).hexdigest()


def _hash_id(h: int) -> str:
    return f"{h:016x}"[:12]


@dataclass(frozen=True)
class UploadCursor:
    """Compact per-catalog state; bounded by EDGE_CAP + PENDING_CAP short ids, never by N.

    `n == -1` means "first tick still waiting for uploads to settle".
    """

    n: int = 0  # settled objects at the last recorded state
    digest: int = 0  # Σ hash(key, size, mtime, etag) mod 2^64 over those objects
    hw: float = 0.0  # highest mtime among them (the high-water mark)
    hn: int = 0  # how many of them have mtime == hw
    hs: int = 0  # Σ hash over those (the boundary's own digest)
    edge: tuple[str, ...] = ()  # the EDGE_CAP smallest hash ids at hw (all of them if hn ≤ cap)
    pending: dict[str, int] = field(default_factory=dict)  # unsettled id → size last seen
    waiting_since: float = 0.0  # when settled changes started waiting on unsettled objects
    gen: int = 0  # runs requested so far (part of the run key)

    def to_json(self) -> str:
        body: dict[str, Any] = {
            "v": CURSOR_VERSION,
            "n": self.n,
            "d": f"{self.digest:016x}",
            "hw": self.hw,
            "hn": self.hn,
            "hs": f"{self.hs:016x}",
            "e": list(self.edge),
            "g": self.gen,
        }
        if self.pending:
            body["p"] = self.pending
        if self.waiting_since:
            body["w"] = self.waiting_since
        return json.dumps(body, separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | None) -> UploadCursor | None:
        """None for a first tick (no cursor) or a cursor this version cannot read."""
        if not text:
            return None
        try:
            raw = json.loads(text)
            if raw.get("v") != CURSOR_VERSION:
                return None
            return cls(
                n=int(raw["n"]),
                digest=int(raw["d"], 16),
                hw=float(raw["hw"]),
                hn=int(raw.get("hn", 0)),
                hs=int(raw.get("hs", "0"), 16),
                edge=tuple(str(e) for e in raw.get("e", ())),
                pending=dict(raw.get("p", {})),
                waiting_since=float(raw.get("w", 0.0)),
                gen=int(raw.get("g", 0)),
            )
        except (ValueError, TypeError, KeyError, AttributeError):
            return None


# --------------------------------------------------------------------------- one tick


@dataclass(frozen=True)
class TickDecision:
    cursor: UploadCursor
    run_key: str | None = None  # set: request a run
    skip_reason: str | None = None  # set: no run, and why
    total: int = 0  # objects listed
    settled: int = 0
    settling: int = 0
    new: int = 0  # settled objects above (or new at) the previous mark
    other_changes: bool = False  # deletions, in-place changes, objects with old mtimes


@dataclass
class _Tally:
    """How many objects, and their order-independent digest (Σ hash mod 2^64)."""

    count: int = 0
    digest: int = 0

    def add(self, h: int) -> None:
        self.count += 1
        self.digest = (self.digest + h) & _MASK


@dataclass
class _Listing:
    """One pass over the listing: the settled state, and how it sits against the previous mark."""

    total: int = 0  # objects listed
    settled: _Tally = field(default_factory=_Tally)
    hw: float = 0.0
    at_hw: _Tally = field(default_factory=_Tally)
    hw_hashes: list[int] = field(default_factory=list)  # at hw, trimmed to the smallest
    above: _Tally = field(default_factory=_Tally)  # newer than the previous mark
    at_mark: _Tally = field(default_factory=_Tally)  # exactly at the previous mark
    mark_new: int = 0  # of those, not in the previous edge
    mark_seen: int = 0  # of those, in the previous edge
    unsettled: dict[str, int] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return self.settled.count

    @property
    def digest(self) -> int:
        return self.settled.digest

    def add(self, fp: Fingerprint, h: int) -> None:
        """Count a settled object into the new state."""
        self.settled.add(h)
        if fp.mtime > self.hw:
            self.hw, self.at_hw, self.hw_hashes = fp.mtime, _Tally(1, h), [h]
        elif fp.mtime == self.hw:
            self.at_hw.add(h)
            self.hw_hashes.append(h)
            if len(self.hw_hashes) > 4 * EDGE_CAP:
                self.hw_hashes = sorted(self.hw_hashes)[:EDGE_CAP]

    def compare(self, fp: Fingerprint, h: int, base: UploadCursor, edge: set[str]) -> None:
        """Place a settled object against the previous mark `base.hw`."""
        if fp.mtime > base.hw:
            self.above.add(h)
        elif fp.mtime == base.hw:
            self.at_mark.add(h)
            if _hash_id(h) in edge:
                self.mark_seen += 1
            elif base.hn <= EDGE_CAP:
                self.mark_new += 1

    def state(self, gen: int) -> UploadCursor:
        return UploadCursor(
            n=self.n,
            digest=self.digest,
            hw=self.hw,
            hn=self.at_hw.count,
            hs=self.at_hw.digest,
            edge=tuple(_hash_id(h) for h in sorted(self.hw_hashes)[:EDGE_CAP]),
            pending=dict(sorted(self.unsettled.items())[:PENDING_CAP]),
            gen=gen,
        )

    def changes(self, base: UploadCursor | None) -> tuple[int, bool]:
        """(new objects, other changes) since `base`; on a first tick everything is new."""
        if base is None:
            return self.n, False
        edge_complete = base.hn <= EDGE_CAP
        # too many objects shared the mark to list them: count them
        mark_new = self.mark_new if edge_complete else max(0, self.at_mark.count - base.hn)
        below = (self.digest - self.at_mark.digest - self.above.digest) & _MASK
        below_changed = below != (base.digest - base.hs) & _MASK
        boundary_lost = (self.mark_seen if edge_complete else self.at_mark.count) < base.hn
        return self.above.count + mark_new, below_changed or boundary_lost


def _scan(
    fingerprints: Iterable[Fingerprint],
    base: UploadCursor | None,
    prev_pending: dict[str, int],
    settle: float,
    now: float,
) -> _Listing:
    ls = _Listing()
    edge = set(base.edge) if base is not None else set()
    for fp in fingerprints:
        ls.total += 1
        young = fp.mtime > 0 and now - fp.mtime < settle
        if young or prev_pending:
            kid = _key_id(fp.key)
            if young or prev_pending.get(kid, fp.size) != fp.size:
                ls.unsettled[kid] = fp.size  # still arriving: not part of the recorded state
                continue
        h = _fp_hash(fp)
        ls.add(fp, h)
        if base is not None:
            ls.compare(fp, h, base, edge)
    return ls


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


@dataclass(frozen=True)
class _Tick:
    """What the decision rules need about this tick."""

    catalog: str
    settings: UploadSensorConfig
    listing: _Listing
    state: UploadCursor  # the listing's state, as the next cursor if a run is requested
    new: int
    other: bool
    waiting_since: float
    now: float

    @property
    def may_wait(self) -> bool:
        waited = self.now - self.waiting_since
        return bool(self.listing.unsettled) and waited < self.settings.max_settle_wait_seconds

    @property
    def settling(self) -> str:
        unsettled = len(self.listing.unsettled)
        if not unsettled:
            return ""
        settle = self.settings.settle_seconds
        return f"{_plural(unsettled, 'object')} younger than {settle:g} s or still growing"

    def skip(self, cursor: UploadCursor, reason: str, **extra: Any) -> TickDecision:
        ls = self.listing
        return TickDecision(
            cursor,
            skip_reason=reason,
            total=ls.total,
            settled=ls.n,
            settling=len(ls.unsettled),
            **extra,
        )


def _first_tick_skip(t: _Tick) -> TickDecision | None:
    n, limit = t.listing.n, t.settings.first_tick_max_files
    if n > limit:
        return t.skip(
            t.state,
            f"first tick: {_plural(n, 'object')} exceed first_tick_max_files={limit:,}; "
            f"recorded them as the baseline, only later uploads trigger runs (backfill catalog "
            f"{t.catalog!r} to process what exists)" + (f"; {t.settling}" if t.settling else ""),
            new=n,
        )
    if t.may_wait:
        waiting = UploadCursor(n=-1, pending=t.state.pending, waiting_since=t.waiting_since)
        return t.skip(
            waiting,
            f"first tick: waiting for uploads to settle ({t.settling}; "
            f"{_plural(n, 'object')} ready)",
            new=n,
        )
    if n == 0:
        return t.skip(t.state, "first tick: the source holds no objects yet")
    return None


def _later_tick_skip(t: _Tick, base: UploadCursor) -> TickDecision | None:
    ls, pending = t.listing, t.state.pending
    if ls.n == base.n and ls.digest == base.digest:
        keep = replace(base, pending=pending, waiting_since=0.0)
        if ls.unsettled:
            return t.skip(
                keep,
                f"waiting for uploads to settle ({t.settling}); no settled object changed "
                f"since the last run request",
            )
        return t.skip(
            keep,
            f"no new, changed or deleted objects since the last run request "
            f"({_plural(ls.n, 'settled object')})",
        )
    if t.may_wait:
        keep = replace(base, pending=pending, waiting_since=t.waiting_since)
        return t.skip(
            keep,
            f"waiting for uploads to settle ({t.settling}); {_plural(t.new, 'new object')}"
            + (" and other changes" if t.other else "")
            + " will be requested once they have "
            f"(or {t.settings.max_settle_wait_seconds:g} s after the wait began)",
            new=t.new,
            other_changes=t.other,
        )
    if t.new == 0 and ls.n < base.n and t.settings.on_delete == "ignore":
        return t.skip(
            t.state,
            f"{_plural(base.n - ls.n, 'object')} deleted and nothing new (on_delete: ignore)",
            other_changes=True,
        )
    return None


def evaluate_tick(
    catalog: str,
    fingerprints: Iterable[Fingerprint],
    prev: UploadCursor | None,
    settings: UploadSensorConfig,
    now: float,
) -> TickDecision:
    """Pure: what a tick does given the listing, the previous cursor and the clock."""
    base = None if prev is None or prev.n < 0 else prev  # the recorded state; None: first tick
    ls = _scan(fingerprints, base, prev.pending if prev else {}, settings.settle_seconds, now)
    new, other = ls.changes(base)
    gen = prev.gen if prev else 0
    waiting_since = prev.waiting_since if prev and prev.waiting_since else now
    t = _Tick(catalog, settings, ls, ls.state(gen), new, other, waiting_since, now)
    skip = _first_tick_skip(t) if base is None else _later_tick_skip(t, base)
    if skip is not None:
        return skip
    before = f"{base.digest}\0{base.n}" if base is not None else "first\x000"
    token = hashlib.blake2b(
        f"{catalog}\0{before}\0{ls.digest}\0{ls.n}".encode(), digest_size=8
    ).hexdigest()
    return TickDecision(
        replace(t.state, gen=gen + 1),
        run_key=f"upload:{catalog}:{gen + 1}:{token}",
        total=ls.total,
        settled=ls.n,
        settling=len(ls.unsettled),
        new=new,
        other_changes=other,
    )

"""Figures measured on stored files, remembered by the files' content hashes.

The quality checks and the contact sheet open the same sample of outputs on every run; when
those files did not change, decoding them again only costs time (an unchanged re-run of a
catalog spent most of its seconds there). Entries are keyed by the SHA-256 of the bytes just
read, so a file that changed on disk (re-made, corrupted, replaced) is measured afresh: the
memo only saves the decoding, never the reading. It lives under `cache/measures/` and is safe
to delete; two runs writing it at once lose nothing but a few entries.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from flux_depth_assets.paths import safe_segment
from flux_depth_assets.pipeline.parallel import PoolConfig, map_ordered
from flux_depth_assets.storage.store import Storage

T = TypeVar("T")

#: entries kept per memo file: the checks' samples are small, so older keys are dropped
MAX_ENTRIES = 512


def content_key(*parts: bytes | str) -> str:
    """One hex key for some files' bytes and other inputs (ids, hashes) that a figure uses."""
    h = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    return h.hexdigest()


class Memo:
    """A small JSON map key → figures for one catalog and one measurement."""

    def __init__(self, store: Storage, catalog: str, name: str, max_entries: int = MAX_ENTRIES):
        self.store = store
        self.max_entries = max_entries
        self.rel = f"cache/measures/{safe_segment(catalog)}/{name}.json"
        self._entries: dict[str, Any] = {}
        self._dirty = False
        if store.exists(self.rel):
            try:
                loaded = json.loads(store.read_bytes(self.rel))
            except ValueError:  # a torn or foreign file: start again, it is only a cache
                loaded = {}
            if isinstance(loaded, dict):
                self._entries = loaded

    def known(self, key: str) -> Any | None:
        """The remembered value of `key`, None when there is none."""
        return self._entries.get(key)

    def put(self, key: str, value: Any) -> None:
        self._entries[key] = value
        self._dirty = True

    def remember(self, key: str, compute: Callable[[], Any]) -> Any:
        """The remembered value of `key`, else `compute()` (remembered when JSON-serialisable)."""
        if key in self._entries:
            return self._entries[key]
        value = compute()
        self.put(key, value)
        return value

    def map(
        self,
        keyed: Sequence[tuple[str, T]],
        fn: Callable[[T], Any],
        pool: PoolConfig | None = None,
        keep: Callable[[Any], bool] = lambda _value: True,
    ) -> list[Any]:
        """`fn(task)` of every (key, task), in order: remembered values for known keys, the
        others computed on the work pool (`fn` module-level and never raising, as a pool task
        must be) and remembered when `keep(value)` (not, say, a read error that may not recur)."""
        out = [self.known(key) for key, _ in keyed]
        todo = [i for i, got in enumerate(out) if got is None]
        made = map_ordered(fn, (keyed[i][1] for i in todo), total=len(todo), config=pool)
        for i, value in zip(todo, made):
            out[i] = value
            if keep(value):
                self.put(keyed[i][0], value)
        return out

    def save(self) -> None:
        """Write the memo if anything was added (the newest `max_entries` entries)."""
        if not self._dirty:
            return
        kept = dict(list(self._entries.items())[-self.max_entries :])
        try:
            self.store.write_bytes(self.rel, json.dumps(kept, separators=(",", ":")).encode())
        except OSError:  # read-only or full storage: the figures stand, the next run re-measures
            return
        self._dirty = False

"""Content-addressed cache of provider outputs, shared by every catalog and run.

A key is `cache_key(source_sha256, provider, model, params_hash)`. The JSON sidecar is written
last, so its presence means the entry is complete.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from flux_depth_assets.storage.store import Storage


@dataclass(frozen=True)
class CachedDepth:
    depth: np.ndarray
    meta: dict[str, Any]


class DepthCache:
    def __init__(self, storage: Storage, kind: str = "depth"):
        self.storage = storage
        self.kind = kind

    def _rel(self, key: str, ext: str) -> str:
        return f"cache/{self.kind}/{key[:2]}/{key}.{ext}"

    def has(self, key: str) -> bool:
        return self.storage.exists(self._rel(key, "json"))

    def meta(self, key: str) -> dict[str, Any] | None:
        if not self.has(key):
            return None
        return json.loads(self.storage.read_bytes(self._rel(key, "json")))

    def get(self, key: str) -> CachedDepth | None:
        meta = self.meta(key)
        if meta is None:
            return None
        depth = np.load(
            io.BytesIO(self.storage.read_bytes(self._rel(key, "npy"))), allow_pickle=False
        )
        return CachedDepth(depth=depth, meta=meta)

    def put(self, key: str, depth: np.ndarray, meta: dict[str, Any]) -> None:
        buf = io.BytesIO()
        np.save(buf, np.asarray(depth, dtype=np.float32), allow_pickle=False)
        self.storage.write_bytes(self._rel(key, "npy"), buf.getvalue())
        self.storage.write_bytes(self._rel(key, "json"), json.dumps(meta, sort_keys=True).encode())

    def get_bytes(self, key: str) -> tuple[bytes, dict[str, Any]] | None:
        """For outputs kept as returned (e.g. `render` mode images)."""
        meta = self.meta(key)
        if meta is None:
            return None
        return self.storage.read_bytes(self._rel(key, meta.get("ext", "bin"))), meta

    def put_bytes(self, key: str, data: bytes, ext: str, meta: dict[str, Any]) -> None:
        self.storage.write_bytes(self._rel(key, ext), data)
        self.storage.write_bytes(
            self._rel(key, "json"), json.dumps({**meta, "ext": ext}, sort_keys=True).encode()
        )

    # A result that is known not to be usable (e.g. a host that answers depth mode with colour
    # renders) is remembered too: the same call would return the same thing, so it is not paid
    # for again. Delete `cache/<kind>-rejected/` to try again.

    def _rejected_rel(self, key: str) -> str:
        return f"cache/{self.kind}-rejected/{key[:2]}/{key}.json"

    def reject(self, key: str, meta: dict[str, Any]) -> None:
        self.storage.write_bytes(self._rejected_rel(key), json.dumps(meta, sort_keys=True).encode())

    def rejection(self, key: str) -> dict[str, Any] | None:
        rel = self._rejected_rel(key)
        if not self.storage.exists(rel):
            return None
        return json.loads(self.storage.read_bytes(rel))

"""A durable journal of paid predictions: the source of truth until a result is durably cached.

One JSON file per cache key, `journal/eachlabs/<cache_key>.json`, written atomically with
`Storage.write_bytes` (temp file + rename locally, one PUT on S3):

- `state: "sending"`: written BEFORE a create request leaves. If the run dies before the host
  answers, the next run finds this entry without an id: the host may or may not have created
  (and charged) a prediction. That run reports it as an `uncertain` attempt, with its possible
  cost, and creates again: the one double payment the protocol cannot prevent, counted.
- `state: "created"`: the host returned the prediction id; written BEFORE the first poll. A later
  run that meets this entry polls the id instead of creating a new prediction.
- `state: "downloaded"`: the output was fetched; the bytes are kept in the entry (base64), so a run
  that dies before caching them never pays for them again.

An entry is removed only when the pipeline says the result is durable (`settle`, called after
the result was cached and its cost recorded). Entries for predictions that could not finish
(deadline, lost contact, storage trouble) stay, and the next run resumes them. An entry never
holds the API key or an output URL (signed URLs are credentials too): only ids, hosts, the run
that paid, and the output bytes.
"""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Literal

from flux_depth_assets.paths import safe_segment
from flux_depth_assets.storage.store import Storage

log = logging.getLogger(__name__)

JOURNAL_DIR = "journal/eachlabs"
SCHEMA_VERSION = 2


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class JournalEntry:
    cache_key: str
    image_id: str
    prediction_id: str | None  # None while `sending`
    host: str  # netloc of the API base URL the id belongs to
    model: str
    version: str
    state: Literal["sending", "created", "downloaded"] = "created"
    run_id: str = ""  # the run that sent the create (and paid)
    cost_usd: float = 0.0  # what the create costs (the configured price when it was sent)
    created_at: str = field(default_factory=_now)
    updated_at: str = field(default_factory=_now)
    replaced_prediction_ids: list[str] = field(default_factory=list)
    output_b64: str | None = None
    output_content_type: str | None = None
    schema: int = SCHEMA_VERSION

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> JournalEntry:
        raw = json.loads(data)
        known = {k: raw[k] for k in cls.__dataclass_fields__ if k in raw}
        entry = cls(**known)
        if not entry.cache_key or (not entry.prediction_id and entry.state != "sending"):
            raise ValueError("journal entry without prediction_id/cache_key")
        return entry

    def output(self) -> bytes | None:
        return base64.b64decode(self.output_b64) if self.output_b64 else None


class PredictionJournal:
    """Journal entries on a `Storage`, keyed by cache key. Synchronous; call from a thread."""

    def __init__(self, storage: Storage, directory: str = JOURNAL_DIR):
        self.storage = storage
        self.directory = directory.strip("/")

    def __repr__(self) -> str:
        return f"PredictionJournal({self.storage.uri(self.directory)!r})"

    def rel(self, cache_key: str) -> str:
        return f"{self.directory}/{safe_segment(cache_key)}.json"

    def load(self, cache_keys: set[str]) -> dict[str, JournalEntry]:
        """Entries for these keys (one listing, then one read per journaled key)."""
        found: dict[str, JournalEntry] = {}
        for rel in self.storage.list(self.directory):
            name = rel.rsplit("/", 1)[-1]
            if not name.endswith(".json") or name.startswith("."):
                continue
            key = name[: -len(".json")]
            if key not in cache_keys:
                continue
            try:
                found[key] = JournalEntry.from_bytes(self.storage.read_bytes(rel))
            except (ValueError, TypeError, KeyError) as exc:
                log.warning("ignoring unreadable journal entry %s: %s", rel, exc)
        return found

    def get(self, cache_key: str) -> JournalEntry | None:
        rel = self.rel(cache_key)
        if not self.storage.exists(rel):
            return None
        return JournalEntry.from_bytes(self.storage.read_bytes(rel))

    def keys(self) -> list[str]:
        return [
            rel.rsplit("/", 1)[-1][: -len(".json")]
            for rel in self.storage.list(self.directory)
            if rel.endswith(".json") and not rel.rsplit("/", 1)[-1].startswith(".")
        ]

    def write(self, entry: JournalEntry) -> None:
        entry.updated_at = _now()
        self.storage.write_bytes(self.rel(entry.cache_key), entry.to_bytes())

    def record_output(self, entry: JournalEntry, data: bytes, content_type: str) -> None:
        entry.state = "downloaded"
        entry.output_b64 = base64.b64encode(data).decode("ascii")
        entry.output_content_type = content_type or None
        try:
            self.write(entry)
        finally:
            entry.output_b64 = None  # the bytes live on storage, not in this process's memory

    def clear(self, cache_key: str) -> None:
        self.storage.delete(self.rel(cache_key))

    def unwritable(self) -> str | None:
        """None when the journal can be written, else why not (see `Storage.unwritable`)."""
        return self.storage.unwritable(self.directory)

"""Merge a lineage partition's small files into one, without losing or duplicating a row.

The dataset's content is defined as: for every (run_id, asset), the rows of its latest file.
Compaction keeps that content exactly:

1. Every `compacted-*.parquet` records, in its Parquet metadata, the name and sha256 of each
   file it absorbed. A listed file still present with the same bytes is a leftover of an
   interrupted compaction: its rows are already in the compacted file, so it is deleted unread.
2. A listed name present with different bytes was rewritten since (a retried step replaces its
   own file): its (run_id, asset) rows in older compacted files are superseded and dropped.
3. The merged table is written atomically under a name derived from its inputs, read back and
   compared with what was merged; only then are the inputs deleted. A crash at any point leaves
   either the inputs, or the inputs plus a compacted file that step 1 cleans up on the next run.

Partitions of the current UTC day are skipped by default: runs may still be writing there.
"""

from __future__ import annotations

import hashlib
import io
import json
import posixpath
from dataclasses import dataclass, field
from datetime import date, datetime, UTC

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from flux_depth_assets.lineage.queries import table_dir
from flux_depth_assets.lineage.schemas import TABLES, conform
from flux_depth_assets.storage.store import Storage

COMPACTED_PREFIX = "compacted-"
SOURCES_KEY = b"flux_depth.compacted_from"


@dataclass
class PartitionCompaction:
    table: str
    catalog: str
    day: date
    files_before: int
    rows: int = 0
    output: str | None = None
    leftovers_removed: list[str] = field(default_factory=list)
    superseded_rows: int = 0
    skipped: str | None = None  # why nothing was done

    @property
    def partition(self) -> str:
        return f"{self.table}/catalog={self.catalog}/date={self.day.isoformat()}"


def compact(store: Storage, tables: list[str] | None = None, catalog: str | None = None,
            include_today: bool = False, dry_run: bool = False,
            today: date | None = None) -> list[PartitionCompaction]:
    """Compact every matching partition; returns one report per partition looked at."""
    today = today or datetime.now(UTC).date()
    out = []
    for table in tables or list(TABLES):
        for cat_dir in store.list(table_dir(table)):
            cat_name = posixpath.basename(cat_dir)
            if not cat_name.startswith("catalog="):
                continue
            cat = cat_name.split("=", 1)[1]
            if catalog and cat != catalog:
                continue
            for day_dir in store.list(cat_dir):
                day_name = posixpath.basename(day_dir)
                if not day_name.startswith("date="):
                    continue
                day = date.fromisoformat(day_name.split("=", 1)[1])
                report = PartitionCompaction(table, cat, day, files_before=0)
                if day >= today and not include_today:
                    report.skipped = "current UTC day (use --include-today)"
                    report.files_before = len(_parquet_files(store, day_dir))
                else:
                    compact_partition(store, table, day_dir, report, dry_run=dry_run)
                out.append(report)
    return out


def _parquet_files(store: Storage, rel_dir: str) -> list[str]:
    return [p for p in store.list(rel_dir)
            if p.endswith(".parquet") and not posixpath.basename(p).startswith((".", "_"))]


def _sources(data: bytes) -> dict[str, str]:
    meta = pq.read_schema(io.BytesIO(data)).metadata or {}
    raw = meta.get(SOURCES_KEY)
    return json.loads(raw) if raw else {}


def compact_partition(store: Storage, table: str, rel_dir: str, report: PartitionCompaction,
                      dry_run: bool = False) -> PartitionCompaction:
    schema = TABLES[table]
    files = _parquet_files(store, rel_dir)
    report.files_before = len(files)
    blobs = {posixpath.basename(f): store.read_bytes(f) for f in files}
    shas = {n: hashlib.sha256(b).hexdigest() for n, b in blobs.items()}
    listed: dict[str, set[str]] = {}  # absorbed file name -> shas it had when absorbed
    for n, b in blobs.items():
        if n.startswith(COMPACTED_PREFIX):
            for src, sha in _sources(b).items():
                listed.setdefault(src, set()).add(sha)
    leftovers = sorted(n for n in blobs if shas[n] in listed.get(n, ()))
    live = [n for n in sorted(blobs) if n not in leftovers]
    if len(live) < 2 and not leftovers:
        report.skipped = "nothing to merge" if live else "empty partition"
        return report

    tables = {n: conform(pq.read_table(io.BytesIO(blobs[n])), schema) for n in live}
    # Plain files win over older compacted copies of the same (run_id, asset).
    fresh_keys: set[tuple[str, str]] = set()
    for n in live:
        if not n.startswith(COMPACTED_PREFIX):
            t = tables[n]
            fresh_keys.update(zip(t["run_id"].to_pylist(), t["asset"].to_pylist()))
    if fresh_keys:
        for n in live:
            if n.startswith(COMPACTED_PREFIX):
                t = tables[n]
                keep = pa.array([(r, a) not in fresh_keys for r, a in
                                 zip(t["run_id"].to_pylist(), t["asset"].to_pylist())])
                report.superseded_rows += t.num_rows - int(pc.sum(keep).as_py() or 0)
                tables[n] = t.filter(keep)
    merged = pa.concat_tables([tables[n] for n in live]) if live else schema.empty_table()
    merged = merged.sort_by([("started_at", "ascending"), ("run_id", "ascending"),
                             ("asset", "ascending")])
    report.rows = merged.num_rows
    report.leftovers_removed = leftovers
    if dry_run:
        return report

    sources = {n: shas[n] for n in live}
    digest = hashlib.sha256(json.dumps(sources, sort_keys=True).encode()).hexdigest()[:16]
    out_name = f"{COMPACTED_PREFIX}{digest}.parquet"
    out_rel = f"{rel_dir}/{out_name}"
    if len(live) >= 2:
        meta = {**(schema.metadata or {}), SOURCES_KEY: json.dumps(sources, sort_keys=True).encode()}
        store.write_table(out_rel, merged.replace_schema_metadata(meta))
        check = conform(store.read_table(out_rel), schema)
        if not check.equals(merged):
            store.delete(out_rel)
            raise RuntimeError(f"compaction of {rel_dir} failed verification; inputs kept")
        report.output = out_rel
        removed = [n for n in live if n != out_name]
    else:  # only leftovers to clean: the one compacted file left already holds every row
        report.output = f"{rel_dir}/{live[0]}" if live else None
        removed = []
    for n in leftovers + removed:
        store.delete(f"{rel_dir}/{n}")
    return report

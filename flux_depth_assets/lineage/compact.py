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
from datetime import UTC, date, datetime

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


def compact(
    store: Storage,
    tables: list[str] | None = None,
    catalog: str | None = None,
    include_today: bool = False,
    dry_run: bool = False,
    today: date | None = None,
) -> list[PartitionCompaction]:
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
    return [
        p
        for p in store.list(rel_dir)
        if p.endswith(".parquet") and not posixpath.basename(p).startswith((".", "_"))
    ]


def _sources(data: bytes) -> dict[str, str]:
    meta = pq.read_schema(io.BytesIO(data)).metadata or {}
    raw = meta.get(SOURCES_KEY)
    return json.loads(raw) if raw else {}


def _is_compacted(name: str) -> bool:
    return name.startswith(COMPACTED_PREFIX)


def _leftovers(blobs: dict[str, bytes], shas: dict[str, str]) -> list[str]:
    """Files a compacted file absorbed with these very bytes: an interrupted compaction's inputs."""
    listed: dict[str, set[str]] = {}  # absorbed file name -> shas it had when absorbed
    for name, data in blobs.items():
        if _is_compacted(name):
            for src, sha in _sources(data).items():
                listed.setdefault(src, set()).add(sha)
    return sorted(n for n in blobs if shas[n] in listed.get(n, ()))


def _run_assets(t: pa.Table) -> list[tuple[str, str]]:
    return list(zip(t["run_id"].to_pylist(), t["asset"].to_pylist(), strict=True))


def _drop_superseded(tables: dict[str, pa.Table]) -> int:
    """Plain files win over older compacted copies of the same (run_id, asset): drop those
    copies' rows in place; how many were dropped."""
    fresh = {k for n, t in tables.items() if not _is_compacted(n) for k in _run_assets(t)}
    dropped = 0
    for name, t in tables.items():
        if fresh and _is_compacted(name):
            keep = pa.array([k not in fresh for k in _run_assets(t)], type=pa.bool_())
            dropped += t.num_rows - int(pc.sum(keep).as_py() or 0)
            tables[name] = t.filter(keep)
    return dropped


def _write_verified(
    store: Storage, rel_dir: str, schema: pa.Schema, merged: pa.Table, sources: dict[str, str]
) -> str:
    """Write the merged table under a name derived from its inputs, read it back and compare."""
    listing = json.dumps(sources, sort_keys=True)
    out_rel = (
        f"{rel_dir}/{COMPACTED_PREFIX}{hashlib.sha256(listing.encode()).hexdigest()[:16]}.parquet"
    )
    meta = {**(schema.metadata or {}), SOURCES_KEY: listing.encode()}
    store.write_table(out_rel, merged.replace_schema_metadata(meta))
    if not conform(store.read_table(out_rel), schema).equals(merged):
        store.delete(out_rel)
        raise RuntimeError(f"compaction of {rel_dir} failed verification; inputs kept")
    return out_rel


def _merged(tables: dict[str, pa.Table], schema: pa.Schema) -> pa.Table:
    merged = pa.concat_tables(list(tables.values())) if tables else schema.empty_table()
    return merged.sort_by(
        [("started_at", "ascending"), ("run_id", "ascending"), ("asset", "ascending")]
    )


def _replace_inputs(
    store: Storage,
    rel_dir: str,
    schema: pa.Schema,
    merged: pa.Table,
    sources: dict[str, str],
    leftovers: list[str],
) -> str | None:
    """Write the merged file (when there are two inputs or more), then delete what it holds;
    the partition's one remaining file."""
    if len(sources) >= 2:
        output: str | None = _write_verified(store, rel_dir, schema, merged, sources)
        removed = [n for n in sources if f"{rel_dir}/{n}" != output]
    else:  # only leftovers to clean: the one compacted file left already holds every row
        output = next((f"{rel_dir}/{n}" for n in sources), None)
        removed = []
    for n in leftovers + removed:
        store.delete(f"{rel_dir}/{n}")
    return output


def compact_partition(
    store: Storage, table: str, rel_dir: str, report: PartitionCompaction, dry_run: bool = False
) -> PartitionCompaction:
    schema = TABLES[table]
    files = _parquet_files(store, rel_dir)
    report.files_before = len(files)
    blobs = {posixpath.basename(f): store.read_bytes(f) for f in files}
    shas = {n: hashlib.sha256(b).hexdigest() for n, b in blobs.items()}
    leftovers = _leftovers(blobs, shas)
    live = [n for n in sorted(blobs) if n not in leftovers]
    if len(live) < 2 and not leftovers:
        report.skipped = "nothing to merge" if live else "empty partition"
        return report

    tables = {n: conform(pq.read_table(io.BytesIO(blobs[n])), schema) for n in live}
    report.superseded_rows += _drop_superseded(tables)
    merged = _merged(tables, schema)
    report.rows = merged.num_rows
    report.leftovers_removed = leftovers
    if not dry_run:
        sources = {n: shas[n] for n in live}
        report.output = _replace_inputs(store, rel_dir, schema, merged, sources, leftovers)
    return report

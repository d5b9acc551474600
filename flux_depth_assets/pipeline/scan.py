"""Scan a catalog's source into the `source_images` manifest (accepted, rejected, duplicate rows).

Each accepted image is stored once, normalised to 8-bit RGB PNG, under its content-derived id,
so every provider reads the same pixels whatever the original format, mode or orientation.
Unchanged files (same key, size and mtime as the previous scan) are not read again. Objects whose
listing cannot say that (URLs) are read conditionally on the validators of their previous row
(ETag, Last-Modified): "not modified" reuses the row, anything else is validated as new content.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, field
from datetime import datetime, UTC
from collections.abc import Callable

import pyarrow as pa

from flux_depth_assets.config.models import CatalogConfig
from flux_depth_assets.imaging.validation import Rejected, validate_image_bytes
from flux_depth_assets.pipeline.source_mask import write_mask
from flux_depth_assets.sources import SourceObject, Validators, list_objects
from flux_depth_assets.storage.schemas import SOURCE_IMAGES, table_from_rows
from flux_depth_assets.storage.store import FileIndex, Storage

ASSET = "source_images"


@dataclass
class ScanResult:
    rows: list[dict]
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def accepted(self) -> list[dict]:
        return [r for r in self.rows if r["status"] == "accepted"]

    @property
    def rejected(self) -> list[dict]:
        return [r for r in self.rows if r["status"] == "rejected"]

    def table(self) -> pa.Table:
        return table_from_rows(self.rows, SOURCE_IMAGES)

    @property
    def reject_ratio(self) -> float:
        files = self.counts.get("files", 0)
        return self.counts.get("rejected", 0) / files if files else 0.0


def _ts(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=UTC)


def _ts_or_none(epoch: float | None) -> datetime | None:
    return None if epoch is None else _ts(epoch)


def scan_catalog(catalog: CatalogConfig, storage: Storage,
                 log: Callable[[str], None] | None = None) -> ScanResult:
    t0 = time.perf_counter()
    now = datetime.now(UTC)
    # With the schema, rows of a table written before a column was added have it (as None).
    previous = storage.partition_rows(ASSET, catalog.name, key="source_uri", schema=SOURCE_IMAGES)
    present = FileIndex(storage, Storage.dir_rel(catalog.name, ASSET))
    objects = list_objects(catalog.source, storage_root=storage.root)  # never our own outputs
    rows: list[dict] = []
    seen: dict[str, str] = {}  # sha256 → first uri
    counts = dict(files=len(objects), accepted=0, rejected=0, duplicates=0, new=0, unchanged=0)
    for n, obj in enumerate(objects, 1):
        prev = previous.get(obj.uri)
        if obj.conditional_read is not None:
            row, reused = _revalidate(prev, obj, catalog, storage, present, counts)
        else:
            kept = _reuse(prev, obj, present)
            reused = kept is not None
            row = kept if kept is not None else _check(obj, catalog, storage, present, counts)
            row["etag"] = obj.etag or None
        counts["unchanged"] += reused
        row["external_id"] = obj.external_id
        row["scanned_at"] = now
        sha = row.get("sha256")
        if row["status"] == "accepted" and sha in seen:
            row = {**row, "status": "duplicate", "reason": f"same content as {seen[sha]}"}
        if row["status"] == "accepted":
            seen[row["sha256"]] = obj.uri
        counts[{"accepted": "accepted", "rejected": "rejected", "duplicate": "duplicates"}[row["status"]]] += 1
        rows.append(row)
        if log and (n % 100 == 0 or n == len(objects)):
            log(f"source_images: scanned {n}/{len(objects)} files "
                f"({counts['accepted']} accepted, {counts['rejected']} rejected)")
    return ScanResult(rows=rows, counts=counts, seconds=time.perf_counter() - t0)


def _reusable(prev: dict | None, present: FileIndex) -> bool:
    """The previous row can stand for unchanged content: a rejection, or a normalised copy that
    still exists."""
    if prev is None:
        return False
    if prev["status"] == "rejected":
        return True
    return bool(prev["normalized_path"]) and prev["normalized_path"] in present


def _as_current(prev: dict) -> dict:
    """The previous row, as this scan's (duplicates are decided again, in this scan's order)."""
    rejected = prev["status"] == "rejected"
    return {**prev, "status": "rejected" if rejected else "accepted",
            "reason": prev["reason"] if rejected else None}


def _reuse(prev: dict | None, obj: SourceObject, present: FileIndex) -> dict | None:
    """The previous row when the file is unchanged (and its normalised copy still exists)."""
    if prev is None or prev["bytes"] != obj.size or prev["mtime"] is None:
        return None
    if abs(prev["mtime"].timestamp() - obj.mtime) > 1e-3:
        return None
    return _as_current(prev) if _reusable(prev, present) else None


def _revalidate(prev: dict | None, obj: SourceObject, catalog: CatalogConfig, storage: Storage,
                present: FileIndex, counts: dict[str, int]) -> tuple[dict, bool]:
    """(row, reused) for an object with a conditional read: the server says whether it changed.

    The previous row's validators are sent only when that row can be reused, so "not modified"
    never points at a normalised copy that is gone; without validators the read is a plain GET.
    """
    held = Validators()
    if prev is not None and _reusable(prev, present):
        mtime = prev["mtime"]
        held = Validators(etag=prev["etag"] or None,
                          # rows written before validators were kept have mtime 0 for URLs
                          last_modified=mtime.timestamp() if mtime and mtime.timestamp() > 0 else None)
    base = dict(source_uri=obj.uri, bytes=obj.size, mtime=None, etag=None)
    assert obj.conditional_read is not None  # the caller's condition
    try:
        got = obj.conditional_read(held)
    except Exception as exc:  # noqa: BLE001 - unreachable, refused or over a limit: reject it, keep going
        return _unreadable(base, exc), False
    if got.data is None:  # not modified
        if prev is None or not held:  # a source that breaks its contract: do not trust it
            return {**base, "status": "rejected",
                    "reason": "the source said 'not modified' without a previous copy"}, False
        return {**_as_current(prev), "etag": got.validators.etag,
                "mtime": _ts_or_none(got.validators.last_modified)}, True
    base.update(bytes=len(got.data), mtime=_ts_or_none(got.validators.last_modified),
                etag=got.validators.etag)
    return _validated(base, got.data, catalog, storage, present, counts), False


def _unreadable(base: dict, exc: Exception) -> dict:
    return {**base, "status": "rejected", "reason": f"cannot read: {type(exc).__name__}: {exc}"}


def _check(obj: SourceObject, catalog: CatalogConfig, storage: Storage, present: FileIndex,
           counts: dict[str, int]) -> dict:
    base = dict(source_uri=obj.uri, bytes=obj.size, mtime=_ts(obj.mtime))
    if obj.size > catalog.max_image_bytes:
        return {**base, "status": "rejected",
                "reason": f"file is {obj.size:,} bytes, over the {catalog.max_image_bytes:,}-byte limit"}
    try:
        data = obj.read()
    except Exception as exc:  # noqa: BLE001 - unreadable file: reject it, keep going
        return _unreadable(base, exc)
    base["bytes"] = len(data)
    return _validated(base, data, catalog, storage, present, counts)


def _validated(base: dict, data: bytes, catalog: CatalogConfig, storage: Storage,
               present: FileIndex, counts: dict[str, int]) -> dict:
    """Validate the bytes; store the normalised copy of an accepted image once per content."""
    result = validate_image_bytes(data, max_bytes=catalog.max_image_bytes,
                                  max_pixels=catalog.max_image_pixels)
    if isinstance(result, Rejected):
        return {**base, "status": "rejected", "reason": result.reason, "sha256": result.sha256,
                "format": result.format}
    rel = Storage.file_rel(catalog.name, ASSET, result.image_id, "png")
    if rel not in present:
        buf = io.BytesIO()
        result.image.save(buf, format="PNG", compress_level=3)
        storage.write_bytes(rel, buf.getvalue())
        write_mask(storage, rel, result.alpha)  # transparent pixels: invalid depth downstream
        present.add(rel)
        counts["new"] += 1
    return {**base, "status": "accepted", "reason": None, "image_id": result.image_id,
            "format": result.format, "mode": result.mode, "width": result.width,
            "height": result.height, "sha256": result.sha256,
            "exif_orientation": result.exif_orientation, "has_alpha": result.has_alpha,
            "normalized_path": rel}


def accepted_rows(storage: Storage, catalog: str) -> list[dict]:
    """The accepted images of the last `source_images` scan; raises if there was none."""
    table = storage.read_partition(ASSET, catalog)
    if table is None:
        raise FileNotFoundError(f"no source_images table for catalog {catalog!r}: "
                                "materialize source_images first")
    return [r for r in table.to_pylist() if r["status"] == "accepted"]

"""Scan a catalog's source into the `source_images` manifest (accepted, rejected, duplicate rows).

Each accepted image is stored once, normalised to 8-bit RGB PNG, under its content-derived id,
so every provider reads the same pixels whatever the original format, mode or orientation.
Unchanged files (same key, size and mtime as the previous scan) are not read again. Objects whose
listing cannot say that (URLs) are read conditionally on the validators of their previous row
(ETag, Last-Modified): "not modified" reuses the row, anything else is validated as new content.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa

from flux_depth_assets.config.models import CatalogConfig
from flux_depth_assets.depth.encoding import encode_png
from flux_depth_assets.imaging.validation import WORKING_MAX_PIXELS, Rejected, validate_image_bytes
from flux_depth_assets.pipeline.parallel import PoolConfig, map_ordered
from flux_depth_assets.pipeline.rows_run import RowsRun
from flux_depth_assets.pipeline.source_mask import write_mask
from flux_depth_assets.sources import SourceObject, Validators, list_objects
from flux_depth_assets.storage.schemas import SOURCE_IMAGES, table_from_rows
from flux_depth_assets.storage.store import FileIndex, Storage
from flux_depth_assets.thumbs import put_thumb, still_thumb

ASSET = "source_images"


@dataclass
class ScanResult(RowsRun):
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
        return self.share("rejected", self.counts.get("files", 0))


def _ts(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=UTC)


def _ts_or_none(epoch: float | None) -> datetime | None:
    return None if epoch is None else _ts(epoch)


def scan_catalog(
    catalog: CatalogConfig,
    storage: Storage,
    log: Callable[[str], None] | None = None,
    pool: PoolConfig | None = None,
) -> ScanResult:
    """Rows in source order. Unchanged files are reused here; new or changed files are read here
    and validated + normalised on the work pool (`pool`), `chunk` files at a time."""
    t0 = time.perf_counter()
    now = datetime.now(UTC)
    # With the schema, rows of a table written before a column was added have it (as None).
    previous = storage.partition_rows(ASSET, catalog.name, key="source_uri", schema=SOURCE_IMAGES)
    present = FileIndex(storage, Storage.dir_rel(catalog.name, ASSET))
    objects = list_objects(catalog.source, storage_root=storage.root)  # never our own outputs
    counts = dict(files=len(objects), accepted=0, rejected=0, duplicates=0, new=0, unchanged=0)
    limits = Limits(catalog.name, catalog.max_image_bytes, catalog.max_image_pixels)
    rows: list[dict | None] = []
    todo: list[int] = []  # indexes of objects to read and validate
    for obj in objects:
        prev = previous.get(obj.uri)
        kept: dict | None
        if obj.conditional_read is not None:  # network revalidation stays in this process
            kept, reused = _revalidate(prev, obj, limits, storage, present, counts)
        else:
            kept = _reuse(prev, obj, present)
            reused = kept is not None
            if kept is None:
                todo.append(len(rows))
        counts["unchanged"] += reused
        rows.append(kept)
    tasks = (_task(objects[i], limits, storage) for i in todo)
    for i, (made, rel) in zip(
        todo,
        map_ordered(
            validate_task,
            tasks,
            total=len(todo),
            config=pool,
            progress=_progress(log, len(objects)),
        ),
        strict=True,
    ):
        if rel is not None and rel not in present:
            present.add(rel)
            counts["new"] += 1
        rows[i] = made
    seen: dict[str, str] = {}  # sha256 → first uri
    out: list[dict] = []
    for obj, maybe in zip(objects, rows, strict=True):
        assert maybe is not None
        row = maybe
        if obj.conditional_read is None:
            row["etag"] = obj.etag or None
        row["external_id"] = obj.external_id
        row["scanned_at"] = now
        sha = str(row.get("sha256"))
        if row["status"] == "accepted" and sha in seen:
            row = {**row, "status": "duplicate", "reason": f"same content as {seen[sha]}"}
        if row["status"] == "accepted":
            seen[sha] = obj.uri
        counts[_COUNTED[row["status"]]] += 1
        out.append(row)
    if log:
        log(
            f"source_images: {len(objects)} file(s): {counts['accepted']} accepted, "
            f"{counts['rejected']} rejected, {counts['new']} new"
        )
    return ScanResult(rows=out, counts=counts, seconds=time.perf_counter() - t0)


_COUNTED = {"accepted": "accepted", "rejected": "rejected", "duplicate": "duplicates"}


def _progress(log: Callable[[str], None] | None, files: int) -> Callable[[int, int], None] | None:
    if log is None:
        return None
    return lambda done, total: log(
        f"source_images: validated {done}/{total} new or changed file(s) of {files}"
    )


@dataclass(frozen=True)
class Limits:
    catalog: str
    max_bytes: int
    max_pixels: int


@dataclass(frozen=True)
class ScanTask:
    """One file to validate on a worker: its bytes (read here), or the row already decided."""

    base: dict
    limits: Limits
    storage: Storage
    data: bytes | None = None
    row: dict | None = None


def _reusable(prev: dict | None, present: FileIndex) -> bool:
    """The previous row can stand for unchanged content: a rejection, or a normalised copy that
    still exists."""
    if prev is None:
        return False
    if prev["status"] == "rejected":
        return True
    if (prev["width"] or 0) * (prev["height"] or 0) > WORKING_MAX_PIXELS:
        return False  # normalised before copies were bounded: make the bounded one
    return bool(prev["normalized_path"]) and prev["normalized_path"] in present


def _as_current(prev: dict) -> dict:
    """The previous row, as this scan's (duplicates are decided again, in this scan's order)."""
    rejected = prev["status"] == "rejected"
    return {
        **prev,
        "status": "rejected" if rejected else "accepted",
        "reason": prev["reason"] if rejected else None,
    }


def _reuse(prev: dict | None, obj: SourceObject, present: FileIndex) -> dict | None:
    """The previous row when the file is unchanged (and its normalised copy still exists)."""
    if prev is None or prev["bytes"] != obj.size or prev["mtime"] is None:
        return None
    if abs(prev["mtime"].timestamp() - obj.mtime) > 1e-3:
        return None
    return _as_current(prev) if _reusable(prev, present) else None


def _revalidate(
    prev: dict | None,
    obj: SourceObject,
    limits: Limits,
    storage: Storage,
    present: FileIndex,
    counts: dict[str, int],
) -> tuple[dict, bool]:
    """(row, reused) for an object with a conditional read: the server says whether it changed.

    The previous row's validators are sent only when that row can be reused, so "not modified"
    never points at a normalised copy that is gone; without validators the read is a plain GET.
    """
    held = Validators()
    if prev is not None and _reusable(prev, present):
        mtime = prev["mtime"]
        held = Validators(
            etag=prev["etag"] or None,
            # rows written before validators were kept have mtime 0 for URLs
            last_modified=mtime.timestamp() if mtime and mtime.timestamp() > 0 else None,
        )
    base = dict(source_uri=obj.uri, bytes=obj.size, mtime=None, etag=None)
    assert obj.conditional_read is not None  # the caller's condition
    try:
        got = obj.conditional_read(held)
    except Exception as exc:  # noqa: BLE001 - unreachable, refused or over a limit: reject it, keep going
        return _unreadable(base, exc), False
    if got.data is None:  # not modified
        if prev is None or not held:  # a source that breaks its contract: do not trust it
            return {
                **base,
                "status": "rejected",
                "reason": "the source said 'not modified' without a previous copy",
            }, False
        return {
            **_as_current(prev),
            "etag": got.validators.etag,
            "mtime": _ts_or_none(got.validators.last_modified),
        }, True
    base.update(
        bytes=len(got.data),
        mtime=_ts_or_none(got.validators.last_modified),
        etag=got.validators.etag,
    )
    row, rel = _validated(base, got.data, limits, storage, present)
    if rel is not None and rel not in present:
        present.add(rel)
        counts["new"] += 1
    return row, False


def _unreadable(base: dict, exc: Exception) -> dict:
    return {**base, "status": "rejected", "reason": f"cannot read: {type(exc).__name__}: {exc}"}


def _task(obj: SourceObject, limits: Limits, storage: Storage) -> ScanTask:
    """Read a file for validation; a file over the byte limit or unreadable is rejected unread."""
    base = dict(source_uri=obj.uri, bytes=obj.size, mtime=_ts(obj.mtime))
    if obj.size > limits.max_bytes:
        return ScanTask(
            base,
            limits,
            storage,
            row={
                **base,
                "status": "rejected",
                "reason": f"file is {obj.size:,} bytes, over the {limits.max_bytes:,}-byte limit",
            },
        )
    try:
        data = obj.read()
    except Exception as exc:  # noqa: BLE001 - unreadable file: reject it, keep going
        return ScanTask(base, limits, storage, row=_unreadable(base, exc))
    base["bytes"] = len(data)
    return ScanTask(base, limits, storage, data=data)


def validate_task(task: ScanTask) -> tuple[dict, str | None]:
    """(row, normalised copy's path or None): runs on a pool worker; pure but for the write of
    the normalised copy, which is content-addressed (the same bytes whoever writes it)."""
    if task.row is not None:
        return task.row, None
    assert task.data is not None
    return _validated(task.base, task.data, task.limits, task.storage)


def _validated(
    base: dict, data: bytes, limits: Limits, storage: Storage, present: FileIndex | None = None
) -> tuple[dict, str | None]:
    """Validate the bytes; store the normalised copy of an accepted image once per content."""
    result = validate_image_bytes(data, max_bytes=limits.max_bytes, max_pixels=limits.max_pixels)
    if isinstance(result, Rejected):
        return {
            **base,
            "status": "rejected",
            "reason": result.reason,
            "sha256": result.sha256,
            "format": result.format,
        }, None
    rel = Storage.file_rel(limits.catalog, ASSET, result.image_id, "png")
    if (rel not in present) if present is not None else not storage.exists(rel):
        rgb = np.asarray(result.image.convert("RGB"))
        storage.write_bytes(rel, encode_png(rgb))  # lossless, the pipeline's fast encoder
        write_mask(storage, rel, result.alpha)  # transparent pixels: invalid depth downstream
        put_thumb(storage, limits.catalog, "src", rel, result.sha256, lambda: still_thumb(rgb))
    return {
        **base,
        "status": "accepted",
        "reason": None,
        "image_id": result.image_id,
        "format": result.format,
        "mode": result.mode,
        "width": result.width,
        "height": result.height,
        "sha256": result.sha256,
        "exif_orientation": result.exif_orientation,
        "has_alpha": result.has_alpha,
        "normalized_path": rel,
        "original_width": result.original_width,
        "original_height": result.original_height,
    }, rel


def accepted_rows(storage: Storage, catalog: str) -> list[dict]:
    """The accepted images of the last `source_images` scan; raises if there was none."""
    rows = storage.partition_dicts(ASSET, catalog)
    if rows is None:
        raise FileNotFoundError(
            f"no source_images table for catalog {catalog!r}: materialize source_images first"
        )
    return [r for r in rows if r["status"] == "accepted"]

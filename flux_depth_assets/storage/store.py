"""The storage root: one fsspec filesystem (local folder or `s3://bucket/prefix`), atomic writes.

Layout contract (documented in the README):
- tables: `tables/<asset>/catalog=<name>/<file>.parquet`
- files:  `catalogs/<name>/<asset>/<image_id>.<ext>`
- cache:  `cache/<kind>/<key[:2]>/<key>.<ext>` (content-addressed, shared by all catalogs)
"""

from __future__ import annotations

import builtins
import errno
import functools
import io
import logging
import os
import posixpath
import uuid
from collections.abc import Iterator
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from flux_depth_assets.paths import safe_segment

#: Arrow's default allocator (mimalloc here) keeps freed pages for reuse: a run's process peaked
#: ~40 MB higher at 2,000 rows per table than at 200, for tables that are small and short-lived.
#: The system allocator gives them back (benchmarks/README.md, pipeline throughput, round 4).
pa.set_memory_pool(pa.system_memory_pool())

_log = logging.getLogger(__name__)


class Storage:
    """Reads and writes under one root; callers use relative, forward-slash paths."""

    def __init__(self, root: str, storage_options: dict[str, Any] | None = None):
        self.root = root
        options = dict(storage_options or {})
        if "://" in root and not root.startswith("file://"):
            # Object stores: no listings cache. fsspec shares one filesystem per process, and a
            # cached listing hides objects other runs wrote (or deleted) since: `exists` would
            # say False and the cache would be paid for again.
            options.setdefault("use_listings_cache", False)
        fs, base = fsspec.core.url_to_fs(root, **options)
        self.fs: fsspec.AbstractFileSystem = fs
        self.base = base.rstrip("/")
        self.is_local = isinstance(fs, LocalFileSystem)
        if self.is_local:
            os.makedirs(self.base, exist_ok=True)

    # ------------------------------------------------------------------ paths

    def full(self, rel: str) -> str:
        return posixpath.join(self.base, rel.lstrip("/"))

    def uri(self, rel: str) -> str:
        """A user-facing location: a local path or an s3:// URI."""
        full = self.full(rel)
        return (
            full
            if self.is_local
            else f"{self.fs.protocol[0] if isinstance(self.fs.protocol, tuple) else self.fs.protocol}://{full}"
        )

    @staticmethod
    def dir_rel(catalog: str, asset: str) -> str:
        return f"catalogs/{safe_segment(catalog)}/{asset}"

    @classmethod
    def file_rel(cls, catalog: str, asset: str, image_id: str, ext: str) -> str:
        return f"{cls.dir_rel(catalog, asset)}/{safe_segment(image_id)}.{ext}"

    @staticmethod
    def table_rel(asset: str, catalog: str, filename: str = "part-0.parquet") -> str:
        return f"tables/{asset}/catalog={safe_segment(catalog)}/{safe_segment(filename)}"

    # ------------------------------------------------------------------ bytes

    def write_bytes(self, rel: str, data: bytes) -> str:
        """Atomically replace `rel`: temp file + rename locally, one PUT on object stores."""
        full = self.full(rel)
        if self.is_local:
            tmp = _local_temp(full)
            try:
                with open(tmp, "wb") as fh:
                    fh.write(data)
                os.replace(tmp, full)
            except BaseException:
                if os.path.exists(tmp):
                    os.unlink(tmp)
                raise
        else:
            self.fs.pipe_file(full, data)
        return rel

    def create_exclusive(self, rel: str, data: bytes) -> bool:
        """Create `rel` with `data` only if it does not exist yet; True if this call created it.

        The building block for leases and claims: of several processes (or machines) racing to
        create the same path, exactly one wins, and readers never see a partial file. Locally the
        bytes go to a temp file that is hard-linked into place (`link` fails if the target
        exists); on S3 it is one conditional PUT (`If-None-Match: *`, 412/409 when it exists).
        """
        full = self.full(rel)
        if not self.is_local:
            return self._create_exclusive_remote(full, data)
        tmp = _local_temp(full)
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            try:
                os.link(tmp, full)
            except FileExistsError:
                return False
            except OSError as exc:  # a filesystem without hard links: exclusive create instead
                if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
                    raise
                return self._create_exclusive_no_link(full, data)
            return True
        finally:
            if os.path.lexists(tmp):
                os.unlink(tmp)

    @staticmethod
    def _create_exclusive_no_link(full: str, data: bytes) -> bool:
        try:
            fd = os.open(full, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
        except BaseException:
            os.unlink(full)
            raise
        return True

    def _create_exclusive_remote(self, full: str, data: bytes) -> bool:
        try:
            self.fs.pipe_file(full, data, mode="create")
        except FileExistsError:
            return False
        except OSError as exc:  # 412 without the condition named, or 409 (a concurrent write)
            if _precondition_failed(exc):
                return False
            raise
        return True

    def read_bytes(self, rel: str) -> bytes:
        return self.fs.cat_file(self.full(rel))

    def exists(self, rel: str) -> bool:
        return self.fs.exists(self.full(rel))

    def delete(self, rel: str) -> None:
        full = self.full(rel)
        if self.fs.exists(full):
            self.fs.rm(full, recursive=True)

    def unwritable(self, rel_dir: str) -> str | None:
        """None when `rel_dir` can be written (a small file is written there and removed), else
        why not, in words; checked before anything is paid, so a result can always be kept."""
        rel = f"{rel_dir.strip('/')}/.probe-{uuid.uuid4().hex}"
        try:
            self.write_bytes(rel, b"probe")
            self.delete(rel)
        except Exception as exc:  # noqa: BLE001 - whatever the store raises is the answer
            return f"{self.uri(rel_dir)} cannot be written ({type(exc).__name__}: {exc})"
        return None

    def list(self, rel_dir: str) -> list[str]:
        """Relative paths of the files directly under `rel_dir` (empty if it does not exist)."""
        full = self.full(rel_dir)
        if not self.fs.exists(full):
            return []
        prefix = self.base + "/"
        return sorted(p.removeprefix(prefix) for p in self.fs.ls(full, detail=False))

    def files_under(self, rel_dir: str) -> set[str]:
        """Relative paths of every file below `rel_dir`, from one recursive listing."""
        full = self.full(rel_dir)
        if self.is_local:  # os.scandir: ~10x fsspec's find, which builds a dict per file
            return {f"{rel_dir.rstrip('/')}/{rel}" for rel in _walk_files(full)}
        if not self.fs.exists(full):
            return set()
        prefix = self.base + "/"
        return {p.removeprefix(prefix) for p in self.fs.find(full)}

    # ------------------------------------------------------------------ tables

    def write_table(self, rel: str, table: pa.Table) -> str:
        buf = io.BytesIO()
        pq.write_table(table, buf, compression="zstd")
        return self.write_bytes(rel, buf.getvalue())

    def read_table(self, rel: str, schema: pa.Schema | None = None) -> pa.Table:
        full = self.full(rel)
        if self.is_local:  # the same snapshot is read by several steps of a run: decoded once
            st = os.stat(full)
            if st.st_size <= CACHED_TABLE_MAX_BYTES:
                return _read_local_table(full, st.st_mtime_ns, st.st_size, st.st_ino, schema)
            return pq.read_table(full, schema=schema)  # large: not kept beyond the caller
        with self.fs.open(full, "rb") as fh:
            return pq.read_table(fh, schema=schema)

    def write_partition(self, asset: str, catalog: str, table: pa.Table) -> str:
        """Replace a catalog's snapshot table for `asset` (one file per partition)."""
        return self.write_table(self.table_rel(asset, catalog), table)

    def read_partition(
        self, asset: str, catalog: str, schema: pa.Schema | None = None
    ) -> pa.Table | None:
        rel = self.table_rel(asset, catalog)
        if not self.exists(rel):
            return None
        return self.read_table(rel, schema=schema)

    def partition_dicts(
        self, asset: str, catalog: str, schema: pa.Schema | None = None
    ) -> builtins.list[dict[str, Any]] | None:
        """The snapshot's rows as dicts (None when there is none). Locally the conversion is
        done once per version of the file and each caller gets its own copies of the rows: a
        run's steps ask for the same tables about twenty times."""
        rel = self.table_rel(asset, catalog)
        if not self.is_local:
            table = self.read_partition(asset, catalog, schema=schema)
            return None if table is None else table.to_pylist()
        full = self.full(rel)
        try:
            st = os.stat(full)
        except FileNotFoundError:
            return None
        if st.st_size > CACHED_TABLE_MAX_BYTES:  # memory stays flat in catalog size
            return self.read_table(rel, schema=schema).to_pylist()
        rows = _local_rows(full, st.st_mtime_ns, st.st_size, st.st_ino, schema)
        return [dict(r) for r in rows]

    def partition_rows(
        self, asset: str, catalog: str, key: str = "image_id", schema: pa.Schema | None = None
    ) -> dict[str, dict]:
        """The last snapshot's rows by `key`; empty when absent or not a readable Parquet table
        (logged with its cause: a recompute, no loss). Any other error (S3 credentials, network)
        propagates: a silent full rescan would hide it.

        With `schema`, every row has all of its columns: those a table written before they were
        added lacks are None.
        """
        try:
            rows = self.partition_dicts(asset, catalog, schema=schema)
        except FileNotFoundError:  # deleted since the existence check
            return {}
        except pa.ArrowException as exc:  # corrupt, truncated, or not castable to `schema`
            _log.warning(
                "%s: unreadable snapshot, its rows are recomputed (%s: %s)",
                self.uri(self.table_rel(asset, catalog)),
                type(exc).__name__,
                exc,
            )
            return {}
        return {} if rows is None else {r[key]: r for r in rows}


def _walk_files(top: str, prefix: str = "") -> Iterator[str]:
    """Paths (relative to `top`) of the files below a local folder; nothing when it is absent."""
    try:
        entries = list(os.scandir(top))
    except (FileNotFoundError, NotADirectoryError):
        return
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            yield from _walk_files(entry.path, f"{prefix}{entry.name}/")
        else:
            yield f"{prefix}{entry.name}"


#: snapshots up to this size on disk (~16,000 rows, ~40 MB as rows) are kept decoded between
#: reads; larger ones are read each time, so the caches stay small whatever the catalog's size
CACHED_TABLE_MAX_BYTES = 2 * 1024 * 1024


@functools.lru_cache(maxsize=8)  # about one catalog's tables
def _read_local_table(
    full: str, _mtime_ns: int, _size: int, _inode: int, schema: pa.Schema | None
) -> pa.Table:
    """A local Parquet file, cached by its stat signature: every write replaces the file
    (write-then-rename: a new inode), so a changed table is never served stale."""
    return pq.read_table(full, schema=schema)


@functools.lru_cache(maxsize=8)
def _local_rows(
    full: str, mtime_ns: int, size: int, inode: int, schema: pa.Schema | None
) -> tuple[dict[str, Any], ...]:
    """The rows of `_read_local_table`'s table, converted once per version of the file."""
    return tuple(_read_local_table(full, mtime_ns, size, inode, schema).to_pylist())


def _local_temp(full: str) -> str:
    """A hidden temp path beside `full` (its folder created), for write-then-rename/link."""
    directory = os.path.dirname(full)
    os.makedirs(directory, exist_ok=True)
    return os.path.join(directory, f".{os.path.basename(full)}.tmp-{uuid.uuid4().hex}")


def _precondition_failed(exc: BaseException) -> bool:
    """Whether an S3 error says a conditional write lost (the object exists / a concurrent write)."""
    for err in (exc, exc.__cause__, exc.__context__):
        response = getattr(err, "response", None)
        if isinstance(response, dict):
            code = str(response.get("Error", {}).get("Code", ""))
            status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in ("PreconditionFailed", "ConditionalRequestConflict") or status in (409, 412):
                return True
    return False


class FileIndex:
    """Which files exist below some folders, listed once per run.

    A run asks "does this output still exist?" for every image; on an object store that is one
    HEAD request per image, here it is one LIST per folder. Writes made through the run are
    recorded with `add` so the index stays exact.
    """

    def __init__(self, storage: Storage, *rel_dirs: str):
        self._files: set[str] = set()
        for rel_dir in rel_dirs:
            self._files |= storage.files_under(rel_dir)

    def __contains__(self, rel: object) -> bool:
        return rel in self._files

    def add(self, rel: str) -> None:
        self._files.add(rel)

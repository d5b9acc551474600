"""The source interface: a listing of objects with a stable identity and a lazy reader."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from flux_depth_assets.config.models import LocalDirSource, S3PrefixSource, UrlManifestSource


class SourceError(RuntimeError):
    """The source itself is unusable (missing folder, unreachable bucket): the run cannot start."""


@dataclass(frozen=True)
class Validators:
    """What a server said identifies a version of an object, remembered to ask "changed since?".

    `etag` is kept verbatim (quotes and `W/` included) because it is sent back as is;
    `last_modified` is seconds since the epoch (HTTP-dates have whole seconds).
    """

    etag: str | None = None
    last_modified: float | None = None

    def __bool__(self) -> bool:
        return bool(self.etag) or self.last_modified is not None


@dataclass(frozen=True)
class Fetched:
    """The answer to a conditional read: new bytes, or `data=None` if the caller's copy is
    current."""

    data: bytes | None
    validators: Validators = Validators()

    @property
    def not_modified(self) -> bool:
        return self.data is None


@dataclass(frozen=True)
class SourceObject:
    uri: str  # absolute path, s3:// URI or http(s) URL
    key: str  # path relative to the source root (stable identity within the catalog)
    size: int  # bytes, -1 when unknown before reading
    mtime: float  # seconds since the epoch (0 when unknown)
    etag: str = ""  # object-store ETag when there is one
    read: Callable[[], bytes] = field(repr=False, compare=False, default=lambda: b"")
    external_id: str | None = None  # the id the catalog owner gave the object (url_manifest)
    # Sources whose listing cannot tell whether an object changed (URLs: no size, no mtime)
    # give a conditional read instead: called with the validators of the previous scan (empty
    # for an unconditional read), it returns the bytes with their new validators, or
    # `Fetched(None, ...)` when the object has not changed. The scan then never compares size
    # and mtime for the object. None: the listing's size and mtime decide, and `read` reads.
    conditional_read: Callable[[Validators], Fetched] | None = field(
        repr=False, compare=False, default=None
    )
    # Listed but never read (a FIFO, a link out of the folder...): why. `read` raises it, so
    # the scan records a rejected row; watchers that only look for changes may skip these.
    rejected: str | None = None


class RefusedEntry(OSError):
    """A listed entry that is never read; the message is the rejection reason."""


def _refuse(reason: str) -> bytes:
    raise RefusedEntry(reason)


def refused(uri: str, key: str, reason: str, mtime: float = 0.0) -> SourceObject:
    """An object the scan records as a rejected row with `reason`, without reading anything."""
    return SourceObject(
        uri=uri, key=key, size=0, mtime=mtime, read=partial(_refuse, reason), rejected=reason
    )


def matches(name: str, patterns: list[str]) -> bool:
    lower = name.lower()
    return any(fnmatch.fnmatch(lower, p.lower()) for p in patterns)


def list_objects(
    source: LocalDirSource | S3PrefixSource | UrlManifestSource,
    *,
    s3_client: Any = None,
    storage_root: str | None = None,
) -> list[SourceObject]:
    """Every object the source holds that matches its `include` patterns, sorted by key.

    `s3_client`: a boto3 S3 client for `s3_prefix` sources (default: one from the environment).
    `storage_root`: the run's storage root, never read as a source (nor `$FLUX_DEPTH_HOME`).
    """
    if isinstance(source, LocalDirSource):
        from flux_depth_assets.sources.local_dir import list_local_dir

        return list_local_dir(source, storage_root)
    if isinstance(source, S3PrefixSource):
        from flux_depth_assets.sources.s3_prefix import list_s3_prefix

        return list_s3_prefix(source, client=s3_client, storage_root=storage_root)
    if isinstance(source, UrlManifestSource):
        from flux_depth_assets.sources.url_manifest import list_url_manifest

        return list_url_manifest(source)
    raise SourceError(f"source type {source.type!r} is not supported yet")

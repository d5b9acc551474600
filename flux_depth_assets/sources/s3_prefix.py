"""`s3_prefix` sources: objects under `s3://<bucket>/<prefix>`, listed and read with boto3.

Credentials, region and endpoint come from boto3's usual chain (`AWS_ACCESS_KEY_ID`, profiles,
instance roles, `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL` for MinIO or moto), which is also what
dagster-aws's `S3Resource` uses when its fields are unset; pass
`client=S3Resource(...).get_client()` to use a resource's settings instead.

Rules shared with `local_dir`: the include patterns match the file name (last key segment, case
insensitive); keys with a hidden segment (`.tmp/x.jpg`, `a/.x.jpg`) and folder markers are skipped;
keys under the pipeline's own storage root are never listed.
"""

from __future__ import annotations

import functools
import os
import posixpath
from collections.abc import Callable, Iterator
from typing import Any

from flux_depth_assets.config.models import S3PrefixSource
from flux_depth_assets.sources.base import SourceError, SourceObject, matches, refused
from flux_depth_assets.sources.roots import STORAGE_ROOT_REASON, s3_storage_prefixes

_ENV_KEYS = (
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL",
    "AWS_PROFILE",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_ACCESS_KEY_ID",
)


def s3_client() -> Any:
    """A boto3 S3 client configured from the environment (endpoint included).

    Clients are thread-safe and slow to build (~0.3 s), so one is kept per distinct AWS
    environment instead of one per listing.
    """
    return _cached_client(tuple(os.environ.get(k) for k in _ENV_KEYS))


@functools.lru_cache(maxsize=8)
def _cached_client(_env: tuple) -> Any:
    import boto3  # lazy: boto3 costs import time that local-only code paths do not need

    return boto3.session.Session().client("s3")


def _reader(client: Any, bucket: str, key: str) -> Callable[[], bytes]:
    def read() -> bytes:
        return client.get_object(Bucket=bucket, Key=key)["Body"].read()

    return read


def _storage_inside(source: S3PrefixSource, storage_root: str | None) -> list[str]:
    """Key prefixes of the pipeline's storage under the source's prefix (to skip); raise
    `SourceError` when the source is inside the storage."""
    held: list[str] = []
    for bucket, prefix in s3_storage_prefixes(storage_root):
        if bucket != source.bucket:
            continue
        if source.prefix.startswith(prefix):
            raise SourceError(
                f"s3_prefix source s3://{bucket}/{source.prefix} is inside the "
                f"pipeline's storage root s3://{bucket}/{prefix} ($FLUX_DEPTH_HOME): "
                "it would read its own outputs; use a prefix outside it"
            )
        if prefix.startswith(source.prefix):
            held.append(prefix)
    return held


def iter_s3_prefix(
    source: S3PrefixSource, client: Any | None = None, storage_root: str | None = None
) -> Iterator[SourceObject]:
    """Matching objects in listing order (S3 returns keys in UTF-8 binary order).

    Keys under the pipeline's storage root (`storage_root`, `$FLUX_DEPTH_HOME`) are not listed;
    one rejected object says so.
    """
    skip, reported = _storage_inside(source, storage_root), set()
    client = client or s3_client()
    paginator = client.get_paginator("list_objects_v2")
    strip = len(source.prefix)
    try:
        for page in paginator.paginate(
            Bucket=source.bucket, Prefix=source.prefix, PaginationConfig={"PageSize": 1000}
        ):
            for item in page.get("Contents", ()):
                full = item["Key"]
                key = full[strip:]
                held = next((p for p in skip if full.startswith(p)), None)
                if held is not None:
                    if held not in reported:  # one row per storage root
                        reported.add(held)
                        yield refused(
                            f"s3://{source.bucket}/{held}", held[strip:], STORAGE_ROOT_REASON
                        )
                    continue
                if not key or key.endswith("/"):
                    continue  # the prefix itself or a "folder" marker
                if any(part.startswith(".") or part == "" for part in key.split("/")):
                    continue
                if not matches(posixpath.basename(key), source.include):
                    continue
                yield SourceObject(
                    uri=f"s3://{source.bucket}/{full}",
                    key=key,
                    size=int(item["Size"]),
                    mtime=item["LastModified"].timestamp(),
                    etag=item.get("ETag", "").strip('"'),
                    read=_reader(client, source.bucket, full),
                )
    except SourceError:
        raise
    except Exception as exc:  # noqa: BLE001 - botocore ClientError, endpoint/credential errors
        raise SourceError(
            f"s3_prefix source s3://{source.bucket}/{source.prefix}: cannot list: "
            f"{type(exc).__name__}: {exc}"
        ) from None


def list_s3_prefix(
    source: S3PrefixSource, client: Any | None = None, storage_root: str | None = None
) -> list[SourceObject]:
    return sorted(iter_s3_prefix(source, client, storage_root), key=lambda o: o.key)

"""`s3_prefix` sources: objects under `s3://<bucket>/<prefix>`, listed and read with boto3.

Credentials, region and endpoint come from boto3's usual chain (`AWS_ACCESS_KEY_ID`, profiles,
instance roles, `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL` for MinIO or moto), which is also what
dagster-aws's `S3Resource` uses when its fields are unset; pass `client=S3Resource(...).get_client()`
to use a resource's settings instead.

Rules shared with `local_dir`: the include patterns match the file name (last key segment, case
insensitive); keys with a hidden segment (`.tmp/x.jpg`, `a/.x.jpg`) and folder markers are skipped.
"""

from __future__ import annotations

import functools
import os
import posixpath
from typing import Any
from collections.abc import Callable, Iterator

from flux_depth_assets.config.models import S3PrefixSource
from flux_depth_assets.sources.base import SourceError, SourceObject, matches


_ENV_KEYS = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_DEFAULT_REGION",
             "AWS_REGION", "AWS_ACCESS_KEY_ID")


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


def iter_s3_prefix(source: S3PrefixSource, client: Any | None = None) -> Iterator[SourceObject]:
    """Matching objects in listing order (S3 returns keys in UTF-8 binary order)."""
    client = client or s3_client()
    paginator = client.get_paginator("list_objects_v2")
    strip = len(source.prefix)
    try:
        for page in paginator.paginate(Bucket=source.bucket, Prefix=source.prefix,
                                       PaginationConfig={"PageSize": 1000}):
            for item in page.get("Contents", ()):
                full = item["Key"]
                key = full[strip:]
                if not key or key.endswith("/"):
                    continue  # the prefix itself or a "folder" marker
                if any(part.startswith(".") or part == "" for part in key.split("/")):
                    continue
                if not matches(posixpath.basename(key), source.include):
                    continue
                yield SourceObject(
                    uri=f"s3://{source.bucket}/{full}", key=key, size=int(item["Size"]),
                    mtime=item["LastModified"].timestamp(), etag=item.get("ETag", "").strip('"'),
                    read=_reader(client, source.bucket, full))
    except SourceError:
        raise
    except Exception as exc:  # noqa: BLE001 - botocore ClientError, endpoint/credential errors
        raise SourceError(f"s3_prefix source s3://{source.bucket}/{source.prefix}: cannot list: "
                          f"{type(exc).__name__}: {exc}") from None


def list_s3_prefix(source: S3PrefixSource, client: Any | None = None) -> list[SourceObject]:
    return sorted(iter_s3_prefix(source, client), key=lambda o: o.key)

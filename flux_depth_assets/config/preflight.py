"""What `validate` and `materialize` check before anything runs: the config, then the sources.

`preflight()` is the one list of errors both commands act on, so `validate` catches everything
`materialize` would refuse: every config error of every file (`collect_project`), then, for each
catalog, whether its source can be read at all: the local folder exists and is readable, the
manifest exists with its URL column, the S3 bucket answers (only when AWS credentials are
configured: without them the check would say nothing true). No Dagster here.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from flux_depth_assets.config.loader import ConfigError, Project, collect_project
from flux_depth_assets.config.models import (
    CatalogConfig,
    LocalDirSource,
    S3PrefixSource,
    UrlManifestSource,
)


def preflight(
    config_dir: str | os.PathLike[str] | None = None,
    catalogs: Iterable[str] | None = None,
    *,
    check_sources: bool = True,
) -> tuple[Project | None, list[ConfigError]]:
    """The project and every error found; `catalogs` limits the source checks to those named."""
    project, errors = collect_project(config_dir)
    if project is None or not check_sources:
        return project, errors
    names = (
        list(project.catalogs)
        if catalogs is None
        else [n for n in catalogs if n in project.catalogs]
    )
    for name in names:
        problem = source_problem(project.catalogs[name])
        if problem:
            field = (
                "source.bucket"
                if isinstance(project.catalogs[name].source, S3PrefixSource)
                else "source.path"
            )
            errors.append(
                ConfigError(
                    project.catalog_files[name],
                    problem,
                    line=project.source_lines.get(name),
                    catalog=name,
                    field_path=field,
                )
            )
    errors.sort(key=lambda e: (str(e.file), e.line or 0))
    return project, errors


def source_problem(catalog: CatalogConfig, *, s3_client: Any | None = None) -> str | None:
    """Why the catalog's source cannot be read, in one line, or None when it can."""
    source = catalog.source
    if isinstance(source, LocalDirSource):
        root = Path(source.path)
        if not root.exists():
            return f"source folder {str(root)!r} does not exist"
        if not root.is_dir():
            return f"source {str(root)!r} is not a folder"
        if not os.access(root, os.R_OK | os.X_OK):
            return f"source folder {str(root)!r} is not readable"
        from flux_depth_assets.sources.roots import inside, storage_folders

        home = inside(root.resolve(), storage_folders())
        if home is not None:  # what local_dir refuses at run time, said here first
            return (
                f"source folder {str(root)!r} is inside the pipeline's storage root "
                f"{str(home)!r} ($FLUX_DEPTH_HOME): it would read its own outputs"
            )
        return None
    if isinstance(source, UrlManifestSource):
        from flux_depth_assets.sources.base import SourceError
        from flux_depth_assets.sources.manifest import read_manifest_rows

        try:
            read_manifest_rows(source)  # existence, format and the URL column
        except SourceError as exc:
            return str(exc)
        return None
    return _bucket_problem(source, s3_client)  # S3PrefixSource, the remaining source type


def _bucket_problem(source: S3PrefixSource, client: Any | None) -> str | None:
    if client is None:
        import boto3

        if boto3.session.Session().get_credentials() is None:
            return None  # no credentials here: reachability cannot be told, not an error
        from flux_depth_assets.sources.s3_prefix import s3_client

        client = s3_client()
    try:
        client.head_bucket(Bucket=source.bucket)
    except Exception as exc:  # noqa: BLE001 - botocore ClientError, EndpointConnectionError, ...
        code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
        why = {
            "404": "does not exist",
            "NoSuchBucket": "does not exist",
            "403": "is not readable with these credentials",
        }.get(str(code))
        return (
            f"S3 bucket {source.bucket!r} {why}"
            if why
            else f"S3 bucket {source.bucket!r} is not reachable: {type(exc).__name__}: {exc}"
        )
    return None

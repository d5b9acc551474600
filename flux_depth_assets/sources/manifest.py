"""Reading a `url_manifest` file: (url, external id) rows, streamed and capped at `max_rows`.

A manifest can be large or hostile, so it is never loaded whole: CSV is read line by line and
Parquet batch by batch (only the URL and id columns); past `max_rows` rows the listing stops
with an error that names the manifest and the cap, before any URL is fetched.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import IO, Any

from flux_depth_assets.config.models import UrlManifestSource
from flux_depth_assets.sources.base import SourceError

Row = tuple[str, str | None]  # (url, external id or None)


def manifest_format(source: UrlManifestSource) -> str:
    if source.format != "auto":
        return source.format
    return "csv" if source.path.lower().endswith(".csv") else "parquet"


def read_manifest_rows(source: UrlManifestSource) -> list[Row]:
    """(url, external id or None) per manifest row, in file order, at most `max_rows` of them."""
    import fsspec

    try:
        with fsspec.open(source.path, "rb") as fh:
            reader = _csv_rows if manifest_format(source) == "csv" else _parquet_rows
            rows: list[Row] = []
            for row in reader(source, fh):
                if len(rows) == source.max_rows:
                    raise SourceError(
                        f"url_manifest {source.path!r} has more than "
                        f"{source.max_rows:,} rows (max_rows); split it into "
                        "several catalogs or raise max_rows"
                    )
                rows.append(row)
            return rows
    except SourceError:
        raise
    except FileNotFoundError:
        raise SourceError(f"url_manifest {source.path!r} does not exist") from None
    except Exception as exc:  # noqa: BLE001 - fsspec backends raise their own types; one line
        raise SourceError(
            f"url_manifest {source.path!r}: cannot read: {type(exc).__name__}: {exc}"
        ) from None


def _row(url: Any, ext: Any) -> Row:
    return (
        "" if url is None else str(url).strip(),
        None if ext in (None, "") else str(ext).strip(),
    )


def _check_columns(source: UrlManifestSource, columns: list[str]) -> str | None:
    """The id column to read (None if there is none); raise when the URL column is missing."""
    if source.url_column not in columns:
        raise SourceError(
            f"url_manifest {source.path!r} has no {source.url_column!r} column "
            f"(columns: {', '.join(map(str, columns)) or 'none'})"
        )
    return source.id_column if source.id_column in columns else None


def _csv_rows(source: UrlManifestSource, fh: IO[bytes]) -> Iterator[Row]:
    text = io.TextIOWrapper(fh, encoding="utf-8-sig", newline="")
    try:
        reader = csv.DictReader(text)
        id_col = _check_columns(source, list(reader.fieldnames or []))
        for rec in reader:
            yield _row(rec.get(source.url_column), rec.get(id_col) if id_col else None)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise SourceError(f"url_manifest {source.path!r} is not a readable CSV: {exc}") from None


def _parquet_rows(source: UrlManifestSource, fh: IO[bytes]) -> Iterator[Row]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(fh)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a bad file
        raise SourceError(
            f"url_manifest {source.path!r} is not a readable Parquet file: "
            f"{type(exc).__name__}: {exc}"
        ) from None
    id_col = _check_columns(source, pf.schema_arrow.names)
    if pf.metadata.num_rows > source.max_rows:  # known from the footer: fail before reading rows
        raise SourceError(
            f"url_manifest {source.path!r} has {pf.metadata.num_rows:,} rows, more "
            f"than max_rows {source.max_rows:,}; split it into several catalogs "
            "or raise max_rows"
        )
    columns = [source.url_column] + ([id_col] if id_col else [])
    for batch in pf.iter_batches(batch_size=10_000, columns=columns):
        urls = batch.column(0).to_pylist()
        ids = batch.column(1).to_pylist() if id_col else [None] * len(urls)
        yield from (_row(u, i) for u, i in zip(urls, ids))

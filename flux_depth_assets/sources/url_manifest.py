"""`url_manifest` sources: a CSV or Parquet file listing image URLs (+ an optional external id).

Listing reads only the manifest; each URL is fetched when the scan reads it. A fetch is http(s)
only, follows at most `max_redirects` redirects and only to http(s), stops past `max_bytes` or
`timeout_s`, and raises `FetchError` with a reason a person can act on; the scan turns that into a
rejected row, so one bad URL never fails the catalog. The bytes are then validated like any upload.
"""

from __future__ import annotations

import csv
import io
import time
from typing import Any
from urllib.parse import urljoin, urlsplit

from flux_depth_assets.config.models import UrlManifestSource
from flux_depth_assets.sources.base import SourceError, SourceObject

ALLOWED_SCHEMES = ("http", "https")
USER_AGENT = "flux-depth-assets (+url_manifest)"


class FetchError(RuntimeError):
    """One URL could not be fetched; the message is the rejection reason."""


def _check_url(url: str) -> None:
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise FetchError(f"malformed URL: {exc}") from None
    if parts.scheme.lower() not in ALLOWED_SCHEMES:
        raise FetchError(f"URL scheme {parts.scheme or '(none)'!r} is not allowed (http/https only)")
    if not parts.hostname:
        raise FetchError("URL has no host")


def redact(url: str) -> str:
    """The URL without user:password and query string (signed URLs carry secrets there)."""
    try:
        p = urlsplit(url)
    except ValueError:
        return "<malformed URL>"
    host = p.hostname or ""
    if p.port:
        host = f"{host}:{p.port}"
    return f"{p.scheme}://{host}{p.path}" + ("?…" if p.query else "")


def fetch(url: str, *, max_bytes: int, timeout_s: float, max_redirects: int = 5,
          client: Any | None = None) -> bytes:
    """GET `url` under the source's limits; raise `FetchError` with the reason otherwise."""
    import httpx

    own = client is None
    if own:
        client = httpx.Client(follow_redirects=False, headers={"User-Agent": USER_AGENT})
    deadline = time.monotonic() + timeout_s
    try:
        current = url
        for hop in range(max_redirects + 1):
            _check_url(current)
            left = deadline - time.monotonic()
            if left <= 0:
                raise FetchError(f"took longer than {timeout_s:g} s")
            try:
                with client.stream("GET", current, timeout=httpx.Timeout(left)) as resp:
                    if resp.is_redirect:
                        location = resp.headers.get("location")
                        if not location:
                            raise FetchError(f"HTTP {resp.status_code} redirect without a Location")
                        current = urljoin(current, location)
                        continue
                    if resp.status_code != 200:
                        raise FetchError(f"HTTP {resp.status_code} from {redact(current)}")
                    declared = resp.headers.get("content-length")
                    if declared and declared.isdigit() and int(declared) > max_bytes:
                        raise FetchError(f"Content-Length {int(declared):,} bytes is over the "
                                         f"{max_bytes:,}-byte limit")
                    buf = bytearray()
                    for chunk in resp.iter_bytes():
                        buf += chunk
                        if len(buf) > max_bytes:
                            raise FetchError(f"body is over the {max_bytes:,}-byte limit")
                        if time.monotonic() > deadline:
                            raise FetchError(f"took longer than {timeout_s:g} s")
                    return bytes(buf)
            except httpx.TimeoutException:
                raise FetchError(f"took longer than {timeout_s:g} s") from None
            except httpx.HTTPError as exc:
                raise FetchError(f"{type(exc).__name__} fetching {redact(current)}") from None
        raise FetchError(f"more than {max_redirects} redirects")
    finally:
        if own:
            client.close()


# --------------------------------------------------------------------------- the manifest


def manifest_format(source: UrlManifestSource) -> str:
    if source.format != "auto":
        return source.format
    return "csv" if source.path.lower().endswith(".csv") else "parquet"


def read_manifest_rows(source: UrlManifestSource) -> list[tuple[str, str | None]]:
    """(url, external id or None) per manifest row, in file order."""
    import fsspec

    try:
        with fsspec.open(source.path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        raise SourceError(f"url_manifest {source.path!r} does not exist") from None
    except Exception as exc:
        raise SourceError(f"url_manifest {source.path!r}: cannot read: {type(exc).__name__}: {exc}") from None
    if manifest_format(source) == "csv":
        try:
            reader = csv.DictReader(io.StringIO(data.decode("utf-8-sig")))
            columns = reader.fieldnames or []
            records = list(reader)
        except (UnicodeDecodeError, csv.Error) as exc:
            raise SourceError(f"url_manifest {source.path!r} is not a readable CSV: {exc}") from None
    else:
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(io.BytesIO(data))
        except Exception as exc:
            raise SourceError(f"url_manifest {source.path!r} is not a readable Parquet file: "
                              f"{type(exc).__name__}: {exc}") from None
        columns = table.column_names
        records = table.to_pylist()
    if source.url_column not in columns:
        raise SourceError(f"url_manifest {source.path!r} has no {source.url_column!r} column "
                          f"(columns: {', '.join(map(str, columns)) or 'none'})")
    id_col = source.id_column if source.id_column in columns else None
    out = []
    for rec in records:
        url = rec.get(source.url_column)
        ext = rec.get(id_col) if id_col else None
        out.append(("" if url is None else str(url).strip(),
                    None if ext in (None, "") else str(ext).strip()))
    return out


def list_url_manifest(source: UrlManifestSource) -> list[SourceObject]:
    """One object per manifest row; size and mtime are unknown (-1, 0) until fetched."""
    out: list[SourceObject] = []
    seen: set[str] = set()
    for n, (url, ext) in enumerate(read_manifest_rows(source), start=1):
        uri = url or f"{source.path}#row={n}"
        key = ext or url or f"row-{n}"
        if key in seen:  # a repeated id or URL: keep the key unique, the scan dedups by content
            key = f"{key}#row={n}"
        seen.add(key)
        out.append(SourceObject(uri=uri, key=key, size=-1, mtime=0.0,
                                read=_row_reader(source, url, n)))
    return sorted(out, key=lambda o: o.key)


def _row_reader(source: UrlManifestSource, url: str, row: int):
    def read() -> bytes:
        if not url:
            raise FetchError(f"manifest row {row} has no URL in column {source.url_column!r}")
        return fetch(url, max_bytes=source.max_bytes, timeout_s=source.timeout_s,
                     max_redirects=source.max_redirects)
    return read

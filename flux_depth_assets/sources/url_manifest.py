"""`url_manifest` sources: a CSV or Parquet file listing image URLs (+ an optional external id).

Listing reads only the manifest (streamed, at most `max_rows` rows: `sources.manifest`); each URL
is fetched when the scan reads it. A fetch is http(s) only, follows at most `max_redirects`
redirects and only to http(s), reaches only public addresses unless the source sets
`allow_private_networks: true` (every hop is checked where it connects: `sources.netguard`),
stops past `max_bytes` or `timeout_s`, and raises `FetchError` with a reason a person can act on;
the scan turns that into a rejected row, so one bad URL never fails the catalog. The bytes are
then validated like any upload.

URLs may carry secrets (`user:pass@`, signed query strings). They are used only to fetch: what
is stored and shown (`SourceObject.uri`, hence `source_uri`, duplicate reasons, metadata, errors)
is `stored_uri(url)`, the URL without credentials and query, plus a hash that keeps two URLs that
differ only in those parts apart.

A URL has no size or mtime to compare before reading it, so each object carries a conditional
read instead: the scan passes the validators the server gave last time (ETag, Last-Modified) and
the GET carries `If-None-Match` / `If-Modified-Since`. A `304 Not Modified` costs no body and
reuses the previous row; a `200` is new content; a server that gives no validators is refetched.
"""

from __future__ import annotations

import email.utils
import hashlib
import logging
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from datetime import UTC
from typing import Any
from urllib.parse import urljoin, urlsplit

from flux_depth_assets.config.models import UrlManifestSource
from flux_depth_assets.sources.base import Fetched, SourceObject, Validators
from flux_depth_assets.sources.manifest import read_manifest_rows

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
        raise FetchError(
            f"URL scheme {parts.scheme or '(none)'!r} is not allowed (http/https only)"
        )
    if not parts.hostname:
        raise FetchError("URL has no host")


def redact(url: str) -> str:
    """The URL without user:password and query string (signed URLs carry secrets there)."""
    try:
        p = urlsplit(url)
    except ValueError:
        return "<malformed URL>"
    return f"{p.scheme}://{p.netloc.rpartition('@')[2]}{p.path}" + ("?…" if p.query else "")


HASH_MARK = "#url-sha256="


def stored_uri(url: str) -> str:
    """What identifies `url` in tables and messages: the URL itself when it carries no secret,
    else the URL without credentials, query and fragment, plus `#url-sha256=<16 hex>`.

    The hash covers the URL without its credentials (query included): it tells apart two
    signatures or two `?w=` variants of one path, and a new signature is a new identity (so a
    conditional read never mixes them up), while a short password is not exposed to guessing
    from the hash. Everything else that needs the exact URL reads it from the manifest again.
    """
    try:
        p = urlsplit(url)
    except ValueError:
        return "<malformed URL>#url-sha256=" + _short_hash(url)
    if "@" not in p.netloc and not p.query:
        return url
    public = p._replace(netloc=p.netloc.rpartition("@")[2])
    base = public._replace(query="", fragment="").geturl()
    return f"{base}{HASH_MARK}{_short_hash(public.geturl())}"


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def hides_secrets(uri: str) -> bool:
    """True for a `stored_uri` that dropped credentials or a query: it cannot be handed to a third
    party as the image's address (the provider gets the bytes instead)."""
    return HASH_MARK in uri


# --------------------------------------------------------------------------- validators

MAX_ETAG_CHARS = 512  # longer (or non-printable) ETags are not kept: the URL is simply refetched


def parse_http_date(value: str | None) -> float | None:
    """An HTTP-date (`Last-Modified`) as seconds since the epoch; None if absent or malformed."""
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
        if parsed.tzinfo is None:  # "-0000": UTC by convention
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def http_date(epoch: float) -> str:
    """Seconds since the epoch as an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`)."""
    return email.utils.formatdate(epoch, usegmt=True)


def response_validators(headers: Mapping[str, str]) -> Validators:
    """The ETag (verbatim: quotes and `W/` are part of it) and Last-Modified of a response."""
    etag: str | None = (headers.get("etag") or "").strip()
    if not (etag and len(etag) <= MAX_ETAG_CHARS and etag.isascii() and etag.isprintable()):
        etag = None
    return Validators(etag=etag, last_modified=parse_http_date(headers.get("last-modified")))


def conditional_headers(validators: Validators) -> dict[str, str]:
    """`If-None-Match` / `If-Modified-Since` for what we hold (a server that knows both prefers
    the ETag)."""
    headers = {}
    if validators.etag:
        headers["If-None-Match"] = validators.etag
    if validators.last_modified is not None:
        headers["If-Modified-Since"] = http_date(validators.last_modified)
    return headers


# --------------------------------------------------------------------------- fetching


class _RedactRequestLines(logging.Filter):
    """httpx logs every request's full URL at INFO (`HTTP Request: GET <url> ...`); a manifest's
    URL may carry credentials or a signature, so the line shows it as `redact` does."""

    def filter(self, record: logging.LogRecord) -> bool:
        import httpx

        if isinstance(record.args, tuple):
            record.args = tuple(
                redact(str(a)) if isinstance(a, httpx.URL) else a for a in record.args
            )
        return True


def _quiet_httpx_urls() -> None:
    httpx_log = logging.getLogger("httpx")
    if not any(isinstance(f, _RedactRequestLines) for f in httpx_log.filters):
        httpx_log.addFilter(_RedactRequestLines())


def new_client(allow_private_networks: bool = False) -> Any:
    """The httpx client fetches use: redirects are followed by hand, one hop at a time, and
    (unless private networks are allowed) every connection goes to a checked public address."""
    import httpx

    _quiet_httpx_urls()

    if allow_private_networks:
        return httpx.Client(follow_redirects=False, headers={"User-Agent": USER_AGENT})
    from flux_depth_assets.sources.netguard import guarded_transport

    return httpx.Client(
        follow_redirects=False,
        headers={"User-Agent": USER_AGENT},
        transport=guarded_transport(),
        trust_env=False,
    )


def fetch(
    url: str,
    *,
    max_bytes: int,
    timeout_s: float,
    max_redirects: int = 5,
    allow_private_networks: bool = False,
    client: Any | None = None,
) -> bytes:
    """GET `url` under the source's limits; raise `FetchError` with the reason otherwise."""
    got = fetch_if_changed(
        url,
        Validators(),
        max_bytes=max_bytes,
        timeout_s=timeout_s,
        max_redirects=max_redirects,
        allow_private_networks=allow_private_networks,
        client=client,
    )
    assert got.data is not None  # an unconditional GET never ends in "not modified"
    return got.data


# Complexity (C901): one redirect loop; each branch is a distinct HTTP outcome, own message.
def fetch_if_changed(  # noqa: C901
    url: str,
    validators: Validators,
    *,
    max_bytes: int,
    timeout_s: float,
    max_redirects: int = 5,
    allow_private_networks: bool = False,
    client: Any = None,
) -> Fetched:
    """GET `url` unless it still matches `validators`, under the source's limits.

    Returns the body with the response's validators, or `Fetched(None, ...)` on `304 Not
    Modified` (possible only when `validators` holds something: a 304 to an unconditional GET
    is an error). The conditional headers go with every hop of a redirect chain. Every failure
    raises `FetchError` with a reason a person can act on, naming the URL only as `redact` does.
    A shared `client` must come from `new_client` with the same `allow_private_networks`.
    """
    import httpx

    from flux_depth_assets.sources.netguard import BlockedAddress

    own = client is None
    if own:
        client = new_client(allow_private_networks)
    else:
        client.cookies.clear()  # a shared client: each URL starts as a fresh one would
    conditional = conditional_headers(validators)
    deadline = time.monotonic() + timeout_s
    try:
        current = url
        for hop in range(max_redirects + 1):
            _check_url(current)
            left = deadline - time.monotonic()
            if left <= 0:
                raise FetchError(f"took longer than {timeout_s:g} s")
            try:
                with client.stream(
                    "GET", current, headers=conditional, timeout=httpx.Timeout(left)
                ) as resp:
                    if resp.status_code == 304:  # 3xx for httpx, but not a redirect
                        if not conditional:
                            raise FetchError(
                                f"HTTP 304 from {redact(current)} to a GET that was not conditional"
                            )
                        fresh = response_validators(resp.headers)  # a 304 may update them
                        return Fetched(
                            None,
                            Validators(
                                etag=fresh.etag or validators.etag,
                                last_modified=(
                                    fresh.last_modified
                                    if fresh.last_modified is not None
                                    else validators.last_modified
                                ),
                            ),
                        )
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
                        raise FetchError(
                            f"Content-Length {int(declared):,} bytes is over the "
                            f"{max_bytes:,}-byte limit"
                        )
                    buf = bytearray()
                    for chunk in resp.iter_bytes():
                        buf += chunk
                        if len(buf) > max_bytes:
                            raise FetchError(f"body is over the {max_bytes:,}-byte limit")
                        if time.monotonic() > deadline:
                            raise FetchError(f"took longer than {timeout_s:g} s")
                    return Fetched(bytes(buf), response_validators(resp.headers))
            except httpx.TimeoutException:
                raise FetchError(f"took longer than {timeout_s:g} s") from None
            except BlockedAddress as exc:
                raise FetchError(f"refused {redact(current)}: {exc}") from None
            except FetchError:
                raise
            except Exception as exc:  # noqa: BLE001 - httpx errors, InvalidURL: text may quote the URL
                raise FetchError(f"{type(exc).__name__} fetching {redact(current)}") from None
        raise FetchError(f"more than {max_redirects} redirects")
    finally:
        if own:
            client.close()


class _SharedClient:
    """One client for all the URLs of a listing (kept-alive connections, one TLS set-up),
    built on first use and closed when the listing's objects are gone."""

    def __init__(self, allow_private_networks: bool) -> None:
        self._client: Any | None = None
        self._allow_private = allow_private_networks
        self._lock = threading.Lock()

    def get(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = new_client(self._allow_private)
                weakref.finalize(self, self._client.close)
            return self._client


# --------------------------------------------------------------------------- the manifest


def list_url_manifest(source: UrlManifestSource) -> list[SourceObject]:
    """One object per manifest row; size and mtime are unknown (-1, 0) until fetched.

    Each object reads its URL (`read`) or revalidates it (`conditional_read`) with one client
    shared by the listing. The objects name the URL by `stored_uri` only.
    """
    out: list[SourceObject] = []
    seen: set[str] = set()
    shared = _SharedClient(source.allow_private_networks)
    for n, (url, ext) in enumerate(read_manifest_rows(source), start=1):
        uri = stored_uri(url) if url else f"{source.path}#row={n}"
        key = ext or (uri if url else f"row-{n}")
        if key in seen:  # a repeated id or URL: keep the key unique, the scan dedups by content
            key = f"{key}#row={n}"
        seen.add(key)
        read, conditional_read = _row_readers(source, url, n, shared)
        out.append(
            SourceObject(
                uri=uri,
                key=key,
                size=-1,
                mtime=0.0,
                external_id=ext,
                read=read,
                conditional_read=conditional_read,
            )
        )
    return sorted(out, key=lambda o: o.key)


def _row_readers(
    source: UrlManifestSource,
    url: str,
    row: int,
    shared: _SharedClient,
) -> tuple[Callable[[], bytes], Callable[[Validators], Fetched]]:
    def conditional_read(validators: Validators) -> Fetched:
        if not url:
            raise FetchError(f"manifest row {row} has no URL in column {source.url_column!r}")
        return fetch_if_changed(
            url,
            validators,
            max_bytes=source.max_bytes,
            timeout_s=source.timeout_s,
            max_redirects=source.max_redirects,
            allow_private_networks=source.allow_private_networks,
            client=shared.get(),
        )

    def read() -> bytes:
        data = conditional_read(Validators()).data
        assert data is not None  # unconditional
        return data

    return read, conditional_read

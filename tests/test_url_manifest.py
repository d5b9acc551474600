"""`url_manifest` sources against a loopback HTTP server: limits, redirects, one row per failure,
conditional GETs (ETag / Last-Modified) between scans, and the external id column."""

from __future__ import annotations

import email.utils
import hashlib
import http.server
import re
import threading
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flux_depth_assets.config.models import CatalogConfig, UrlManifestSource
from flux_depth_assets.pipeline.scan import ASSET, scan_catalog
from flux_depth_assets.sources import SourceError, Validators, list_objects
from flux_depth_assets.sources.url_manifest import (
    FetchError,
    fetch,
    fetch_if_changed,
    http_date,
    parse_http_date,
    redact,
    response_validators,
)
from flux_depth_assets.storage.schemas import SOURCE_IMAGES
from flux_depth_assets.storage.store import Storage
from tests import images

JPG = images.jpeg(seed=11)
PNG = images.png(seed=12)


class Origin:
    """What the versioned paths serve, and a log of every response to them.

    `/etag/<name>`: weak ETag of the content, honours If-None-Match.
    `/lm/<name>`: Last-Modified only, honours If-Modified-Since.
    `/plain/<name>`: no validators; conditional headers are ignored.
    `/go/<name>`: 302 to `/etag/<name>`.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.content: dict[str, bytes] = {}
        self.modified: dict[str, int] = {}  # name → Last-Modified (epoch seconds)
        self.log: list[dict] = []  # {path, status, if_none_match, if_modified_since}

    def put(self, name: str, data: bytes, modified: int = 1_700_000_000) -> None:
        self.content[name], self.modified[name] = data, modified

    def reset_log(self) -> None:
        with self.lock:
            self.log.clear()

    def bodies(self) -> list[str]:
        """Paths answered with a 200 and the image bytes: what a scan downloaded."""
        return sorted(e["path"] for e in self.log if e["status"] == 200)

    def statuses(self) -> list[int]:
        return sorted(e["status"] for e in self.log)

    @staticmethod
    def etag(data: bytes) -> str:
        return f'W/"{hashlib.sha256(data).hexdigest()[:20]}"'


ORIGIN = Origin()


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep test output quiet
        pass

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None):
        try:
            self._write(status, body, headers)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up first (size or time limit): expected here

    def _write(self, status: int, body: bytes, headers: dict | None):
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if "Content-Length" not in (headers or {}) and "Transfer-Encoding" not in (headers or {}):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def _versioned(self, kind: str, name: str):
        data = ORIGIN.content.get(name)
        inm, ims = self.headers.get("If-None-Match"), self.headers.get("If-Modified-Since")
        status, headers = 200, {"Content-Type": "image/jpeg"}
        if data is None:
            status = 404
        elif kind == "etag":
            tag = Origin.etag(data)
            headers["ETag"] = tag
            # weak comparison (RFC 9110 8.8.3.2): W/ is not part of the opaque tag
            if inm and tag.removeprefix("W/") in {
                t.strip().removeprefix("W/") for t in inm.split(",")
            }:
                status = 304
        elif kind == "lm":
            headers["Last-Modified"] = email.utils.formatdate(ORIGIN.modified[name], usegmt=True)
            if ims and email.utils.parsedate_to_datetime(ims).timestamp() >= ORIGIN.modified[name]:
                status = 304
        with ORIGIN.lock:
            ORIGIN.log.append(
                dict(path=self.path, status=status, if_none_match=inm, if_modified_since=ims)
            )
        if status == 304:
            self.send_response(304)
            for k, v in headers.items():
                if k != "Content-Type":
                    self.send_header(k, v)
            self.end_headers()
            return None
        return self._send(status, data if status == 200 and data is not None else b"nope", headers)

    def do_GET(self):  # noqa: C901 - the test origin's whole route table in one place
        path = self.path.split("?")[0]
        kind, _, name = path.strip("/").partition("/")
        if kind in ("etag", "lm", "plain") and name:
            return self._versioned(kind, name)
        if kind == "go" and name:
            return self._send(302, headers={"Location": f"/etag/{name}"})
        if path == "/always-304":
            return self._send(304)
        if path == "/a.jpg":
            return self._send(200, JPG, {"Content-Type": "image/jpeg"})
        if path == "/b.png":
            return self._send(200, PNG, {"Content-Type": "application/octet-stream"})
        if path == "/hop":
            return self._send(302, headers={"Location": "/a.jpg"})
        if path == "/loop":
            return self._send(302, headers={"Location": "/loop"})
        if path == "/to-file":
            return self._send(302, headers={"Location": "file:///etc/passwd"})
        if path == "/to-ftp":
            return self._send(301, headers={"Location": "ftp://127.0.0.1/a.jpg"})
        if path == "/big-declared":
            return self._send(200, b"", {"Content-Length": str(10**9)})
        if path == "/big-chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            chunk = b"\xff" * 65536
            try:
                for _ in range(64):
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.write(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass
            return None
        if path == "/slow":
            time.sleep(1.5)
            return self._send(200, JPG)
        if path == "/text":
            return self._send(200, b"<html>not an image</html>", {"Content-Type": "image/jpeg"})
        return self._send(404, b"nope")


@pytest.fixture(scope="module")
def http_base():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def write_csv(path, rows: list[tuple[str, str]]):
    path.write_text("url,external_id\n" + "".join(f"{u},{i}\n" for u, i in rows))
    return path


def test_csv_and_parquet_manifests_list_one_object_per_row(tmp_path, http_base):
    rows = [(f"{http_base}/a.jpg", "sku-1"), (f"{http_base}/b.png", "")]
    csv_path = write_csv(tmp_path / "m.csv", rows)
    pq_path = tmp_path / "m.parquet"
    pq.write_table(pa.table({"url": [r[0] for r in rows], "external_id": ["sku-1", None]}), pq_path)
    for path in (csv_path, pq_path):
        objs = list_objects(UrlManifestSource(path=str(path), allow_private_networks=True))
        assert [o.key for o in objs] == [f"{http_base}/b.png", "sku-1"]
        assert {o.uri for o in objs} == {r[0] for r in rows}
        assert all(o.size == -1 for o in objs)
        assert objs[1].read() == JPG and objs[0].read() == PNG


def test_manifest_errors_are_source_errors(tmp_path):
    with pytest.raises(SourceError, match="does not exist"):
        list_objects(UrlManifestSource(path=str(tmp_path / "none.csv")))
    (tmp_path / "bad.csv").write_text("link\nhttp://x/a.jpg\n")
    with pytest.raises(SourceError, match="no 'url' column.*link"):
        list_objects(UrlManifestSource(path=str(tmp_path / "bad.csv")))
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 nope")
    with pytest.raises(SourceError, match="not a readable Parquet"):
        list_objects(UrlManifestSource(path=str(tmp_path / "bad.parquet")))


@pytest.mark.parametrize(
    "path, reason",
    [
        ("/hop", None),
        ("/missing", "HTTP 404"),
        ("/to-file", "scheme 'file' is not allowed"),
        ("/to-ftp", "scheme 'ftp' is not allowed"),
        ("/loop", "more than 5 redirects"),
        ("/big-declared", "Content-Length 1,000,000,000 bytes is over"),
        ("/big-chunked", "body is over the 1,000,000-byte limit"),
        ("/slow", "took longer than 0.5 s"),
        ("/always-304", "HTTP 304 from"),  # "not modified" to a GET that was not conditional
    ],
)
def test_fetch_limits(http_base, path, reason):
    kw = dict(max_bytes=1_000_000, timeout_s=0.5, max_redirects=5, allow_private_networks=True)
    if reason is None:
        assert fetch(http_base + path, **kw) == JPG
    else:
        with pytest.raises(FetchError, match=reason):
            fetch(http_base + path, **kw)


@pytest.mark.parametrize(
    "url, reason",
    [
        ("ftp://example.com/a.jpg", "scheme 'ftp'"),
        ("file:///etc/passwd", "scheme 'file'"),
        ("/relative/a.jpg", "scheme '(none)'"),
        ("http:///nohost.jpg", "no host"),
    ],
)
def test_only_http_urls_are_fetched(url, reason):
    with pytest.raises(FetchError, match=re.escape(reason)):
        fetch(url, max_bytes=100, timeout_s=1)


def test_redact_drops_credentials_and_query():
    assert (
        redact("https://u:secret@h.example:8443/p/a.jpg?X-Amz-Signature=abc")
        == "https://h.example:8443/p/a.jpg?…"
    )


def test_scan_turns_each_failed_url_into_a_rejected_row(tmp_path, http_base):
    manifest = write_csv(
        tmp_path / "m.csv",
        [
            (f"{http_base}/a.jpg", "ok-1"),
            (f"{http_base}/hop", "ok-redirect"),  # same bytes as ok-1: a duplicate row
            (f"{http_base}/b.png", "ok-2"),
            (f"{http_base}/missing", "gone"),
            (f"{http_base}/to-ftp", "ftp"),
            (f"{http_base}/text", "html"),
            ("s3://bucket/a.jpg", "s3"),
            ("", "empty"),
        ],
    )
    cat = CatalogConfig(
        name="web",
        source={
            "type": "url_manifest",
            "path": str(manifest),
            "timeout_s": 5,
            "max_bytes": 1_000_000,
            "allow_private_networks": True,
        },
    )
    result = scan_catalog(cat, Storage(str(tmp_path / "home")))
    by_status = {}
    for row in result.rows:
        by_status.setdefault(row["status"], []).append(row)
    assert len(by_status["accepted"]) == 2 and len(by_status["duplicate"]) == 1
    reasons = {r["source_uri"]: r["reason"] for r in by_status["rejected"]}
    assert len(reasons) == 5
    assert "HTTP 404" in reasons[f"{http_base}/missing"]
    assert "scheme 'ftp' is not allowed" in reasons[f"{http_base}/to-ftp"]
    assert "scheme 's3' is not allowed" in reasons["s3://bucket/a.jpg"]
    assert "has no URL" in reasons[f"{manifest}#row=8"]
    assert reasons[f"{http_base}/text"] and "cannot read" not in reasons[f"{http_base}/text"]


# --------------------------------------------------------------------------- conditional GETs


@pytest.fixture
def origin(http_base):
    ORIGIN.content.clear()
    ORIGIN.modified.clear()
    ORIGIN.reset_log()
    return ORIGIN


def web_catalog(manifest, name: str = "web") -> CatalogConfig:
    return CatalogConfig(
        name=name,
        source=UrlManifestSource(
            path=str(manifest), timeout_s=5, max_bytes=1_000_000, allow_private_networks=True
        ),
    )


def scan_and_write(cat: CatalogConfig, store: Storage):
    """What the `source_images` asset does: scan, then replace the snapshot table."""
    result = scan_catalog(cat, store)
    store.write_partition(ASSET, cat.name, result.table())
    return result


def snapshot(store: Storage, catalog: str) -> list[dict]:
    table = store.read_partition(ASSET, catalog, schema=SOURCE_IMAGES)
    assert table is not None
    return sorted(table.drop(["scanned_at"]).to_pylist(), key=lambda r: r["source_uri"])


def test_unchanged_urls_are_revalidated_not_downloaded(tmp_path, http_base, origin):
    origin.put("a", JPG)
    origin.put("b", PNG, modified=1_700_000_000)
    origin.put("c", images.jpeg(seed=13))
    manifest = write_csv(
        tmp_path / "m.csv",
        [
            (f"{http_base}/etag/a", "sku-a"),
            (f"{http_base}/lm/b", ""),
            (f"{http_base}/go/c", "sku-c"),
        ],
    )
    cat, store = web_catalog(manifest), Storage(str(tmp_path / "home"))

    first = scan_and_write(cat, store)
    assert first.counts["accepted"] == 3 and first.counts["new"] == 3
    assert origin.bodies() == ["/etag/a", "/etag/c", "/lm/b"]
    before = snapshot(store, "web")
    by_uri = {r["source_uri"]: r for r in before}
    assert by_uri[f"{http_base}/etag/a"]["etag"] == Origin.etag(JPG)  # verbatim, W/ included
    assert by_uri[f"{http_base}/etag/a"]["mtime"] is None  # no Last-Modified given
    assert by_uri[f"{http_base}/lm/b"]["etag"] is None
    assert by_uri[f"{http_base}/lm/b"]["mtime"].timestamp() == 1_700_000_000
    assert by_uri[f"{http_base}/go/c"]["etag"] == Origin.etag(images.jpeg(seed=13))

    origin.reset_log()
    second = scan_and_write(cat, store)
    assert origin.bodies() == []  # nothing downloaded...
    assert origin.statuses() == [304, 304, 304]  # (the /go hop is not logged)
    assert second.counts == {**first.counts, "new": 0, "unchanged": 3}
    assert snapshot(store, "web") == before  # ...and the same rows
    sent = {e["path"]: e for e in origin.log}
    assert sent["/etag/a"]["if_none_match"] == Origin.etag(JPG)
    assert sent["/etag/c"]["if_none_match"] == Origin.etag(images.jpeg(seed=13))  # after the hop
    assert sent["/lm/b"]["if_modified_since"] == "Tue, 14 Nov 2023 22:13:20 GMT"


def test_changed_content_is_downloaded_again_and_gets_its_new_id(tmp_path, http_base, origin):
    origin.put("a", JPG)
    origin.put("b", PNG, modified=1_700_000_000)
    origin.put("same", images.jpeg(seed=14))
    manifest = write_csv(
        tmp_path / "m.csv",
        [
            (f"{http_base}/etag/a", "sku-a"),
            (f"{http_base}/lm/b", "sku-b"),
            (f"{http_base}/etag/same", "sku-same"),
        ],
    )
    cat, store = web_catalog(manifest), Storage(str(tmp_path / "home"))
    scan_and_write(cat, store)
    old_ids = {r["external_id"]: r["image_id"] for r in snapshot(store, "web")}

    new_a, new_b = images.jpeg(seed=21), images.png(seed=22)
    origin.put("a", new_a)  # new content → new ETag
    origin.put("b", new_b, modified=1_700_000_600)  # newer Last-Modified
    origin.reset_log()
    result = scan_and_write(cat, store)
    assert origin.bodies() == ["/etag/a", "/lm/b"]
    assert result.counts["unchanged"] == 1 and result.counts["new"] == 2
    rows = {r["external_id"]: r for r in snapshot(store, "web")}
    assert rows["sku-a"]["image_id"] == hashlib.sha256(new_a).hexdigest()[:16] != old_ids["sku-a"]
    assert rows["sku-a"]["etag"] == Origin.etag(new_a)
    assert rows["sku-b"]["image_id"] == hashlib.sha256(new_b).hexdigest()[:16] != old_ids["sku-b"]
    assert rows["sku-b"]["mtime"].timestamp() == 1_700_000_600
    assert rows["sku-same"]["image_id"] == old_ids["sku-same"]
    assert all(store.exists(r["normalized_path"]) for r in rows.values())


def test_a_server_without_validators_is_refetched(tmp_path, http_base, origin):
    origin.put("a", JPG)
    manifest = write_csv(tmp_path / "m.csv", [(f"{http_base}/plain/a", "sku-a")])
    cat, store = web_catalog(manifest), Storage(str(tmp_path / "home"))
    scan_and_write(cat, store)
    before = snapshot(store, "web")
    assert before[0]["etag"] is None and before[0]["mtime"] is None
    origin.reset_log()
    result = scan_and_write(cat, store)
    assert origin.bodies() == ["/plain/a"]
    assert origin.log[0]["if_none_match"] is None and origin.log[0]["if_modified_since"] is None
    assert result.counts["unchanged"] == 0 and result.counts["new"] == 0  # same pixels, kept
    assert snapshot(store, "web") == before


def test_a_lost_normalised_copy_is_downloaded_unconditionally(tmp_path, http_base, origin):
    origin.put("a", JPG)
    manifest = write_csv(tmp_path / "m.csv", [(f"{http_base}/etag/a", "sku-a")])
    cat, store = web_catalog(manifest), Storage(str(tmp_path / "home"))
    scan_and_write(cat, store)
    normalized = snapshot(store, "web")[0]["normalized_path"]
    store.delete(normalized)
    origin.reset_log()
    result = scan_and_write(cat, store)
    assert origin.bodies() == ["/etag/a"] and origin.log[0]["if_none_match"] is None
    assert result.counts["new"] == 1 and store.exists(normalized)


def test_a_rejected_url_is_revalidated_too(tmp_path, http_base, origin):
    origin.put("notimg", b"<html>not an image</html>")
    manifest = write_csv(tmp_path / "m.csv", [(f"{http_base}/etag/notimg", "x")])
    cat, store = web_catalog(manifest), Storage(str(tmp_path / "home"))
    first = scan_and_write(cat, store)
    origin.reset_log()
    second = scan_and_write(cat, store)
    assert origin.statuses() == [304]
    assert (
        second.rows[0]["status"] == "rejected"
        and second.rows[0]["reason"] == first.rows[0]["reason"]
    )


def test_external_id_lands_in_the_table(tmp_path, http_base, origin):
    origin.put("a", JPG)
    origin.put("b", PNG)
    rows = [
        (f"{http_base}/etag/a", "sku-1"),
        (f"{http_base}/etag/b", ""),
        (f"{http_base}/missing", "sku-gone"),
    ]
    csv_path = write_csv(tmp_path / "m.csv", rows)
    pq_path = tmp_path / "m.parquet"
    pq.write_table(
        pa.table({"url": [r[0] for r in rows], "external_id": ["sku-1", None, "sku-gone"]}), pq_path
    )
    for n, path in enumerate((csv_path, pq_path)):
        store = Storage(str(tmp_path / f"home{n}"))
        scan_and_write(web_catalog(path), store)
        got = {r["source_uri"]: (r["external_id"], r["status"]) for r in snapshot(store, "web")}
        assert got == {
            f"{http_base}/etag/a": ("sku-1", "accepted"),
            f"{http_base}/etag/b": (None, "accepted"),
            f"{http_base}/missing": ("sku-gone", "rejected"),
        }
        table = store.read_partition(ASSET, "web")
        assert table.schema == SOURCE_IMAGES
        assert SOURCE_IMAGES.names[-4:] == [
            "external_id",
            "etag",
            "original_width",
            "original_height",
        ]


def test_a_table_written_before_the_new_columns_still_loads(tmp_path, http_base, origin):
    """Old snapshots (no external_id / etag) are read by the next scan: local files are still
    reused by size and mtime, URLs are fetched once more (no validators were kept)."""
    origin.put("a", JPG)
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "p.png").write_bytes(PNG)
    local = CatalogConfig(name="local", source={"type": "local_dir", "path": str(photos)})
    web = web_catalog(write_csv(tmp_path / "m.csv", [(f"{http_base}/etag/a", "sku-a")]))
    store = Storage(str(tmp_path / "home"))
    old_schema = pa.schema([f for f in SOURCE_IMAGES if f.name not in ("external_id", "etag")])
    for cat in (local, web):
        new = scan_catalog(cat, store).table()
        store.write_partition(ASSET, cat.name, new.select(old_schema.names).cast(old_schema))
        assert store.read_partition(ASSET, cat.name).schema == old_schema
        assert store.partition_rows(ASSET, cat.name)  # the reader without a schema loads it too
    origin.reset_log()
    local_again, web_again = scan_and_write(local, store), scan_and_write(web, store)
    assert local_again.counts["unchanged"] == 1 and local_again.rows[0]["external_id"] is None
    assert local_again.rows[0]["etag"] is None
    assert origin.bodies() == ["/etag/a"] and web_again.counts["new"] == 0
    assert snapshot(store, "web")[0]["external_id"] == "sku-a"
    origin.reset_log()
    scan_and_write(web, store)  # validators kept now: a 304
    assert origin.statuses() == [304]


@pytest.mark.parametrize(
    "headers, expected",
    [
        (
            {"etag": '"abc"', "last-modified": "Tue, 14 Nov 2023 22:13:20 GMT"},
            Validators('"abc"', 1_700_000_000.0),
        ),
        ({"etag": 'W/"x-1"'}, Validators('W/"x-1"', None)),
        ({"etag": "", "last-modified": "yesterday"}, Validators(None, None)),
        ({"etag": "é" * 3}, Validators(None, None)),  # not ASCII: not kept
        ({"etag": '"' + "x" * 600 + '"'}, Validators(None, None)),  # too long: not kept
        ({}, Validators(None, None)),
    ],
)
def test_response_validators(headers, expected):
    assert response_validators(headers) == expected


def test_http_dates_round_trip():
    assert http_date(1_700_000_000) == "Tue, 14 Nov 2023 22:13:20 GMT"
    assert parse_http_date(http_date(1_700_000_000)) == 1_700_000_000
    assert parse_http_date("Tue, 14 Nov 2023 22:13:20 -0000") == 1_700_000_000  # naive: UTC
    assert parse_http_date(None) is None and parse_http_date("soon") is None


def test_conditional_fetch_keeps_the_safety_rules(http_base, origin):
    origin.put("a", JPG)
    kw = dict(max_bytes=1_000_000, timeout_s=2, allow_private_networks=True)
    got = fetch_if_changed(f"{http_base}/etag/a", Validators(etag='"stale"'), **kw)
    assert got.data == JPG and got.validators.etag == Origin.etag(JPG)
    assert fetch_if_changed(f"{http_base}/etag/a", got.validators, **kw).not_modified
    for path, reason in [
        ("/to-file", "scheme 'file' is not allowed"),
        ("/loop", "more than"),
        ("/big-declared", "over the 1,000,000-byte limit"),
    ]:
        with pytest.raises(FetchError, match=reason):
            fetch_if_changed(http_base + path, got.validators, **kw)

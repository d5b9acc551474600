"""`url_manifest` sources against a loopback HTTP server: limits, redirects, one row per failure."""

from __future__ import annotations

import http.server
import re
import threading
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flux_depth_assets.config.models import CatalogConfig, UrlManifestSource
from flux_depth_assets.pipeline.scan import scan_catalog
from flux_depth_assets.sources import SourceError, list_objects
from flux_depth_assets.sources.url_manifest import FetchError, fetch, redact
from flux_depth_assets.storage.store import Storage
from tests import images

JPG = images.jpeg(seed=11)
PNG = images.png(seed=12)


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

    def do_GET(self):  # noqa: N802
        path = self.path.split("?")[0]
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
        objs = list_objects(UrlManifestSource(path=str(path)))
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


@pytest.mark.parametrize("path, reason", [
    ("/hop", None),
    ("/missing", "HTTP 404"),
    ("/to-file", "scheme 'file' is not allowed"),
    ("/to-ftp", "scheme 'ftp' is not allowed"),
    ("/loop", "more than 5 redirects"),
    ("/big-declared", "Content-Length 1,000,000,000 bytes is over"),
    ("/big-chunked", "body is over the 1,000,000-byte limit"),
    ("/slow", "took longer than 0.5 s"),
])
def test_fetch_limits(http_base, path, reason):
    kw = dict(max_bytes=1_000_000, timeout_s=0.5, max_redirects=5)
    if reason is None:
        assert fetch(http_base + path, **kw) == JPG
    else:
        with pytest.raises(FetchError, match=reason):
            fetch(http_base + path, **kw)


@pytest.mark.parametrize("url, reason", [
    ("ftp://example.com/a.jpg", "scheme 'ftp'"),
    ("file:///etc/passwd", "scheme 'file'"),
    ("/relative/a.jpg", "scheme '(none)'"),
    ("http:///nohost.jpg", "no host"),
])
def test_only_http_urls_are_fetched(url, reason):
    with pytest.raises(FetchError, match=re.escape(reason)):
        fetch(url, max_bytes=100, timeout_s=1)


def test_redact_drops_credentials_and_query():
    assert redact("https://u:secret@h.example:8443/p/a.jpg?X-Amz-Signature=abc") == \
        "https://h.example:8443/p/a.jpg?…"


def test_scan_turns_each_failed_url_into_a_rejected_row(tmp_path, http_base):
    manifest = write_csv(tmp_path / "m.csv", [
        (f"{http_base}/a.jpg", "ok-1"),
        (f"{http_base}/hop", "ok-redirect"),  # same bytes as ok-1: a duplicate row
        (f"{http_base}/b.png", "ok-2"),
        (f"{http_base}/missing", "gone"),
        (f"{http_base}/to-ftp", "ftp"),
        (f"{http_base}/text", "html"),
        ("s3://bucket/a.jpg", "s3"),
        ("", "empty"),
    ])
    cat = CatalogConfig(name="web", source={"type": "url_manifest", "path": str(manifest),
                                            "timeout_s": 5, "max_bytes": 1_000_000})
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

"""`url_manifest` against hostile manifests: private addresses (after resolving, on every redirect
hop, under DNS rebinding), secrets in URLs (never stored, logged or shown), and row caps."""

from __future__ import annotations

import base64
import http.server
import ipaddress
import logging
import socket
import textwrap
import threading
import urllib.parse
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from flux_depth_assets.config.models import CatalogConfig, UrlManifestSource
from flux_depth_assets.defs.resources import StorageResource
from flux_depth_assets.defs.runner import materialize_catalog
from flux_depth_assets.pipeline.scan import scan_catalog
from flux_depth_assets.sources import SourceError, list_objects, netguard
from flux_depth_assets.sources.url_manifest import FetchError, fetch, hides_secrets, stored_uri
from flux_depth_assets.storage.store import Storage
from tests import images

JPG, PNG = images.jpeg(seed=31), images.png(seed=32)


class Server:
    """A loopback origin on `host`: `/img/a.jpg`, `/img/b.png`, `/to?u=<url>` (302 to `u`); it
    records every request line and Authorization header it gets."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.requests: list[tuple[str, str | None]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_GET(self):
                outer.requests.append((self.path, self.headers.get("Authorization")))
                path, _, query = self.path.partition("?")
                body = {"/img/a.jpg": JPG, "/img/b.png": PNG}.get(path)
                if path == "/to":
                    self.send_response(302)
                    self.send_header("Location", urllib.parse.parse_qs(query)["u"][0])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200 if body else 404)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

        self.httpd = http.server.ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.base = f"http://{host}:{self.port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def origin():
    server = Server()
    yield server
    server.close()


@pytest.fixture
def public_127_0_0_2(monkeypatch):
    """Treat 127.0.0.2 as a public address, so a loopback server can play the allowed host."""
    real = netguard.address_kind
    monkeypatch.setattr(
        netguard, "address_kind", lambda ip: None if str(ip) == "127.0.0.2" else real(ip)
    )
    try:
        server = Server("127.0.0.2")
    except OSError:
        pytest.skip("cannot bind 127.0.0.2 here")
    yield server
    server.close()


def write_csv(path: Path, urls: list[str]) -> Path:
    path.write_text("url\n" + "".join(f"{u}\n" for u in urls))
    return path


KW = dict(max_bytes=1_000_000, timeout_s=5)


# --------------------------------------------------------------------------- which addresses


@pytest.mark.parametrize(
    "address, kind",
    [
        ("127.0.0.1", "loopback"),
        ("127.9.9.9", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped IPv6
        ("2002:7f00:1::", "loopback"),  # 6to4 around 127.0.0.1
        ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64 around 169.254.169.254
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fc00::1", "private"),
        ("::ffff:10.0.0.1", "private"),
        ("224.0.0.1", "multicast"),
        ("239.1.2.3", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("100.64.0.1", "not globally routable"),
        ("8.8.8.8", None),
        ("2606:4700:4700::1111", None),
        ("93.184.216.34", None),
    ],
)
def test_address_kind(address, kind):
    assert netguard.address_kind(ipaddress.ip_address(address)) == kind


@pytest.mark.parametrize(
    "host, kind",
    [
        ("169.254.169.254", "link-local"),
        ("10.0.0.1", "private"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("[::1]", "loopback"),
        ("[::ffff:169.254.169.254]", "link-local"),
    ],
)
def test_private_hosts_are_refused_before_any_connection(host, kind):
    with pytest.raises(FetchError) as err:
        fetch(f"http://{host}/x.jpg?sig=abc", **KW)
    assert str(err.value).startswith(f"refused http://{host}/x.jpg?…: host ")
    assert str(err.value).endswith(
        f" is a {kind} address; set `allow_private_networks: true` on the source to allow it"
    )


def test_loopback_is_refused_without_the_opt_in_and_fetched_with_it(tmp_path, origin):
    manifest = write_csv(
        tmp_path / "m.csv",
        [
            f"{origin.base}/img/a.jpg",
            f"http://localhost:{origin.port}/img/b.png",
            f"http://[::ffff:127.0.0.1]:{origin.port}/img/a.jpg",
        ],
    )
    store = Storage(str(tmp_path / "home"))
    refused = scan_catalog(
        CatalogConfig(name="web", source={"type": "url_manifest", "path": str(manifest)}), store
    )
    assert [r["status"] for r in refused.rows] == ["rejected"] * 3
    for row in refused.rows:
        assert "loopback address" in row["reason"] and "allow_private_networks" in row["reason"]
    assert "localhost (resolves to 127.0.0.1)" in " ".join(r["reason"] for r in refused.rows)
    assert origin.requests == []  # refused before connecting: nothing reached the server

    allowed = scan_catalog(
        CatalogConfig(
            name="web",
            source={"type": "url_manifest", "path": str(manifest), "allow_private_networks": True},
        ),
        store,
    )
    assert sorted(r["status"] for r in allowed.rows) == ["accepted", "accepted", "duplicate"]
    assert len(origin.requests) == 3


def test_a_redirect_from_an_allowed_host_to_loopback_is_refused(origin, public_127_0_0_2):
    allowed = public_127_0_0_2
    assert fetch(f"{allowed.base}/img/a.jpg", **KW) == JPG  # the allowed host itself is fine
    for target in (f"{origin.base}/img/a.jpg", f"http://localhost:{origin.port}/img/a.jpg"):
        hop = f"{allowed.base}/to?u={urllib.parse.quote(target, safe='')}"
        with pytest.raises(
            FetchError,
            match=r"refused http://(127\.0\.0\.1|localhost):\d+/img/"
            r"a\.jpg: host .*loopback address",
        ):
            fetch(hop, **KW)
    assert origin.requests == []  # the second hop never connected
    assert [p for p, _ in allowed.requests].count("/img/a.jpg") == 1
    # with the opt-in, the same chain is followed
    hop = f"{allowed.base}/to?u={urllib.parse.quote(origin.base + '/img/a.jpg', safe='')}"
    assert fetch(hop, allow_private_networks=True, **KW) == JPG


def test_dns_rebinding_cannot_swap_the_checked_address(monkeypatch, public_127_0_0_2):
    """The name answers 127.0.0.2 (allowed) when checked, 127.0.0.1 (refused) afterwards: the
    connection must go to the address that was checked, never to a second answer."""
    allowed = public_127_0_0_2
    try:
        internal = Server("127.0.0.1", allowed.port)  # same port, the address we must not reach
    except OSError:
        pytest.skip("port taken on 127.0.0.1")
    real = socket.getaddrinfo
    answers: list[str] = []

    def rebinding(host, port, *args, **kwargs):
        if host != "cdn.rebind.test":
            return real(host, port, *args, **kwargs)
        answers.append("127.0.0.2" if not answers else "127.0.0.1")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answers[-1], port))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    try:
        assert fetch(f"http://cdn.rebind.test:{allowed.port}/img/a.jpg", **KW) == JPG
        assert internal.requests == [] and len(allowed.requests) == 1
        assert answers == ["127.0.0.2"]  # resolved once, for the check and the connection
    finally:
        internal.close()


def test_a_name_with_one_private_answer_is_refused(monkeypatch):
    monkeypatch.setattr(
        socket,
        "getaddrinfo",
        lambda host, port, *a, **k: [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("8.8.8.8", port)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.7", port)),
        ],
    )
    with pytest.raises(FetchError, match=r"mixed\.test \(resolves to 10\.0\.0\.7\) is a private"):
        fetch("http://mixed.test/a.jpg", **KW)


# --------------------------------------------------------------------------- secrets in URLs


def test_stored_uri_drops_credentials_and_query_and_keeps_urls_apart():
    plain = "https://cdn.example.com/p/a.jpg"
    assert stored_uri(plain) == plain and not hides_secrets(plain)
    signed = stored_uri("https://u:pw@cdn.example.com:8443/p/a.jpg?X-Amz-Signature=abc#frag")
    assert signed.startswith("https://cdn.example.com:8443/p/a.jpg#url-sha256=")
    assert "pw" not in signed and "abc" not in signed and "frag" not in signed
    assert hides_secrets(signed)
    assert stored_uri(plain + "?sig=1") != stored_uri(plain + "?sig=2")  # two identities
    # credentials are not part of the identity (nor of the hash: no offline guessing)
    assert stored_uri("https://a:1@h.example/x.jpg?v=1") == stored_uri(
        "https://b:2@h.example/x.jpg?v=1"
    )
    no_query = stored_uri("https://a:1@h.example/x.jpg")
    assert no_query.startswith("https://h.example/x.jpg#url-sha256=")
    assert no_query == stored_uri("https://z:9@h.example/x.jpg")


SECRETS = [
    "PW-S3CRET-1",
    "SIG-S3CRET-2",
    "SIG-S3CRET-3",
    "TOK-S3CRET-4",
    "SIG-S3CRET-5",
    "PW-S3CRET-6",
]


def renderings(secret: str) -> list[bytes]:
    return [
        secret.encode(),
        urllib.parse.quote(secret).encode(),
        secret[:8].encode(),
        secret.encode().hex().encode(),
        repr(secret).encode(),
    ]


def test_no_secret_reaches_tables_files_metadata_logs_or_the_run_database(tmp_path, origin, capfd):
    base = origin.base
    manifest = write_csv(
        tmp_path / "m.csv",
        [
            f"http://alice:{SECRETS[0]}@127.0.0.1:{origin.port}/img/a.jpg?sig={SECRETS[1]}&exp=1",
            f"{base}/img/a.jpg?sig={SECRETS[2]}",  # duplicate content
            f"{base}/missing.jpg?token={SECRETS[3]}",  # 404: a rejected row
            f"{base}/to?u=%2Fimg%2Fb.png&sig={SECRETS[4]}",  # a redirect
            f"http://bob:{SECRETS[5]}@127.0.0.1:{origin.port}/img/b.png",  # duplicate of the hop
        ],
    )
    cfg = tmp_path / "cfg"
    (cfg / "catalogs").mkdir(parents=True)
    (cfg / "catalogs" / "c.yml").write_text(
        textwrap.dedent(f"""\
        catalogs:
          - name: web
            source: {{type: url_manifest, path: {manifest}, allow_private_networks: true}}
            max_failure_ratio: 0.5
    """)
    )
    root, dagster_home = tmp_path / "store", tmp_path / "dagster_home"
    dagster_home.mkdir()
    instance = dg.DagsterInstance.local_temp(str(dagster_home))
    outcome = materialize_catalog(
        "web",
        config_dir=cfg,
        instance=instance,
        resources={"storage": StorageResource(root=str(root))},
    )
    assert outcome.success, outcome.error
    # the URLs were fetched in full: credentials and signatures reached the origin...
    assert (
        f"/img/a.jpg?sig={SECRETS[1]}&exp=1",
        "Basic " + base64.b64encode(f"alice:{SECRETS[0]}".encode()).decode(),
    ) in origin.requests
    # ...and the table names them without their secrets
    rows = pq.read_table(root / "tables/source_images/catalog=web/part-0.parquet").to_pylist()
    by_status = sorted((r["status"], r["source_uri"]) for r in rows)
    assert [s for s, _ in by_status] == ["accepted"] * 2 + ["duplicate"] * 2 + ["rejected"]
    assert all(hides_secrets(uri) for _, uri in by_status)
    first, dup = sorted(
        (r for r in rows if r["source_uri"].startswith(f"{base}/img/a.jpg#")),
        key=lambda r: r["status"],
    )
    assert (first["status"], dup["status"]) == ("accepted", "duplicate")
    assert dup["reason"] == f"same content as {first['source_uri']}"
    missing = next(r for r in rows if r["status"] == "rejected")
    assert missing["reason"] == f"cannot read: FetchError: HTTP 404 from {base}/missing.jpg?…"
    # nothing anywhere: every file under the storage root and DAGSTER_HOME (Parquet, lineage,
    # run and event-log databases, compute logs), the metadata, the event log and the console
    basic = base64.b64encode(f"alice:{SECRETS[0]}".encode())
    haystacks = {
        str(p): p.read_bytes() for d in (root, dagster_home) for p in d.rglob("*") if p.is_file()
    }
    haystacks["metadata"] = repr(outcome.materialized).encode()
    haystacks["events"] = "\n".join(repr(e) for e in instance.all_logs(outcome.run_id)).encode()
    out, err = capfd.readouterr()
    haystacks["console"] = (out + err).encode()
    assert len(haystacks) > 10
    for where, data in haystacks.items():
        for secret in SECRETS:
            for shown in renderings(secret):
                assert shown not in data, f"{shown!r} in {where}"
        assert basic not in data, where


def test_httpx_request_log_lines_do_not_carry_the_secrets(origin, caplog):
    url = f"http://alice:{SECRETS[0]}@127.0.0.1:{origin.port}/img/a.jpg?sig={SECRETS[1]}"
    with caplog.at_level(logging.INFO, logger="httpx"):
        assert fetch(url, allow_private_networks=True, **KW) == JPG
    line = next(r.getMessage() for r in caplog.records if r.name == "httpx")
    assert line.startswith(f"HTTP Request: GET {origin.base}/img/a.jpg?… ")
    assert SECRETS[0] not in caplog.text and SECRETS[1] not in caplog.text


# --------------------------------------------------------------------------- manifest limits


def test_manifests_are_capped_at_max_rows(tmp_path):
    urls = [f"https://cdn.example.com/{i}.jpg" for i in range(6)]
    csv_path = write_csv(tmp_path / "m.csv", urls)
    pq_path = tmp_path / "m.parquet"
    pq.write_table(pa.table({"url": urls}), pq_path, row_group_size=2)
    for path in (csv_path, pq_path):
        assert len(list_objects(UrlManifestSource(path=str(path), max_rows=6))) == 6
        with pytest.raises(
            SourceError,
            match=r"has (more than 5 rows|6 rows, more than "
            r"max_rows 5)",
        ) as err:
            list_objects(UrlManifestSource(path=str(path), max_rows=5))
        assert str(path) in str(err.value) and "max_rows" in str(err.value)
    assert UrlManifestSource(path="m.csv").max_rows == 100_000
    with pytest.raises(ValidationError):
        UrlManifestSource(path="m.csv", max_rows=0)


@pytest.mark.parametrize(
    "path", ["http://169.254.169.254/m.csv", "https://x.example/m.csv", "ftp://x/m.csv"]
)
def test_a_manifest_is_a_local_or_s3_file_never_a_url(path):
    with pytest.raises(ValidationError, match="manifest path scheme .* is not supported"):
        UrlManifestSource(path=path)
    assert UrlManifestSource(path="s3://bucket/m.csv").path == "s3://bucket/m.csv"

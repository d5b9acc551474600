"""`local_dir` sources never read the machine's system folders nor the pipeline's own storage, and
odd entries (links out, FIFOs, sockets, folders named like images) become rejected rows."""

from __future__ import annotations

import hashlib
import os
import socket
import textwrap
import threading
from pathlib import Path

import dagster as dg
import pytest
from pydantic import ValidationError

from flux_depth_assets.config import ConfigError, load_project
from flux_depth_assets.config.models import CatalogConfig, LocalDirSource, S3PrefixSource
from flux_depth_assets.defs.resources import DepthProviderResource, StorageResource
from flux_depth_assets.defs.runner import materialize_catalog
from flux_depth_assets.fakeapi import running_fake_api
from flux_depth_assets.pipeline.scan import ASSET, scan_catalog
from flux_depth_assets.pipeline.upload_watch import walk_local_dir
from flux_depth_assets.sources import SourceError, list_objects
from flux_depth_assets.sources.base import RefusedEntry
from flux_depth_assets.sources.roots import system_root_reason
from flux_depth_assets.storage.store import Storage
from tests import images


def write_catalog(tmp_path: Path, source_yaml: str) -> Path:
    cfg = tmp_path / "cfg"
    (cfg / "catalogs").mkdir(parents=True, exist_ok=True)
    (cfg / "catalogs" / "c.yml").write_text(
        textwrap.dedent(f"""\
        catalogs:
          - name: shop
            description: photos
            source: {source_yaml}
    """)
    )
    return cfg


# --------------------------------------------------------------------------- system folders


@pytest.mark.parametrize(
    "path",
    ["/", "//", "/etc", "/usr/", "/proc/self", "/dev/shm", "/home", "/tmp", "~", "/var/../etc/ssl"],
)
def test_system_folders_are_refused_by_validate_with_file_and_line(tmp_path, path):
    cfg = write_catalog(tmp_path, f"{{type: local_dir, path: '{path}'}}")
    with pytest.raises(ConfigError) as err:
        load_project(cfg)
    msg = str(err.value)
    assert f"{cfg / 'catalogs' / 'c.yml'}:4" in msg  # the `source:` line
    assert "source.path" in msg and "refusing local_dir path" in msg
    with pytest.raises(ValidationError, match="refusing"):
        LocalDirSource(path=path)


def test_a_relative_path_that_resolves_to_a_system_folder_is_refused_by_validate(tmp_path):
    depth = len(tmp_path.parts)  # enough '..' to climb from the project root to '/'
    cfg = write_catalog(tmp_path, "{type: local_dir, path: " + "/".join([".."] * depth) + "}")
    with pytest.raises(
        ConfigError,
        match=r"c\.yml:4: catalog 'shop': field 'source\.path': "
        r"refusing local_dir path: '/' is a system folder",
    ):
        load_project(cfg)


@pytest.mark.parametrize(
    "path", ["/srv/photos", "/data", "~/photos", "photos", "../photos", "/usr/share/backgrounds"]
)
def test_ordinary_folders_pass_validation(path):
    assert system_root_reason(path) is None
    assert LocalDirSource(path=path).path == path


def test_a_link_to_a_system_folder_is_refused_when_listed(tmp_path):
    (tmp_path / "photos").symlink_to("/")
    (tmp_path / "conf").symlink_to("/etc")
    for name in ("photos", "conf"):
        src = LocalDirSource(path=str(tmp_path / name))  # validation cannot see through a link
        with pytest.raises(SourceError, match="refusing to read it.*system folder"):
            list_objects(src)
        with pytest.raises(SourceError, match="system folder"):
            walk_local_dir(src)  # the upload sensor refuses it too


# --------------------------------------------------------------------------- the storage root


def test_a_source_inside_the_storage_root_is_refused(tmp_path):
    home = Path(os.environ["FLUX_DEPTH_HOME"])  # conftest: tmp_path/home
    (home / "catalogs" / "shop").mkdir(parents=True)
    src = LocalDirSource(path=str(home / "catalogs"))
    with pytest.raises(SourceError, match=r"inside the pipeline's storage root .*FLUX_DEPTH_HOME"):
        list_objects(src)
    with pytest.raises(SourceError, match="inside the pipeline's storage root"):
        walk_local_dir(src)
    # the run's own root counts as well as $FLUX_DEPTH_HOME
    other = tmp_path / "store"
    (other / "in").mkdir(parents=True)
    with pytest.raises(SourceError, match="storage root"):
        list_objects(LocalDirSource(path=str(other / "in")), storage_root=str(other))
    assert list_objects(LocalDirSource(path=str(other / "in"))) == []


def test_a_source_holding_the_storage_root_skips_it_with_one_rejected_row(tmp_path, monkeypatch):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "a.jpg").write_bytes(images.jpeg(seed=1))
    monkeypatch.setenv("FLUX_DEPTH_HOME", str(photos / "flux_home"))  # what the sensor knows
    store = Storage(str(photos / "flux_home"))
    store.write_bytes("catalogs/shop/source_images/x.png", images.png(seed=2))
    cat = CatalogConfig(name="shop", source={"type": "local_dir", "path": str(photos)})
    result = scan_catalog(cat, store)
    got = {Path(r["source_uri"]).name: (r["status"], r["reason"]) for r in result.rows}
    assert got["a.jpg"] == ("accepted", None)
    status, reason = got["flux_home"]
    assert status == "rejected" and "storage root" in reason
    assert len(got) == 2  # nothing under flux_home was listed
    # the upload sensor does not watch it either: the pipeline's writes never trigger a run
    assert [f.key for f in walk_local_dir(cat.source)] == ["a.jpg"]


def test_three_unchanged_runs_of_a_folder_holding_the_storage_pay_once(tmp_path):
    """Issue 13 case 4: re-ingesting its own outputs made 3, then 9, then 15 paid calls."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(3):
        (photos / f"p{i}.jpg").write_bytes(images.jpeg(seed=i))
    cfg = write_catalog(tmp_path, "{type: local_dir, path: photos}")
    # the skipped storage root is one rejected row of four: allow it past the default 20 %
    yml = cfg / "catalogs" / "c.yml"
    yml.write_text(
        yml.read_text() + "    provider: {name: eachlabs, poll_interval_s: 0.05}\n"
        "    max_failure_ratio: 0.5\n"
    )
    root = photos / "flux_depth_home"
    creates, accepted = [], []
    with running_fake_api(latency_s=0.05) as server:
        for _ in range(3):
            outcome = materialize_catalog(
                "shop",
                assets=["source_images", "depth_maps"],
                config_dir=cfg,
                instance=dg.DagsterInstance.ephemeral(),
                resources={
                    "storage": StorageResource(root=str(root)),
                    "depth_provider": DepthProviderResource(
                        eachlabs_api_key="k-test", eachlabs_base_url=server.base_url
                    ),
                },
            )
            assert outcome.success, outcome.error
            creates.append(server.stats()["creates"])
            accepted.append(outcome.materialized["source_images"]["accepted"])
    assert creates == [3, 3, 3] and accepted == [3, 3, 3]


def test_an_s3_prefix_holding_the_s3_storage_root_skips_it_and_one_inside_is_refused(
    s3_env, monkeypatch
):
    s3_env.put("in/a.jpg", images.jpeg(seed=7))
    for i in range(3):
        s3_env.put(f"in/flux/catalogs/shop/source_images/{i}.png", images.png(seed=i))
    monkeypatch.setenv("FLUX_DEPTH_HOME", f"s3://{s3_env.bucket}/in/flux")
    objs = list_objects(S3PrefixSource(bucket=s3_env.bucket, prefix="in"))
    assert [(o.key, o.rejected is not None) for o in objs] == [("a.jpg", False), ("flux/", True)]
    assert "storage root" in str(objs[1].rejected)
    with pytest.raises(SourceError, match=r"inside the pipeline's storage root s3://.*/in/flux/"):
        list_objects(S3PrefixSource(bucket=s3_env.bucket, prefix="in/flux/catalogs"))
    # $FLUX_DEPTH_HOME counts whatever the run's root is; a root in another bucket does not
    assert (
        len(
            list_objects(
                S3PrefixSource(bucket=s3_env.bucket, prefix="in"),
                storage_root="s3://other-bucket/x",
            )
        )
        == 2
    )
    monkeypatch.setenv("FLUX_DEPTH_HOME", "s3://other-bucket/x")
    assert [o.key for o in list_objects(S3PrefixSource(bucket=s3_env.bucket, prefix="in"))] == [
        "a.jpg"
    ] + [f"flux/catalogs/shop/source_images/{i}.png" for i in range(3)]
    with pytest.raises(SourceError, match="storage root"):
        list_objects(
            S3PrefixSource(bucket=s3_env.bucket, prefix="in"), storage_root=f"s3://{s3_env.bucket}"
        )


# --------------------------------------------------------------------------- odd entries


def _scan_bounded(cat: CatalogConfig, store: Storage):
    """The scan in a thread, so a regression that opens a FIFO fails instead of hanging."""
    out: dict = {}
    thread = threading.Thread(target=lambda: out.update(r=scan_catalog(cat, store)), daemon=True)
    thread.start()
    thread.join(120)
    assert not thread.is_alive(), "the scan blocked (a FIFO was opened?)"
    return out["r"]


def test_links_out_fifos_sockets_and_image_named_folders_get_a_rejected_row(tmp_path):
    photos = tmp_path / "p"
    (photos / "album.jpg").mkdir(parents=True)  # a folder named like an image
    (photos / "album.jpg" / "in.png").write_bytes(images.png(seed=3))
    (photos / "ok.jpg").write_bytes(images.jpeg(seed=4))
    secret = tmp_path / "outside" / "secret.jpg"
    secret.parent.mkdir()
    secret.write_bytes(images.jpeg(seed=5))
    (photos / "out.jpg").symlink_to(secret)  # a link that leaves the folder
    (photos / "outdir").symlink_to(secret.parent)  # a folder link that leaves it
    (photos / "z_link.jpg").symlink_to(photos / "ok.jpg")  # inside: read (a duplicate)
    (photos / "dangling.jpg").symlink_to(photos / "nothing.jpg")
    os.mkfifo(photos / "pipe.jpg")
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(photos / "s.jpg"))
    except OSError:  # path too long for a unix socket on this machine
        pass
    cat = CatalogConfig(name="shop", source={"type": "local_dir", "path": str(photos)})
    store = Storage(str(tmp_path / "home"))
    result = _scan_bounded(cat, store)
    store.write_partition(ASSET, cat.name, result.table())
    sock.close()
    rows = {r["source_uri"][len(str(photos)) + 1 :]: r for r in result.rows}
    assert rows["ok.jpg"]["status"] == rows["album.jpg/in.png"]["status"] == "accepted"
    assert rows["z_link.jpg"]["status"] == "duplicate"
    expected = {
        "album.jpg": "a folder whose name matches the include patterns",
        "out.jpg": "symbolic link that leads outside the source folder",
        "outdir": "symbolic link to a folder outside the source folder",
        "dangling.jpg": "symbolic link that leads nowhere",
        "pipe.jpg": "a FIFO (named pipe), not an image file",
    }
    if (photos / "s.jpg").exists():
        expected["s.jpg"] = "a socket, not an image file"
    for name, reason in expected.items():
        assert rows[name]["status"] == "rejected" and reason in rows[name]["reason"], name
    assert set(rows) == set(expected) | {"ok.jpg", "album.jpg/in.png", "z_link.jpg"}
    outside_sha = hashlib.sha256(images.jpeg(seed=5)).hexdigest()
    assert all(r.get("sha256") != outside_sha for r in result.rows)  # never read
    # the next scan reuses the rejections (nothing is opened again)
    again = _scan_bounded(cat, store)
    assert again.counts["rejected"] == len(expected) and again.counts["unchanged"] == len(rows)


def test_a_file_swapped_for_a_fifo_after_listing_is_refused_without_blocking(tmp_path):
    photos = tmp_path / "p"
    photos.mkdir()
    (photos / "a.jpg").write_bytes(images.jpeg(seed=6))
    [obj] = list_objects(LocalDirSource(path=str(photos)))
    (photos / "a.jpg").unlink()
    os.mkfifo(photos / "a.jpg")
    out: dict = {}

    def read() -> None:
        try:
            obj.read()  # O_NONBLOCK: opening a FIFO with no writer returns at once
        except RefusedEntry as exc:
            out["error"] = str(exc)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    thread.join(120)
    assert not thread.is_alive(), "the read blocked on the FIFO"
    assert "FIFO" in out["error"]

"""The static gallery: a thumbnail of every output, made once, on the work pool; a broken
output is shown as missing with its reason and never fails the page."""

from __future__ import annotations

import io
import json
import shutil

import pyarrow as pa
import pytest
from PIL import Image

from flux_depth_assets.gallery import THUMB_SIDE, build_gallery, gallery_dir
from flux_depth_assets.pipeline.parallel import PoolConfig
from flux_depth_assets.storage.store import Storage

KINDS = ("src", "depth", "normals", "preview")


@pytest.fixture
def store(shop_store) -> Storage:
    """A copy of one finished run over 3 demo photos (conftest `shop_run`)."""
    return shop_store


def page_rows(store: Storage) -> list[dict]:
    text = store.read_bytes(f"{gallery_dir('shop')}/data/page-0001.js").decode()
    body = text[text.index("(") + 1 : text.rindex(")")]
    return json.loads(f"[{body}]")[1]


def test_every_output_gets_a_small_thumbnail_made_once(store):
    shutil.rmtree(store.full(f"{gallery_dir('shop')}/thumbs"))
    pool = PoolConfig(workers=2, min_tasks=1)  # real worker processes
    first = build_gallery(store, "shop", pool=pool)
    assert first.images == 3 and first.thumbs_made == 3 * len(KINDS)
    for row in page_rows(store):
        for kind in KINDS:
            data = store.read_bytes(f"{gallery_dir('shop')}/{row['thumbs'][kind]}")
            with Image.open(io.BytesIO(data)) as im:
                assert im.format == ("WEBP" if kind == "preview" else "JPEG")
                assert max(im.size) <= THUMB_SIDE
                if kind == "preview":
                    assert im.n_frames > 1
    assert build_gallery(store, "shop", pool=pool).thumbs_made == 0  # unchanged: none again


def test_a_broken_output_is_shown_missing_with_its_reason(store):
    shutil.rmtree(store.full(f"{gallery_dir('shop')}/thumbs"))
    victim = page_rows(store)[0]
    normals = store.read_partition("normal_maps", "shop").to_pylist()
    path = next(r["normal_path"] for r in normals if r["image_id"] == victim["id"])
    store.write_bytes(path, b"\x89PNG\r\n\x1a\n not really")
    result = build_gallery(store, "shop", pool=PoolConfig(workers=1))
    assert result.images == 3 and result.thumbs_made == 3 * len(KINDS) - 1
    row = next(r for r in page_rows(store) if r["id"] == victim["id"])
    assert row["thumbs"]["normals"] is None and row["thumbs"]["src"]
    assert "normals:" in row["checks"]["parallax_sprites"]["error"]


def test_a_rebuild_reads_only_the_manifests_of_changed_sprites(store, monkeypatch):
    from flux_depth_assets import gallery

    build_gallery(store, "shop", pool=PoolConfig(workers=1))
    before = {r["id"]: r["layers"] for r in page_rows(store)}
    assert all(layers and layers["list"] for layers in before.values())

    def must_not_read(*_a, **_k):
        raise AssertionError("an unchanged sprite set's manifest was read again")

    with monkeypatch.context() as m:
        m.setattr(gallery, "_layers", must_not_read)
        build_gallery(store, "shop", pool=PoolConfig(workers=1))
    assert {r["id"]: r["layers"] for r in page_rows(store)} == before
    # a re-made sprite set (another params hash) is read again
    table = store.read_partition("parallax_sprites", "shop")
    rows = table.to_pylist()
    rows[0]["params_hash"] = "other"
    store.write_partition("parallax_sprites", "shop", pa.Table.from_pylist(rows, table.schema))
    calls = []
    real = gallery._layers
    monkeypatch.setattr(gallery, "_layers", lambda st, row: calls.append(row) or real(st, row))
    build_gallery(store, "shop", pool=PoolConfig(workers=1))
    assert [r["image_id"] for r in calls] == [rows[0]["image_id"]]


def test_the_assets_write_the_thumbnails_so_the_gallery_decodes_nothing(tmp_path, monkeypatch):
    """Each output's thumbnail is written by the asset that made it, from its pixels in memory;
    the gallery's first build then makes none, and the stills are the bytes the gallery would
    have made from the files."""
    import dagster as dg

    from flux_depth_assets import gallery
    from flux_depth_assets.defs.resources import ComputeResource, StorageResource
    from flux_depth_assets.defs.runner import materialize_catalog
    from flux_depth_assets.thumbs import still_thumb
    from tests import images
    from tests.catalogs import shop_catalog

    files = {f"p{i}.jpg": images.encode(images.photo(200, 150, seed=i), "JPEG") for i in range(2)}
    cfg = shop_catalog(tmp_path, files)
    store = Storage(str(tmp_path / "home"))
    out = materialize_catalog(
        "shop",
        assets=["source_images", "depth_maps", "normal_maps", "parallax_sprites"],
        config_dir=cfg,
        resources={
            "storage": StorageResource(root=str(tmp_path / "home")),
            "compute": ComputeResource(workers=1),
        },
        instance=dg.DagsterInstance.ephemeral(),
        log_level="WARNING",
    )
    assert out.success, out.error
    written = set(store.list(f"{gallery_dir('shop')}/thumbs"))
    assert len(written) == 2 * len(KINDS)

    def must_not_decode(*_a, **_k):
        raise AssertionError("the gallery decoded an output the asset had thumbnailed")

    monkeypatch.setattr(gallery, "_pixels", must_not_decode)
    monkeypatch.setattr(gallery, "_preview_thumb", must_not_decode)
    assert build_gallery(store, "shop", pool=PoolConfig(workers=1)).thumbs_made == 0
    monkeypatch.undo()
    rows = page_rows(store)
    assert {f"{gallery_dir('shop')}/{r['thumbs'][k]}" for r in rows for k in KINDS} == written
    sources = {r["image_id"]: r for r in store.partition_dicts("source_images", "shop") or []}
    depth = {r["image_id"]: r for r in store.partition_dicts("depth_maps", "shop") or []}
    for row in rows:
        for kind, rel in (
            ("src", sources[row["id"]]["normalized_path"]),
            ("depth", depth[row["id"]]["depth_path"]),
        ):
            made = store.read_bytes(f"{gallery_dir('shop')}/{row['thumbs'][kind]}")
            assert made == still_thumb(gallery._pixels(store.read_bytes(rel)))
        with Image.open(
            io.BytesIO(store.read_bytes(f"{gallery_dir('shop')}/{row['thumbs']['preview']}"))
        ) as im:
            assert im.n_frames == 12 and max(im.size) <= THUMB_SIDE  # every other of 24


def test_a_preview_thumbnail_follows_the_sprite_settings(store):
    """Re-made sprites (other settings, same depth map) get a new preview thumbnail name, so the
    gallery does not keep showing the old animation."""
    build_gallery(store, "shop", pool=PoolConfig(workers=1))
    before = {r["id"]: r["thumbs"]["preview"] for r in page_rows(store)}
    table = store.read_partition("parallax_sprites", "shop")
    rows = table.to_pylist()
    rows[0]["params_hash"] = "other settings"
    store.write_partition("parallax_sprites", "shop", pa.Table.from_pylist(rows, table.schema))
    result = build_gallery(store, "shop", pool=PoolConfig(workers=1))
    after = {r["id"]: r["thumbs"]["preview"] for r in page_rows(store)}
    changed = {i for i in before if before[i] != after[i]}
    assert changed == {rows[0]["image_id"]} and result.thumbs_made == 1


def test_a_thumbnail_that_cannot_be_written_fails_no_image(tmp_path, monkeypatch):
    """Storage full for the gallery's folder: every output is still made, and the gallery makes
    the thumbnails later from the files."""
    import errno

    import dagster as dg

    from flux_depth_assets.defs.resources import ComputeResource, StorageResource
    from flux_depth_assets.defs.runner import materialize_catalog
    from tests import images
    from tests.catalogs import shop_catalog

    real_write = Storage.write_bytes

    def full_for_thumbs(self, rel, data):
        if rel.startswith("galleries/"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, rel, data)

    files = {f"p{i}.jpg": images.encode(images.photo(200, 150, seed=i), "JPEG") for i in range(2)}
    cfg = shop_catalog(tmp_path, files)
    assets = ["source_images", "depth_maps", "normal_maps", "parallax_sprites"]
    with monkeypatch.context() as m:
        m.setattr(Storage, "write_bytes", full_for_thumbs)
        out = materialize_catalog(
            "shop",
            assets=assets,
            config_dir=cfg,
            resources={
                "storage": StorageResource(root=str(tmp_path / "home")),
                "compute": ComputeResource(workers=1),
            },
            instance=dg.DagsterInstance.ephemeral(),
            log_level="WARNING",
        )
    assert out.success, out.error
    store = Storage(str(tmp_path / "home"))
    for asset in assets[1:]:
        rows = store.partition_dicts(asset, "shop") or []
        assert [r["status"] for r in rows] == ["succeeded"] * 2, asset
    assert store.list(f"{gallery_dir('shop')}/thumbs") == []
    assert build_gallery(store, "shop", pool=PoolConfig(workers=1)).thumbs_made == 2 * len(KINDS)

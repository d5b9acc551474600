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

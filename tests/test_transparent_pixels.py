"""Transparent source pixels become invalid depth (0), and every table downstream counts them so."""

from __future__ import annotations

import io

import dagster as dg
import numpy as np
import pyarrow.parquet as pq
from PIL import Image

from flux_depth_assets.defs.runner import materialize_catalog
from tests import images
from tests.catalogs import shop_catalog


def _cutout() -> bytes:
    """A product cut-out: left half fully transparent, right half an opaque photo."""
    rgb = Image.open(io.BytesIO(images.jpeg(seed=3))).convert("RGB").resize((96, 64))
    alpha = Image.new("L", rgb.size, 255)
    alpha.paste(0, (0, 0, 48, 64))
    im = rgb.copy()
    im.putalpha(alpha)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def test_transparent_pixels_are_invalid_depth_through_stats_and_tests(tmp_path):
    cfg = shop_catalog(
        tmp_path,
        {"cutout.png": _cutout(), "photo.jpg": images.jpeg(seed=4)},
        extra="    tests: [{valid_depth_ratio: {min: 0.95}}]\n",
    )
    out = materialize_catalog(
        "shop", config_dir=cfg, instance=dg.DagsterInstance.ephemeral(), log_level="WARNING"
    )
    home = tmp_path / "home"
    src = {
        r["source_uri"].rsplit("/", 1)[-1]: r
        for r in pq.read_table(home / "tables/source_images/catalog=shop").to_pylist()
    }
    cut_id = src["cutout.png"]["image_id"]
    depth = {
        r["image_id"]: r for r in pq.read_table(home / "tables/depth_maps/catalog=shop").to_pylist()
    }
    arr = np.asarray(Image.open(home / depth[cut_id]["depth_path"]))
    assert (arr[:, :48] == 0).all() and (arr[:, 48:] > 0).all()  # 0 = invalid, exactly the cut-out
    photo = np.asarray(Image.open(home / depth[src["photo.jpg"]["image_id"]]["depth_path"]))
    assert (photo > 0).all()
    stats = {
        r["image_id"]: r
        for r in pq.read_table(home / "tables/depth_stats/catalog=shop").to_pylist()
    }
    assert abs(stats[cut_id]["valid_fraction"] - 0.5) < 0.01
    assert stats[src["photo.jpg"]["image_id"]]["valid_fraction"] == 1.0
    # the declared valid_depth_ratio is no longer vacuous: the cut-out fails it
    checks = {name: ok for name, ok, _ in out.checks}
    assert checks["depth_stats:valid_depth_ratio"] is False
    assert [k for k, ok in checks.items() if not ok] == ["depth_stats:valid_depth_ratio"]
    normals = {
        r["image_id"]: r
        for r in pq.read_table(home / "tables/normal_maps/catalog=shop").to_pylist()
    }
    rgb = np.asarray(Image.open(home / normals[cut_id]["normal_path"]))
    assert (np.abs(rgb[:, :46].astype(int) - 128) <= 1).all()  # "no normal" where no depth

"""The `no_unfilled_pixels` asset check: passes on real sprite sets, fails on a holed one."""

from __future__ import annotations

import io
from pathlib import Path

import dagster as dg
import numpy as np
from PIL import Image

from flux_depth_assets.defs.assets.catalog import source_images
from flux_depth_assets.defs.assets.depth import depth_maps
from flux_depth_assets.defs.assets.derived import DERIVED_ASSETS, DERIVED_CHECKS
from flux_depth_assets.defs.assets.derived.checks import check_parallax_holes
from flux_depth_assets.defs.resources import CatalogsResource, ComputeResource, StorageResource
from flux_depth_assets.storage.store import Storage
from tests.catalogs import shop_catalog
from tests.fakes import CountingProviderResource


def test_the_check_passes_on_made_sprites_and_fails_on_a_background_hole(tmp_path: Path) -> None:
    cfg = shop_catalog(tmp_path, 2)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("catalog", ["shop"])
    home = tmp_path / "home"
    result = dg.materialize(
        [source_images, depth_maps, *DERIVED_ASSETS, *DERIVED_CHECKS],
        partition_key="shop",
        instance=instance,
        resources={
            "storage": StorageResource(root=str(home)),
            "catalogs": CatalogsResource(config_dir=str(cfg)),
            "depth_provider": CountingProviderResource(),
            "compute": ComputeResource(),
        },
    )
    assert result.success
    [ev] = [
        e
        for e in result.get_asset_check_evaluations()
        if e.asset_check_key.name == "no_unfilled_pixels"
    ]
    assert ev.passed and ev.metadata["max_unfilled_pixels"].value == 0

    store = Storage(str(home))
    [folder, *_] = sorted(
        p.parent for p in (home / "catalogs/shop/parallax_sprites").rglob("layer_0.png")
    )
    with Image.open(folder / "layer_0.png") as im:
        bg = np.array(im.convert("RGBA"))
    bg[..., 3] = 0  # a background never filled: holes wherever no nearer layer covers
    buf = io.BytesIO()
    Image.fromarray(bg, "RGBA").save(buf, format="PNG")
    store.write_bytes(str((folder / "layer_0.png").relative_to(home)), buf.getvalue())

    res = check_parallax_holes(store, "shop")
    assert not res.passed
    assert folder.name in (res.description or "") and "unfilled" in (res.description or "")

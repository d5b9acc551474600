"""The catalog gallery in headless Chromium: every thumbnail loads, no console error, opened
directly from file:// (no server); a 2,000-image catalog's first page renders promptly."""

from __future__ import annotations

import time
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest

from flux_depth_assets.defs.assets.catalog import source_images
from flux_depth_assets.defs.assets.depth import depth_maps
from flux_depth_assets.defs.assets.derived import DERIVED_ASSETS
from flux_depth_assets.defs.assets.gallery import catalog_gallery
from flux_depth_assets.defs.resources import CatalogsResource, StorageResource
from flux_depth_assets.gallery import build_gallery
from flux_depth_assets.storage.store import Storage
from tests.catalogs import shop_catalog
from tests.fakes import CountingProviderResource

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _materialize(tmp_path: Path) -> Path:
    cfg = shop_catalog(tmp_path, 3)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("catalog", ["shop"])
    home = tmp_path / "home"
    result = dg.materialize(
        [source_images, depth_maps, *DERIVED_ASSETS, catalog_gallery],
        partition_key="shop",
        instance=instance,
        resources={
            "storage": StorageResource(root=str(home)),
            "catalogs": CatalogsResource(config_dir=str(cfg)),
            "depth_provider": CountingProviderResource(),
        },
    )
    assert result.success
    [ev] = [
        e
        for e in result.get_asset_materialization_events()
        if e.asset_key == dg.AssetKey("catalog_gallery")
    ]
    assert str(ev.materialization.metadata["gallery"].value).startswith("file://")
    return home


def _open(page, url: str) -> list[str]:
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    page.wait_for_selector("#rows tr")
    # lazy images: every one in the viewport must be loaded (the rest load as they scroll in)
    page.wait_for_function("""() => [...document.querySelectorAll('#rows img')]
        .filter(i => i.getBoundingClientRect().top < innerHeight)
        .every(i => i.complete && i.naturalWidth > 0)""")
    return errors


def test_gallery_opens_with_every_thumbnail(tmp_path: Path, page) -> None:
    home = _materialize(tmp_path)
    errors = _open(page, (home / "galleries/shop/index.html").as_uri())
    imgs = page.locator("#rows img")
    assert imgs.count() == 3 * 4
    assert errors == []
    page.locator("#rows img").first.click()  # the parallax viewer opens and its layers load
    page.wait_for_function("""() => { const s = [...document.querySelectorAll('#stage img')];
        return s.length > 0 && s.every(i => i.complete && i.naturalWidth > 0); }""")
    page.mouse.move(100, 100)
    assert errors == []


def test_a_2000_image_catalog_opens_quickly(tmp_path: Path, page) -> None:
    home = _materialize(tmp_path)
    store = Storage(str(home))
    for asset in ("source_images", "depth_maps", "normal_maps", "parallax_sprites"):
        path = home / f"tables/{asset}/catalog=shop/part-0.parquet"
        t = pq.read_table(path).to_pylist()
        rows = [r for r in t if r.get("image_id")]
        big = [{**rows[i % len(rows)], "image_id": f"{i:016x}"} for i in range(2000)]
        pq.write_table(
            pq.read_table(path)
            .schema.empty_table()
            .from_pylist(big, schema=pq.read_table(path).schema),
            path,
        )
    result = build_gallery(store, "shop")
    assert result.images == 2000 and result.pages == 20
    t0 = time.perf_counter()
    errors = _open(page, (home / "galleries/shop/index.html").as_uri())
    first_page = time.perf_counter() - t0
    assert page.locator("#rows tr").count() == 100
    assert errors == []
    print(f"2,000-image gallery: first page with every thumbnail in {first_page:.2f} s")
    page.locator("nav button[data-page='20']").click()
    page.wait_for_selector("#img-00000000000007cf")

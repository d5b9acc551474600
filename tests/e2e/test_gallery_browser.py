"""The catalog gallery in headless Chromium, opened from file:// (no server, no network): every
thumbnail of the page loads, no console error; the demo catalog (real photos, the embedded
provider), a catalog with a rejected file, and a generated 2,000-image catalog."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow.parquet as pq
import pytest

from flux_depth_assets.defs.assets.catalog import source_images
from flux_depth_assets.defs.assets.depth import depth_maps
from flux_depth_assets.defs.assets.derived import DERIVED_ASSETS
from flux_depth_assets.defs.assets.gallery import catalog_gallery
from flux_depth_assets.defs.resources import (
    CatalogsResource,
    ComputeResource,
    DepthProviderResource,
    StorageResource,
)
from flux_depth_assets.gallery import build_gallery
from flux_depth_assets.storage.store import Storage
from tests import images
from tests.catalogs import shop_catalog
from tests.fakes import CountingProviderResource

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]

ALL_LOADED = """() => { const imgs = [...document.querySelectorAll('#rows img')];
    return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0); }"""


VISIBLE_LOADED = """() => [...document.querySelectorAll('#rows img')]
    .filter(i => i.getBoundingClientRect().top < innerHeight)
    .every(i => i.complete && i.naturalWidth > 0)"""


def _materialize(home: Path, cfg: Path, catalog: str, provider: Any) -> None:
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("catalog", [catalog])
    result = dg.materialize(
        [source_images, depth_maps, *DERIVED_ASSETS, catalog_gallery],
        partition_key=catalog,
        instance=instance,
        resources={
            "storage": StorageResource(root=str(home)),
            "catalogs": CatalogsResource(config_dir=str(cfg)),
            "depth_provider": provider,
            "compute": ComputeResource(),
        },
    )
    assert result.success
    [ev] = [
        e
        for e in result.get_asset_materialization_events()
        if e.asset_key == dg.AssetKey("catalog_gallery")
    ]
    link = str(ev.materialization.metadata["gallery"].value)
    assert link == (home / f"galleries/{catalog}/index.html").resolve().as_uri()


def _open(page: Any, url: str, rows: int) -> list[str]:
    """Open the page tall enough that the whole first page is in view (lazy images load only
    in view), wait for every thumbnail; the console errors seen."""
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.set_viewport_size({"width": 1400, "height": 400 + 140 * rows})
    page.goto(url)
    page.wait_for_function(f"() => document.querySelectorAll('#rows tr').length === {rows}")
    page.wait_for_function(ALL_LOADED)
    return errors


def test_demo_catalog_gallery_with_every_thumbnail_and_the_viewer(
    tmp_path: Path, page: Any
) -> None:
    home = tmp_path / "home"
    _materialize(home, REPO / "dbt_like_configs", "demo", DepthProviderResource())
    demo = [p for p in (REPO / "examples" / "demo_catalog").iterdir() if p.suffix != ".md"]
    errors = _open(page, (home / "galleries/demo/index.html").as_uri(), rows=len(demo))
    assert page.locator("#rows img").count() == 4 * len(demo)  # source, depth, normals, preview
    assert "local" in page.locator("#rows").inner_text()  # provider/model column
    page.locator("#rows img").first.click()  # the parallax viewer: its layers load and move
    page.wait_for_function("""() => { const s = [...document.querySelectorAll('#stage img')];
        return s.length > 1 && s.every(i => i.complete && i.naturalWidth > 0); }""")
    page.mouse.move(50, 50)
    page.mouse.move(1300, 700)
    moved = page.evaluate(
        "[...document.querySelectorAll('#stage img')].map(i => i.style.transform)"
    )
    assert any(t and t != "translate(0px, 0px)" for t in moved)
    assert errors == []


def test_rejected_files_are_listed_with_their_reason(tmp_path: Path, page: Any) -> None:
    home = tmp_path / "home"
    files = {"a.jpg": images.jpeg(seed=1), "b.jpg": images.jpeg(seed=2), "bad.jpg": b"not an image"}
    _materialize(home, shop_catalog(tmp_path, files), "shop", CountingProviderResource())
    errors = _open(page, (home / "galleries/shop/index.html").as_uri(), rows=2)
    rejected = page.locator("#rejected li").all_inner_texts()
    assert len(rejected) == 1 and "bad.jpg" in rejected[0] and "rejected" in rejected[0]
    assert errors == []


def test_a_2000_image_catalog_first_page_loads_quickly(tmp_path: Path, page: Any) -> None:
    home = tmp_path / "home"
    _materialize(home, shop_catalog(tmp_path, 3), "shop", CountingProviderResource())
    for asset in ("source_images", "depth_maps", "normal_maps", "parallax_sprites"):
        path = home / f"tables/{asset}/catalog=shop/part-0.parquet"
        table = pq.read_table(path)
        rows = [r for r in table.to_pylist() if r.get("image_id")]
        big = [{**rows[i % len(rows)], "image_id": f"{i:016x}"} for i in range(2000)]
        pq.write_table(table.from_pylist(big, schema=table.schema), path)
    shutil.rmtree(home / "galleries")
    result = build_gallery(Storage(str(home)), "shop")
    assert (result.images, result.pages) == (2000, 20)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    t0 = time.perf_counter()
    page.goto((home / "galleries/shop/index.html").as_uri())  # a 1400×900 window
    page.wait_for_function("() => document.querySelectorAll('#rows tr').length === 100")
    page.wait_for_function(VISIBLE_LOADED)
    first_screen = time.perf_counter() - t0
    errors += _open(page, (home / "galleries/shop/index.html").as_uri(), rows=100)
    whole_page = time.perf_counter() - t0 - first_screen
    print(
        f"2,000-image gallery: first screen {first_screen:.2f} s; "
        f"whole first page (100 rows, 400 thumbnails) {whole_page:.2f} s"
    )
    assert errors == []
    page.locator("nav button[data-page='20']").click()
    page.wait_for_selector("#img-00000000000007cf")
    page.wait_for_function(ALL_LOADED)
    assert page.locator("#rows tr").count() == 100

"""normal_maps, parallax_sprites, depth_stats through Dagster (ephemeral instance, tmp storage)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from flux_depth_assets.config.models import SpriteSettings
from flux_depth_assets.defs.assets.catalog import source_images
from flux_depth_assets.defs.assets.depth import depth_maps
from flux_depth_assets.defs.assets.derived import (
    DERIVED_ASSETS,
    DERIVED_CHECKS,
    NORMALS_ASSET,
    SPRITES_ASSET,
    STATS_ASSET,
    check_complete,
    check_recomposition,
    check_unit_normals,
)
from flux_depth_assets.defs.constants import CATALOG_PARTITION_NAME
from flux_depth_assets.defs.resources import CatalogsResource, ComputeResource, StorageResource
from flux_depth_assets.depth.normals import decode_normals_png
from flux_depth_assets.depth.sprites import psnr, recompose
from flux_depth_assets.storage.schemas import DEPTH_STATS
from flux_depth_assets.storage.store import Storage
from tests.catalogs import shop_catalog
from tests.catalogs import write_shop_config as write_config
from tests.fakes import CALLS, CountingProvider, CountingProviderResource

DERIVED = (NORMALS_ASSET, SPRITES_ASSET, STATS_ASSET)


@pytest.fixture(autouse=True)
def _calls():
    CALLS.clear()


class FlippedProvider(CountingProvider):
    """Like the counting provider, with its depth upside down: other depth content."""

    def predict_many(self, items, progress=None):
        preds = super().predict_many(items, progress)
        for p in preds:
            if p.depth is not None:
                p.depth = p.depth[::-1].copy()
        return preds


class FlippedProviderResource(CountingProviderResource):
    def for_catalog(self, catalog, purpose: str = "depth"):
        return FlippedProvider(variant="flipped")


def make_catalog(tmp_path: Path, n: int = 3, models: str = "") -> Path:
    return shop_catalog(tmp_path, n, models)


def run(
    tmp_path: Path,
    cfg: Path,
    instance: dg.DagsterInstance | None = None,
    provider: CountingProviderResource | None = None,
) -> tuple[dg.ExecuteInProcessResult, dg.DagsterInstance]:
    """`materialize()` the spine, the derived assets and their checks for partition `shop`."""
    instance = instance or dg.DagsterInstance.ephemeral()
    if not instance.has_dynamic_partition(CATALOG_PARTITION_NAME, "shop"):
        instance.add_dynamic_partitions(CATALOG_PARTITION_NAME, ["shop"])
    result = dg.materialize(
        [source_images, depth_maps, *DERIVED_ASSETS, *DERIVED_CHECKS],
        partition_key="shop",
        instance=instance,
        raise_on_error=False,
        resources={
            "storage": StorageResource(root=str(tmp_path / "home")),
            "catalogs": CatalogsResource(config_dir=str(cfg)),
            "depth_provider": provider or CountingProviderResource(),
            "compute": ComputeResource(),
        },
    )
    return result, instance


def meta(result: dg.ExecuteInProcessResult, asset: str) -> dict:
    [ev] = [
        e
        for e in result.get_asset_materialization_events()
        if e.materialization.asset_key.to_user_string() == asset
    ]
    return {k: v.value for k, v in ev.materialization.metadata.items()}


def checks(result: dg.ExecuteInProcessResult) -> dict[tuple[str, str], dg.AssetCheckEvaluation]:
    return {
        (e.asset_check_key.asset_key.to_user_string(), e.asset_check_key.name): e
        for e in result.get_asset_check_evaluations()
    }


def table(tmp_path: Path, asset: str) -> list[dict]:
    return pq.read_table(
        tmp_path / "home" / f"tables/{asset}/catalog=shop/part-0.parquet"
    ).to_pylist()


def store(tmp_path: Path) -> Storage:
    return Storage(str(tmp_path / "home"))


# ------------------------------------------------------------------- first run


def test_every_image_gets_normals_sprites_and_stats_and_every_check_passes(tmp_path):
    cfg = make_catalog(tmp_path)
    result, _ = run(tmp_path, cfg)
    assert result.success
    home = tmp_path / "home"
    ids = {r["image_id"] for r in table(tmp_path, "source_images")}
    assert len(ids) == 3

    normals = table(tmp_path, NORMALS_ASSET)
    assert {r["image_id"] for r in normals} == ids
    for r in normals:
        assert r["status"] == "succeeded" and r["convention"] == "opengl" and r["bit_depth"] == 8
        assert r["normal_path"] == f"catalogs/shop/normal_maps/{r['image_id']}.png"
        data = (home / r["normal_path"]).read_bytes()
        with Image.open(io.BytesIO(data)) as im:
            assert im.mode == "RGB" and im.size == (96, 64)
        n = decode_normals_png(data)
        assert np.abs(np.linalg.norm(n, axis=-1) - 1).max() <= 0.02 and (n[..., 2] > 0).all()

    src = {r["image_id"]: r for r in table(tmp_path, "source_images")}
    depth = {r["image_id"]: r for r in table(tmp_path, "depth_maps")}
    for r in table(tmp_path, SPRITES_ASSET):
        folder = home / "catalogs/shop/parallax_sprites" / r["image_id"]
        assert (
            r["status"] == "succeeded"
            and r["sprite_dir"] == f"catalogs/shop/parallax_sprites/{r['image_id']}"
        )
        assert sorted(p.name for p in folder.iterdir()) == sorted(
            [f"layer_{k}.png" for k in range(5)] + ["manifest.json", "preview.webp"]
        )
        manifest = json.loads((folder / "manifest.json").read_text())
        assert (
            manifest["depth"]["sha256"]
            == depth[r["image_id"]]["output_sha256"]
            == r["depth_sha256"]
        )
        assert manifest["image"] == {"id": r["image_id"], "width": 96, "height": 64}
        back = recompose(manifest, lambda name, folder=folder: (folder / name).read_bytes())
        with Image.open(home / src[r["image_id"]]["normalized_path"]) as im:
            assert psnr(back, np.asarray(im.convert("RGB"))) >= 35
        with Image.open(folder / "preview.webp") as im:
            defaults = SpriteSettings()
            assert im.n_frames == defaults.preview_frames
            assert max(im.size) <= defaults.preview_max_side

    stats = table(tmp_path, STATS_ASSET)
    assert {r["image_id"] for r in stats} == ids
    for r in stats:
        assert r["valid_fraction"] == 1.0
        assert 0 <= r["p1"] <= r["p50"] <= r["p99"] <= 1 and r["edge_density"] >= 0
        assert r["mean_tilt_deg"] > 0

    for asset in DERIVED:
        m = meta(result, asset)
        assert (m["images"], m["new"], m["cached"], m["failed"]) == (3, 3, 0, 0)
        assert m["seconds"] >= 0 and m["dagster/row_count"] == 3
        assert m["table"].endswith(f"tables/{asset}/catalog=shop/part-0.parquet")
    assert meta(result, NORMALS_ASSET)["preview_path"].endswith(".png")
    assert meta(result, SPRITES_ASSET)["preview_path"].endswith("preview.webp")

    evals = checks(result)
    assert set(evals) - {
        (a, "failure_ratio") for a in ("source_images", "depth_maps", *DERIVED)
    } == {
        (NORMALS_ASSET, "unit_normals"),
        (SPRITES_ASSET, "recomposition_psnr"),
        (SPRITES_ASSET, "no_unfilled_pixels"),
        *((a, "outputs_complete") for a in DERIVED),
    }
    assert all(e.passed for e in evals.values()), {k: e.description for k, e in evals.items()}


# ------------------------------------------------------------------- cache


def test_rerun_recomputes_nothing_and_changed_settings_redo_only_their_asset(tmp_path):
    cfg = make_catalog(tmp_path, n=2)
    first, instance = run(tmp_path, cfg)
    assert first.success
    home = tmp_path / "home"
    normal_files = {
        r["image_id"]: (home / r["normal_path"]).stat().st_mtime_ns
        for r in table(tmp_path, NORMALS_ASSET)
    }

    second, _ = run(tmp_path, cfg, instance)
    assert second.success
    for asset in DERIVED:
        m = meta(second, asset)
        assert (m["new"], m["cached"]) == (0, 2), asset
        assert all(r["status"] == "cached" for r in table(tmp_path, asset))
    assert {
        r["image_id"]: (home / r["normal_path"]).stat().st_mtime_ns
        for r in table(tmp_path, NORMALS_ASSET)
    } == normal_files

    # a new normal-map strength: normals and stats (their tilt) are redone, sprites are not
    write_config(
        tmp_path, "    models: {normal_maps: {strength: 3.0, convention: directx, bit_depth: 16}}\n"
    )
    third, _ = run(tmp_path, cfg, instance)
    assert third.success
    assert meta(third, NORMALS_ASSET)["new"] == 2 and meta(third, STATS_ASSET)["new"] == 2
    assert meta(third, SPRITES_ASSET)["cached"] == 2
    for r in table(tmp_path, NORMALS_ASSET):
        assert (r["strength"], r["convention"], r["bit_depth"]) == (3.0, "directx", 16)
        assert (home / r["normal_path"]).read_bytes()[24] == 16  # IHDR bit depth
    assert all(e.passed for e in checks(third).values())


def test_a_changed_depth_map_redoes_the_derived_outputs(tmp_path):
    cfg = make_catalog(tmp_path, n=2)
    _first, instance = run(tmp_path, cfg)
    before = {r["image_id"]: r["depth_sha256"] for r in table(tmp_path, SPRITES_ASSET)}
    # the same depth content from another provider variant: nothing to redo
    same, _ = run(tmp_path, cfg, instance, provider=CountingProviderResource(variant="b"))
    assert same.success and all(meta(same, a)["cached"] == 2 for a in DERIVED)
    # other depth content → new depth sha256 → everything derived is redone
    second, _ = run(tmp_path, cfg, instance, provider=FlippedProviderResource())
    assert second.success
    assert all(meta(second, a)["new"] == 2 for a in DERIVED)
    after = {r["image_id"]: r["depth_sha256"] for r in table(tmp_path, SPRITES_ASSET)}
    depth = {r["image_id"]: r["output_sha256"] for r in table(tmp_path, "depth_maps")}
    assert after == depth and set(after.values()).isdisjoint(before.values())
    assert all(e.passed for e in checks(second).values())


def test_sprite_settings_change_replaces_the_folder_contents(tmp_path):
    cfg = make_catalog(tmp_path, n=1)
    _first, instance = run(tmp_path, cfg)
    write_config(
        tmp_path,
        "    models: {parallax_sprites: {layers: 3, preview_format: gif, preview_frames: 24}}\n",
    )
    second, _ = run(tmp_path, cfg, instance)
    assert second.success and meta(second, SPRITES_ASSET)["new"] == 1
    [row] = table(tmp_path, SPRITES_ASSET)
    folder = tmp_path / "home" / row["sprite_dir"]
    assert sorted(p.name for p in folder.iterdir()) == [
        "layer_0.png",
        "layer_1.png",
        "layer_2.png",
        "manifest.json",
        "preview.gif",
    ]
    with Image.open(folder / "preview.gif") as im:
        assert im.format == "GIF" and im.n_frames == 24


# ------------------------------------------------------------------- gaps and checks


def test_an_image_without_depth_is_skipped_and_flagged_as_a_warning(tmp_path):
    cfg = make_catalog(tmp_path, n=3)
    # find the id of p0 first, then make the provider fail it
    _first, instance = run(tmp_path, cfg)
    bad = next(
        r["image_id"]
        for r in table(tmp_path, "source_images")
        if r["source_uri"].endswith("p0.jpg")
    )
    (tmp_path / "home" / "cache").rename(tmp_path / "home" / "cache-old")  # force new calls
    for r in table(tmp_path, "depth_maps"):
        (tmp_path / "home" / r["depth_path"]).unlink()
    second, _ = run(tmp_path, cfg, instance, provider=CountingProviderResource(fail_ids=[bad]))
    assert second.success  # one image in three is under max_failure_ratio
    for asset in DERIVED:
        rows = {r["image_id"]: r for r in table(tmp_path, asset)}
        assert rows[bad]["status"] == "skipped_no_depth" and "failed" in rows[bad]["error"]
        assert meta(second, asset)["skipped_no_depth"] == 1
        e = checks(second)[(asset, "outputs_complete")]
        assert not e.passed and e.severity == dg.AssetCheckSeverity.WARN
        assert e.metadata["no_depth_map"].value == 1 and e.metadata["missing"].value == 0
    assert checks(second)[(NORMALS_ASSET, "unit_normals")].passed


def test_checks_catch_missing_stale_and_broken_outputs(tmp_path):
    cfg = make_catalog(tmp_path, n=2)
    result, _ = run(tmp_path, cfg)
    assert result.success
    st = store(tmp_path)
    normals = table(tmp_path, NORMALS_ASSET)
    sprites = table(tmp_path, SPRITES_ASSET)
    for check in (
        lambda: check_unit_normals(st, "shop"),
        lambda: check_recomposition(st, "shop"),
        *(lambda a=a: check_complete(st, a, "shop") for a in DERIVED),
    ):
        assert check().passed

    # a normal map that is not unit length (mid-grey decodes to ~0 vectors)
    grey = io.BytesIO()
    Image.new("RGB", (96, 64), (128, 128, 128)).save(grey, format="PNG")
    st.write_bytes(normals[0]["normal_path"], grey.getvalue())
    res = check_unit_normals(st, "shop")
    assert not res.passed and normals[0]["image_id"] in res.description

    # a sprite layer lost: the nearest layer replaced by a transparent one of the same size
    folder = sprites[0]["sprite_dir"]
    manifest = json.loads(st.read_bytes(sprites[0]["manifest_path"]))
    near = next(layer for layer in reversed(manifest["layers"]) if not layer["empty"])
    b = near["bbox"]
    empty = io.BytesIO()
    Image.new("RGBA", (b["width"], b["height"]), (0, 0, 0, 0)).save(empty, format="PNG")
    st.write_bytes(f"{folder}/{near['file']}", empty.getvalue())
    res = check_recomposition(st, "shop")
    assert not res.passed and "PSNR" in res.description

    # an output deleted, and a table row left pointing at an older depth map
    st.delete(normals[1]["normal_path"])
    res = check_complete(st, NORMALS_ASSET, "shop")
    assert (
        not res.passed
        and res.severity == dg.AssetCheckSeverity.ERROR
        and res.metadata["missing"].value == 1
    )
    rows = table(tmp_path, STATS_ASSET)
    rows[0]["depth_sha256"] = "0" * 64
    st.write_partition(STATS_ASSET, "shop", pa.Table.from_pylist(rows, schema=DEPTH_STATS))
    res = check_complete(st, STATS_ASSET, "shop")
    assert not res.passed and "older depth map" in res.description


def test_derived_assets_fail_clearly_without_depth_maps(tmp_path):
    cfg = make_catalog(tmp_path, n=1)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(CATALOG_PARTITION_NAME, ["shop"])
    resources = {
        "storage": StorageResource(root=str(tmp_path / "home")),
        "catalogs": CatalogsResource(config_dir=str(cfg)),
        "compute": ComputeResource(),
    }
    scanned = dg.materialize(
        [source_images], partition_key="shop", instance=instance, resources=resources
    )
    assert scanned.success
    result = dg.materialize(
        [*DERIVED_ASSETS],
        selection=[NORMALS_ASSET],
        partition_key="shop",
        instance=instance,
        raise_on_error=False,
        resources=resources,
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "materialize depth_maps first" in failure.step_failure_data.user_failure_data.description


def test_definitions_include_the_derived_assets_and_checks():
    from flux_depth_assets.defs.build import build_definitions

    defs = build_definitions()
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert set(DERIVED) <= keys
    check_keys = {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys}
    assert (NORMALS_ASSET, "unit_normals") in check_keys and (
        SPRITES_ASSET,
        "recomposition_psnr",
    ) in check_keys
    job = defs.resolve_job_def("catalog_job")
    assert set(DERIVED) <= {k.to_user_string() for k in job.asset_layer.selected_asset_keys}

"""Every output check can fail: good outputs pass, and each broken fixture fails its check.

One real run of three demo photos (local estimator) makes the outputs; each test then replaces
files with a broken version (flat, constant, noise, inverted, vertical ramp, all-invalid, wrong
size, non-unit normals, noisy normals, layers that don't recompose, a missing file) and runs the
check that must catch it, asserting it fails with a readable line.
"""

from __future__ import annotations

import io
from pathlib import Path

import dagster as dg
import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from flux_depth_assets.defs.assets.derived import (
    check_complete,
    check_recomposition,
    check_unit_normals,
)
from flux_depth_assets.depth.encoding import encode_png16, quantize
from flux_depth_assets.depth.normals import encode_normals_png, normals_from_depth
from flux_depth_assets.pipeline import output_checks as oc
from flux_depth_assets.pipeline.parallel import PoolConfig
from flux_depth_assets.storage.store import Storage


@pytest.fixture
def store(shop_store) -> Storage:
    """A copy of one finished run over 3 demo photos (conftest `shop_run`)."""
    return shop_store


def rows(store: Storage, asset: str) -> list[dict]:
    return pq.read_table(Path(store.full(Storage.table_rel(asset, "shop")))).to_pylist()


def replace_depth(store: Storage, make) -> None:
    """Overwrite every depth map with `make(good nearness) -> new nearness` (NaN = invalid)."""
    from flux_depth_assets.depth.encoding import decode_png16

    for r in rows(store, "depth_maps"):
        good = decode_png16(store.read_bytes(r["depth_path"]))
        q, _, _ = quantize(make(good))
        store.write_bytes(r["depth_path"], encode_png16(q))


def _noise(d):
    return np.random.default_rng(1).random(d.shape).astype(np.float32)


def _ramp(d):
    return np.repeat(np.linspace(0, 1, d.shape[0], dtype=np.float32)[:, None], d.shape[1], 1)


DEPTH_FIXTURES = {  # name → (transform, the check that must fail, words in its description)
    # a flat map: min-max quantization stores any constant as one value (a tiny linear range
    # would be stretched back to the full range, which is why the checks measure structure)
    "constant": (lambda d: np.full(d.shape, 0.5, np.float32), oc.depth_readable, "flat"),
    "all-invalid": (
        lambda d: np.full(d.shape, np.nan, np.float32),
        oc.depth_readable,
        "no valid pixel",
    ),
    "wrong size": (
        lambda d: d[: d.shape[0] // 2, : d.shape[1] // 2],
        oc.depth_readable,
        "its source is",
    ),
    "noise": (_noise, oc.edges_agree, "edge lift"),
    "vertical prior only": (_ramp, oc.not_vertical_prior, "share of variance explained by rows"),
    "inverted": (lambda d: 1.0 - d, oc.near_at_bottom, "inverted"),
}


def test_good_depth_maps_pass_every_measure(store):
    sample = oc.measure_depth_maps(store, "shop")
    for check in (oc.depth_readable, oc.edges_agree, oc.not_vertical_prior, oc.near_at_bottom):
        outcome = check(sample)
        assert outcome.passed, outcome.description


@pytest.mark.parametrize("name", list(DEPTH_FIXTURES))
def test_each_broken_depth_fixture_fails_its_check(store, name):
    make, check, words = DEPTH_FIXTURES[name]
    replace_depth(store, make)
    outcome = check(oc.measure_depth_maps(store, "shop"))
    assert not outcome.passed and words in outcome.description, outcome.description


def test_noisy_normals_fail_normals_smooth(store):
    table = rows(store, "normal_maps")
    assert oc.normals_smooth(store, "shop", table).passed
    for r in table:
        h, w = np.asarray(Image.open(io.BytesIO(store.read_bytes(r["normal_path"])))).shape[:2]
        noise = np.random.default_rng(2).random((h, w)).astype(np.float32)
        store.write_bytes(r["normal_path"], encode_normals_png(normals_from_depth(noise)))
    outcome = oc.normals_smooth(store, "shop", table)
    assert not outcome.passed and "roughness" in outcome.description


#: real worker processes even for the 3-image sample
ON_POOL = PoolConfig(workers=2, min_tasks=1)


def test_the_map_measures_on_the_pool_match_this_process_and_a_broken_file_is_a_finding(store):
    import shutil as sh

    table = rows(store, "normal_maps")
    here = oc.measure_depth_maps(store, "shop", PoolConfig(workers=1))
    smooth_here = oc.normals_smooth(store, "shop", table, PoolConfig(workers=1))
    sh.rmtree(store.full("cache/measures"))  # measured afresh, by the workers
    pooled = oc.measure_depth_maps(store, "shop", ON_POOL)
    assert (pooled.edge_lift, pooled.vertical_share, pooled.bottom_minus_top) == (
        here.edge_lift,
        here.vertical_share,
        here.bottom_minus_top,
    )
    assert oc.normals_smooth(store, "shop", table, ON_POOL) == smooth_here
    assert smooth_here.passed and here.edge_lift

    broken = min(rows(store, "depth_maps"), key=lambda r: r["image_id"])
    store.write_bytes(broken["depth_path"], b"not a png")  # a torn write, say
    sh.rmtree(store.full("cache/measures"))
    sample = oc.measure_depth_maps(store, "shop", ON_POOL)
    assert len(sample.problems) == 1 and "unreadable" in sample.problems[0]
    assert broken["image_id"] in sample.problems[0] and broken["image_id"] not in here.problems
    outcome = oc.depth_readable(sample)
    assert not outcome.passed and broken["image_id"] in outcome.description
    # not remembered: an unreadable finding is never kept (see output_checks._readable)
    assert b"unreadable" not in store.read_bytes("cache/measures/shop/depth_maps.json")
    nrm = table[0]
    store.write_bytes(nrm["normal_path"], b"\x89PNG torn")
    outcome = oc.normals_smooth(store, "shop", table, ON_POOL)
    assert not outcome.passed and f"{nrm['image_id']}: unreadable" in outcome.description


def test_non_unit_normals_fail_unit_normals(store):
    assert check_unit_normals(store, "shop").passed
    for r in rows(store, "normal_maps"):
        im = Image.open(io.BytesIO(store.read_bytes(r["normal_path"])))
        buf = io.BytesIO()
        Image.new("RGB", im.size, (255, 255, 255)).save(buf, "PNG")  # n = (1, 1, 1): |n| = 1.73
        store.write_bytes(r["normal_path"], buf.getvalue())
    result = check_unit_normals(store, "shop")
    assert not result.passed and "|n| - 1" in result.description


def test_layers_that_do_not_recompose_fail_recomposition(store):
    assert check_recomposition(store, "shop").passed
    for r in rows(store, "parallax_sprites"):
        rel = f"{r['sprite_dir']}/layer_0.png"
        size = Image.open(io.BytesIO(store.read_bytes(rel))).size
        buf = io.BytesIO()
        Image.new("RGBA", size, (0, 0, 0, 255)).save(buf, "PNG")  # the background gone black
        store.write_bytes(rel, buf.getvalue())
    result = check_recomposition(store, "shop")
    assert not result.passed and "PSNR" in result.description


@pytest.mark.parametrize(
    "asset, column",
    [("normal_maps", "normal_path"), ("parallax_sprites", "manifest_path"), ("depth_stats", None)],
)
def test_a_missing_output_fails_outputs_complete_as_an_error(store, asset, column):
    assert check_complete(store, asset, "shop").passed
    table = rows(store, asset)
    if column:
        store.delete(table[0][column])
    else:  # depth_stats has no file: a row missing from the table is the gap
        import pyarrow as pa

        store.write_partition(asset, "shop", pa.Table.from_pylist(table[1:]))
    result = check_complete(store, asset, "shop")
    assert not result.passed and result.severity == dg.AssetCheckSeverity.ERROR
    assert table[0]["image_id"] in result.description


def test_unchanged_maps_are_not_decoded_again_and_changed_ones_are(store, monkeypatch):
    first = oc.measure_depth_maps(store, "shop")  # the run already filled the memo
    assert first.edge_lift and store.exists("cache/measures/shop/depth_maps.json")

    def must_not_decode(*_a, **_k):
        raise AssertionError("an unchanged depth map was decoded again")

    with monkeypatch.context() as m:  # in this process, where the patch is seen
        m.setattr(oc, "_measure_depth", must_not_decode)
        again = oc.measure_depth_maps(store, "shop", PoolConfig(workers=1))
    assert again.edge_lift == first.edge_lift and not again.problems
    replace_depth(store, lambda d: 1.0 - d)  # new bytes: measured afresh, and caught
    assert not oc.near_at_bottom(oc.measure_depth_maps(store, "shop")).passed


def test_a_memo_that_cannot_be_written_or_read_costs_only_time(store, monkeypatch):
    from flux_depth_assets.pipeline.memo import Memo

    store.write_bytes("cache/measures/shop/depth_maps.json", b"{torn")
    memo = Memo(store, "shop", "depth_maps")  # a torn file is an empty memo
    assert memo.remember("k", lambda: 1.5) == 1.5

    def read_only(*_a, **_k):
        raise PermissionError(30, "Read-only file system")

    monkeypatch.setattr(store, "write_bytes", read_only)
    memo.save()  # no exception: the figures stand, the next run measures again
    assert oc.measure_depth_maps(store, "shop").edge_lift


def test_the_contact_sheet_is_drawn_again_only_when_a_file_it_shows_changed(store, monkeypatch):
    from flux_depth_assets.pipeline import contact_sheet as cs

    first = cs.contact_sheet_jpeg(store, "shop")
    assert first is not None and first[:2] == b"\xff\xd8"

    def must_not_draw(*_a, **_k):
        raise AssertionError("drawn again although nothing it shows changed")

    with monkeypatch.context() as m:
        m.setattr(cs, "_draw", must_not_draw)
        assert cs.contact_sheet_jpeg(store, "shop") == first
    shown = min(rows(store, "normal_maps"), key=lambda r: r["image_id"])
    flat = np.zeros((8, 8, 3), np.float32)
    flat[..., 2] = 1.0
    store.write_bytes(shown["normal_path"], encode_normals_png(flat))
    assert cs.contact_sheet_jpeg(store, "shop") != first


def test_sprite_checks_decode_each_layer_once_and_the_pool_gives_the_same_figures(
    store, monkeypatch
):
    import shutil as sh

    from flux_depth_assets.defs.assets.derived.checks import check_parallax_holes
    from flux_depth_assets.pipeline import derived_checks as dc
    from flux_depth_assets.pipeline.parallel import PoolConfig

    sh.rmtree(store.full("cache/measures"))  # forget what the run measured
    calls = []
    real = dc.decode_rgba
    monkeypatch.setattr(dc, "decode_rgba", lambda data: calls.append(1) or real(data))
    assert check_recomposition(store, "shop", PoolConfig(workers=1)).passed
    assert check_parallax_holes(store, "shop", PoolConfig(workers=1)).passed
    layers = sum(r["nonempty_layers"] for r in rows(store, "parallax_sprites"))
    assert len(calls) == layers  # once per layer for both checks, not once per check

    in_process = dc.sampled_figures(
        store,
        "fresh",
        [
            dc.FigureTask(store, "parallax_sprites", r, None)
            for r in rows(store, "parallax_sprites")
        ],
        PoolConfig(workers=1),
    )
    on_pool = dc.sampled_figures(
        store,
        "other",
        [
            dc.FigureTask(store, "parallax_sprites", r, None)
            for r in rows(store, "parallax_sprites")
        ],
        PoolConfig(workers=2, min_tasks=1),
    )
    assert on_pool == in_process and all("unfilled" in f for f in on_pool)

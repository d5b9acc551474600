"""The embedded estimator: output contract, the cues it claims, speed, and its measured quality."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from flux_depth_assets.config.models import LocalProviderConfig
from flux_depth_assets.depth import quality
from flux_depth_assets.depth.local_estimator import (
    DEFAULT_PARAMS,
    estimate_depth,
    geodesic_from_top,
    guided_upsample,
)
from flux_depth_assets.providers.local import ESTIMATOR_VERSION, LocalProvider


def noise_image(w: int, h: int, seed: int = 0, mode: str = "RGB") -> Image.Image:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    return Image.fromarray(arr).convert(mode)


def product_shot(w: int = 240, h: int = 180) -> tuple[Image.Image, np.ndarray]:
    """A plain light backdrop with a dark box in the middle; returns the image and the box mask."""
    arr = np.full((h, w, 3), 235, np.uint8)
    mask = np.zeros((h, w), bool)
    mask[h // 4 : 3 * h // 4, w // 3 : 2 * w // 3] = True
    arr[mask] = (40, 60, 160)
    return Image.fromarray(arr), mask


# --------------------------------------------------------------------------- output contract


@pytest.mark.parametrize("size", [(1, 1), (1, 7), (9, 1), (3, 2), (64, 48), (37, 501), (640, 360)])
def test_output_contract(size):
    w, h = size
    d = estimate_depth(noise_image(w, h))
    assert d.shape == (h, w) and d.dtype == np.float32
    assert np.isfinite(d).all() and d.min() >= 0.0 and d.max() <= 1.0


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK", "I;16"])
def test_any_pil_mode_is_accepted(mode):
    img = (
        noise_image(50, 40).convert("L").convert(mode)
        if mode == "I;16"
        else noise_image(50, 40, mode=mode)
    )
    d = estimate_depth(img)
    assert d.shape == (40, 50) and np.isfinite(d).all()


def test_deterministic():
    img = noise_image(300, 200, seed=3)
    a, b = estimate_depth(img), estimate_depth(img)
    assert np.array_equal(a, b)


def test_large_image_keeps_full_size_and_max_side_bounds_refinement():
    img = noise_image(1600, 900, seed=2)
    full = estimate_depth(img, max_side=2048)
    capped = estimate_depth(img, max_side=256)
    assert full.shape == capped.shape == (900, 1600)
    assert not np.array_equal(full, capped)  # the refinement resolution matters, the size does not
    assert np.corrcoef(full.ravel(), capped.ravel())[0, 1] > 0.95


def test_flat_image_is_the_ground_plane_prior():
    d = estimate_depth(Image.new("RGB", (80, 60), (120, 130, 140)))
    assert np.ptp(d, axis=1).max() < 1e-5  # constant along each row
    rows = d[:, 0]
    assert np.all(np.diff(rows) >= -1e-6) and rows[-1] > rows[0]  # lower = nearer
    # above the horizon the backdrop recedes slowly but is never clamped flat (no band, no seam)
    steps = np.diff(rows)
    assert np.all(steps > 0)
    horizon_rows = int(DEFAULT_PARAMS.horizon * 60)
    assert steps[: horizon_rows - 1].mean() < 0.5 * steps[horizon_rows + 5 :].mean()


# --------------------------------------------------------------------------- the cues


def test_product_on_plain_backdrop_is_nearer_than_backdrop_at_same_rows():
    img, mask = product_shot()
    d = estimate_depth(img)
    rows = slice(mask.argmax(0).max() + 5, 3 * img.height // 4 - 5)  # rows inside the box
    box = d[rows][mask[rows]]
    beside = d[rows][~mask[rows]]
    assert box.mean() > beside.mean() + 0.05
    # the vertical prior alone would give both the same nearness on the same rows
    v = quality.vertical_gradient_baseline(d.shape)
    assert abs(v[rows][mask[rows]].mean() - v[rows][~mask[rows]].mean()) < 0.01


def test_depth_is_flat_inside_regions_and_jumps_at_their_edges():
    img, mask = product_shot()
    d = estimate_depth(img)
    ys, xs = np.nonzero(mask)
    top, bottom, left = ys.min(), ys.max(), xs.min()
    col = (left + xs.max()) // 2
    inside_span = d[top + 6 : bottom - 5, col]
    jump = d[top + 6, col] - d[top - 6, col]  # across the box's top edge
    step_inside = np.abs(np.diff(inside_span)).max()
    assert jump > 5 * step_inside
    # the edge is where the colour edge is (full-resolution, edge-aware upsampling)
    grad = np.abs(np.diff(d[:, col]))
    assert abs(int(grad.argmax()) - (top - 1)) <= 3


def test_geodesic_distance_straight_down_and_around_a_wall():
    h, w = 9, 9
    step = 1.0
    free = geodesic_from_top(np.zeros((h, w), np.float32), step)
    np.testing.assert_allclose(free[:, 4], np.arange(h))  # straight down: one step per row
    cost = np.zeros((h, w), np.float32)
    cost[4, :] = 100.0
    cost[4, 0] = 0.0  # a gap at the left end of the wall
    d = geodesic_from_top(cost, step)
    # below the wall, the cheapest path goes around through the gap, never across the wall
    assert d[5, 8] < 100
    assert d[5, 0] == pytest.approx(5.0)
    assert d[5, 8] > d[5, 0] + 4  # had to walk sideways to reach it


def test_guided_upsample_snaps_to_full_resolution_edge():
    hi = np.zeros((64, 64), np.float32)
    hi[:, 37:] = 1.0  # edge at column 37 (not on the 4× grid)
    lo = np.asarray(Image.fromarray(hi, "F").resize((16, 16), Image.Resampling.BILINEAR))
    src = lo.copy()
    out = guided_upsample(src, lo, hi, radius=1, eps=1e-4)
    assert out[:, 30].mean() < 0.2 and out[:, 44].mean() > 0.8
    assert int(np.abs(np.diff(out[32])).argmax()) == 36


# --------------------------------------------------------------------------- provider and speed


def test_provider_identity_and_cache_params():
    p = LocalProvider(LocalProviderConfig())
    assert p.name == "local" and p.model_version == ESTIMATOR_VERSION
    params = p.cache_params()
    assert (
        params["version"] == ESTIMATOR_VERSION and params["estimator"] == DEFAULT_PARAMS.as_dict()
    )
    assert LocalProvider(LocalProviderConfig(max_side=512)).params_hash() != p.params_hash()


# Seconds per megapixel (target ≤ 0.5 s) are measured by `benchmarks/depth_quality.py --speed`,
# not asserted here: a wall-clock bound flakes on a busy machine.


# --------------------------------------------------------------------------- quality on ../shared


def _scenes(root):
    out = []
    for d in sorted((root / "gt").iterdir()):
        if (d / "disparity.npy").exists():
            out.append(
                (d.name, Image.open(d / "image.png").convert("RGB"), np.load(d / "disparity.npy"))
            )
    return out


def test_beats_both_baselines_on_gt_scenes(shared_data):
    scenes = _scenes(shared_data)
    if not scenes:
        pytest.skip("no GT scenes")
    local, vert, const = [], [], []
    for _name, img, gt in scenes:
        local.append(quality.score_disparity(estimate_depth(img), gt))
        vert.append(quality.score_disparity(quality.vertical_gradient_baseline(gt.shape), gt))
        const.append(quality.score_disparity(quality.constant_baseline(gt.shape), gt))
    mean = lambda xs, f: float(np.mean([getattr(x, f) for x in xs]))  # noqa: E731
    assert mean(local, "delta1") >= mean(vert, "delta1") + 0.04
    assert mean(local, "abs_rel") < mean(vert, "abs_rel") < mean(const, "abs_rel")
    for (name, _, _), lo, ve in zip(scenes, local, vert):
        assert lo.delta1 >= ve.delta1 - 0.02, name


def test_edge_weight_zero_reduces_to_vertical_prior(shared_data):
    """With edges weightless and no horizon, the method is exactly the vertical-gradient baseline."""
    scenes = _scenes(shared_data)[:1]
    if not scenes:
        pytest.skip("no GT scenes")
    _name, img, gt = scenes[0]
    plain = replace(DEFAULT_PARAMS, edge_weights=(0.0,), horizon=0.0)
    d = estimate_depth(img, params=plain)
    v = quality.vertical_gradient_baseline(gt.shape)
    assert np.corrcoef(d.ravel(), v.ravel())[0, 1] > 0.99

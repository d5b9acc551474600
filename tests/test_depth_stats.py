"""Depth statistics on maps whose answers are known by construction."""

from __future__ import annotations

import math

import numpy as np
import pytest

from flux_depth_assets.depth.normals import normals_from_depth
from flux_depth_assets.depth.stats import PERCENTILE_KEYS, depth_statistics, edge_mask


def test_percentiles_mean_and_valid_fraction_of_a_known_distribution():
    near = np.linspace(0, 1, 100 * 101, dtype=np.float32).reshape(100, 101)
    near[:10] = np.nan  # 10 % invalid
    row = depth_statistics(near)
    assert row["width"] == 101 and row["height"] == 100
    assert row["valid_fraction"] == pytest.approx(0.9)
    valid = near[np.isfinite(near)]
    for key, p in zip(PERCENTILE_KEYS, (1, 5, 25, 50, 75, 95, 99)):
        assert row[key] == pytest.approx(np.percentile(valid, p), abs=1e-6)
    assert row["p1"] < row["p5"] < row["p25"] < row["p50"] < row["p75"] < row["p95"] < row["p99"]
    assert row["nearness_mean"] == pytest.approx(valid.mean(), abs=1e-6)


def test_near_far_ratio_uses_the_providers_scale():
    # stored [0, 1] map of a provider range 0.5 … 2.0 (inverse metres: 2 m … 0.5 m away)
    near = np.linspace(0, 1, 10_000, dtype=np.float32).reshape(100, 100)
    row = depth_statistics(near, value_range=(0.5, 2.0))
    p1 = 0.5 + 1.5 * np.percentile(near, 1)
    p99 = 0.5 + 1.5 * np.percentile(near, 99)
    assert row["near_far_ratio"] == pytest.approx(p99 / p1, rel=1e-5)
    # without the provider's scale the stored values are used; where p1 is 0 there is no ratio
    assert depth_statistics(near)["near_far_ratio"] == pytest.approx(
        np.percentile(near, 99) / np.percentile(near, 1), rel=1e-5
    )
    near[:, :5] = 0.0
    assert depth_statistics(near)["near_far_ratio"] is None


def test_edge_density_counts_discontinuities_not_slopes():
    u = np.linspace(0, 1, 200, dtype=np.float32)[None, :].repeat(100, 0)
    ramp = depth_statistics(u)  # a steep but smooth slope: no edge
    assert ramp["edge_density"] == 0.0
    step = np.where(u < 0.5, 0.1, 0.9).astype(np.float32)
    row = depth_statistics(step)
    # one column of the 200 sits just before the step
    assert row["edge_density"] == pytest.approx(1 / 200)
    mask = edge_mask(step, 0.1)
    assert mask[:, 99].all() and mask.sum() == 100


def test_mean_tilt_of_a_plane_and_of_a_flat_map():
    u = ((np.arange(64) + 0.5) / 64)[None, :].repeat(32, 0).astype(np.float32)
    row = depth_statistics(0.5 * u, strength=2.0)  # slope 0.5 · 2 = 1 → 45°
    assert row["mean_tilt_deg"] == pytest.approx(45.0, abs=0.01)
    assert depth_statistics(np.full((8, 8), 0.3, np.float32))["mean_tilt_deg"] == pytest.approx(0.0)
    # precomputed normals are used as given
    n = normals_from_depth(0.5 * u, strength=1.0)
    assert depth_statistics(0.5 * u, n)["mean_tilt_deg"] == pytest.approx(
        math.degrees(math.atan(0.5)), abs=0.01
    )


def test_all_invalid_map_gives_nulls_not_errors():
    row = depth_statistics(np.full((4, 4), np.nan, np.float32))
    assert row["valid_fraction"] == 0.0
    assert all(
        row[k] is None
        for k in (*PERCENTILE_KEYS, "near_far_ratio", "edge_density", "mean_tilt_deg")
    )


def test_shape_checks():
    with pytest.raises(ValueError):
        depth_statistics(np.zeros((4,), np.float32))
    with pytest.raises(ValueError):
        depth_statistics(np.zeros((4, 4), np.float32), np.zeros((5, 4, 3), np.float32))


@pytest.mark.parametrize("column", [0, -1, 1, -2])
def test_an_invalid_pixel_beside_a_side_border_leaves_every_valid_pixel_a_normal(column):
    # a tilted plane with one invalid pixel on or next to a side column: the valid border pixel
    # beside it has a one-sided slope, so its normal and the mean tilt exist
    plane = np.tile(np.arange(40, dtype=np.float32) * 0.01, (30, 1))
    near = plane.copy()
    near[12, column] = np.nan
    normals = normals_from_depth(near)
    valid = np.isfinite(near)
    assert np.isfinite(normals[valid]).all()
    tilt = depth_statistics(near)["mean_tilt_deg"]
    assert tilt is not None and math.isfinite(tilt)
    assert tilt == pytest.approx(depth_statistics(plane)["mean_tilt_deg"], rel=0.02)


def test_percentiles_of_a_large_map_equal_numpys_exactly():
    # ≥ 2**16 values take the histogram path: ties, negatives, ±0, a flat third and a wide range
    from flux_depth_assets.depth.stats import percentiles

    rng = np.random.default_rng(7)
    maps = [
        rng.random(300_000, dtype=np.float32),
        np.concatenate([np.full(100_000, 0.25, np.float32), rng.random(200_000, dtype=np.float32)]),
        (rng.standard_normal(120_000) * 1e3).astype(np.float32),
        np.round(rng.random(90_000) * 20, 0).astype(np.float32) - np.float32(10.0),
        np.concatenate([np.zeros(40_000, np.float32), -np.zeros(40_000, np.float32)]),
    ]
    for v in maps:
        np.testing.assert_array_equal(
            percentiles(v, (1, 5, 25, 50, 75, 95, 99)), np.percentile(v, (1, 5, 25, 50, 75, 95, 99))
        )

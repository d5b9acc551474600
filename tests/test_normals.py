"""Normals from depth on synthetic scenes whose true normals are known."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from flux_depth_assets.depth.normals import (
    angular_error_deg,
    decode_normals_png,
    decode_rgb16_png,
    encode_normals_png,
    normals_from_depth,
    quantize_normals,
)


def grid(w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in image widths: u to the right, v down the rows."""
    u = (np.arange(w) + 0.5) / w
    v = (np.arange(h) + 0.5) / w
    return np.meshgrid(u, v)


def sphere_scene(w: int, h: int, radius: float = 0.3, base: float = 0.1):
    """A hemisphere (radius in image widths) on a flat background, its true OpenGL normals and
    each pixel's distance to the silhouette in pixels."""
    u, v = grid(w, h)
    cu, cv = 0.5, h / w / 2
    r2 = (u - cu) ** 2 + (v - cv) ** 2
    inside = r2 < radius**2
    z = np.sqrt(np.maximum(radius**2 - r2, 0.0))
    near = np.where(inside, base + z, base).astype(np.float32)
    true = np.zeros((h, w, 3))
    true[..., 2] = 1.0
    true[inside, 0] = (u - cu)[inside]
    true[inside, 1] = -(v - cv)[inside]  # OpenGL: +y up, rows go down
    true[inside, 2] = z[inside]
    true /= np.linalg.norm(true, axis=-1, keepdims=True)
    dist_px = np.abs(np.sqrt(r2) - radius) * w
    return near, true, dist_px


def plane_normal(
    a: float, b: float, strength: float = 1.0, convention: str = "opengl"
) -> np.ndarray:
    """Normal of nearness = a·u + b·v (u, v in image widths, v down)."""
    ny = strength * b if convention == "opengl" else -strength * b
    n = np.array([-strength * a, ny, 1.0])
    return n / np.linalg.norm(n)


# ------------------------------------------------------------------- geometry


def test_flat_region_gives_straight_up():
    n = normals_from_depth(np.full((40, 50), 0.37, np.float32))
    assert n.dtype == np.float32 and n.shape == (40, 50, 3)
    np.testing.assert_allclose(n, np.broadcast_to([0, 0, 1], n.shape), atol=1e-6)


@pytest.mark.parametrize("convention", ["opengl", "directx"])
@pytest.mark.parametrize(
    "a,b,strength", [(0.5, 0.0, 1.0), (0.0, -0.8, 1.0), (0.3, 0.4, 2.5), (-1.5, 2.0, 0.5)]
)
def test_tilted_plane_matches_the_analytic_normal(a, b, strength, convention):
    u, v = grid(96, 64)
    near = (0.2 + a * u + b * v).astype(np.float32)
    n = normals_from_depth(near, strength=strength, convention=convention)
    err = angular_error_deg(n, np.broadcast_to(plane_normal(a, b, strength, convention), n.shape))
    assert err.max() < 0.05


def test_opengl_y_points_up_and_directx_flips_it():
    # nearness grows down the rows: a floor seen from above-front, its normal leans up (+Y GL)
    u, v = grid(32, 32)
    near = (0.5 * v).astype(np.float32)
    gl = normals_from_depth(near, convention="opengl")
    dx = normals_from_depth(near, convention="directx")
    assert (gl[..., 1] > 0.1).all() and (dx[..., 1] < -0.1).all()
    np.testing.assert_allclose(gl[..., [0, 2]], dx[..., [0, 2]])
    # nearness grows to the right: the surface faces left (−X)
    assert (normals_from_depth((0.5 * u).astype(np.float32))[..., 0] < -0.1).all()


def test_strength_scales_the_slope_linearly():
    u, _ = grid(64, 64)
    near = (0.2 * u).astype(np.float32)
    for s in (0.5, 1.0, 4.0):
        n = normals_from_depth(near, strength=s)
        np.testing.assert_allclose(-n[..., 0] / n[..., 2], 0.2 * s, rtol=1e-4)


@pytest.mark.parametrize("size", [128, 256])
def test_sphere_mean_error_below_3_degrees_away_from_the_silhouette(size):
    near, true, dist = sphere_scene(size, size)
    err = angular_error_deg(normals_from_depth(near), true)
    away = dist > 2.0
    assert err[away].mean() < 3.0
    assert np.median(err[away]) < 0.5
    # and inside the sphere itself, not just thanks to the flat background
    inside = away & (true[..., 2] < 0.999)
    assert err[inside].mean() < 3.0


def test_same_scene_at_two_resolutions_gives_the_same_normals():
    lo_near, _, _ = sphere_scene(128, 96)
    hi_near, _, hi_dist = sphere_scene(512, 384)
    lo = normals_from_depth(lo_near)
    hi = normals_from_depth(hi_near)
    # sample the high-res normals at the low-res pixel centres (4×4 block centres ~ same point)
    hi_at_lo = hi.reshape(96, 4, 128, 4, 3)[:, 1:3, :, 1:3].mean(axis=(1, 3))
    away = hi_dist.reshape(96, 4, 128, 4)[:, 1:3, :, 1:3].min(axis=(1, 3)) > 8
    err = angular_error_deg(lo, hi_at_lo)
    assert err[away].mean() < 1.0


def test_step_edge_has_no_halo():
    """Two flat planes at different depths: every pixel, including those touching the edge,
    stays (0, 0, 1); a plain Sobel would tilt the columns on both sides of the step."""
    near = np.full((30, 60), 0.2, np.float32)
    near[:, 30:] = 0.9
    n = normals_from_depth(near)
    np.testing.assert_allclose(n[..., 2], 1.0, atol=1e-6)


def test_step_between_tilted_planes_keeps_each_side_on_its_own_plane():
    u, v = grid(80, 40)
    left = 0.1 + 0.4 * u + 0.1 * v
    right = 0.7 - 0.6 * u + 0.2 * v
    near = np.where(u < 0.5, left, right).astype(np.float32)
    n = normals_from_depth(near)
    truth = np.where((u < 0.5)[..., None], plane_normal(0.4, 0.1), plane_normal(-0.6, 0.2))
    err = angular_error_deg(n, truth)
    assert err.max() < 0.05, f"columns next to the step are off by {err.max():.2f}°"


def test_silhouette_of_a_sphere_on_a_far_plane_does_not_bleed_into_the_background():
    near, true, _dist = sphere_scene(128, 128, base=0.0)
    near = near + 0.3 * (true[..., 2] < 1.0)  # lift the sphere: a real depth step at its rim
    n = normals_from_depth(near.astype(np.float32))
    background = true[..., 2] >= 1.0
    np.testing.assert_allclose(n[background][:, 2], 1.0, atol=1e-6)


def test_invalid_pixels_are_flat_and_do_not_spread():
    u, _v = grid(40, 40)
    near = (0.3 * u).astype(np.float32)
    near[10:20, 10:20] = np.nan
    n = normals_from_depth(near)
    assert np.isfinite(n).all()
    np.testing.assert_allclose(n[12:18, 12:18], np.broadcast_to([0, 0, 1], (6, 6, 3)), atol=1e-6)
    # valid neighbours of the hole keep the plane's normal (one-sided differences)
    ring = np.zeros((40, 40), bool)
    ring[9, 9:21] = ring[20, 9:21] = ring[9:21, 9] = ring[9:21, 20] = True
    err = angular_error_deg(n[ring], np.broadcast_to(plane_normal(0.3, 0), (ring.sum(), 3)))
    assert err.max() < 0.05


def test_unit_length_and_facing_the_camera_on_a_noisy_map():
    rng = np.random.default_rng(7)
    near = rng.random((64, 64)).astype(np.float32)
    n = normals_from_depth(near, strength=3.0)
    np.testing.assert_allclose(np.linalg.norm(n, axis=-1), 1.0, atol=1e-5)
    assert (n[..., 2] > 0).all()


def test_tiny_and_odd_shapes():
    assert normals_from_depth(np.zeros((1, 1), np.float32)).shape == (1, 1, 3)
    n = normals_from_depth(np.array([[0.0, 0.5, 1.0]], np.float32))  # one row
    assert (n[..., 0] < 0).all()
    n = normals_from_depth(np.array([[0.0], [0.5], [1.0]], np.float32))  # one column
    assert (n[..., 1] > 0).all()
    # row blocks: heights that are not a multiple of the block size stay seamless
    _u, v = grid(20, 131)
    n = normals_from_depth((0.3 * v).astype(np.float32))
    assert angular_error_deg(n, np.broadcast_to(plane_normal(0, 0.3), n.shape)).max() < 0.05


@pytest.mark.parametrize(
    "bad",
    [dict(strength=0), dict(strength=-1), dict(strength=float("nan")), dict(convention="vulkan")],
)
def test_bad_parameters_are_refused(bad):
    with pytest.raises(ValueError):
        normals_from_depth(np.zeros((4, 4), np.float32), **bad)


def test_refuses_non_2d_input():
    with pytest.raises(ValueError):
        normals_from_depth(np.zeros((4, 4, 3), np.float32))


# ------------------------------------------------------------------- encoding


def test_8bit_png_decodes_to_unit_camera_facing_normals():
    near, _, _ = sphere_scene(96, 96)
    n = normals_from_depth(near, strength=2.0)
    data = encode_normals_png(n, bit_depth=8)
    with Image.open(io.BytesIO(data)) as im:
        assert (im.format, im.mode, im.size) == ("PNG", "RGB", (96, 96))
        rgb = np.asarray(im)
    # the documented decoding, done by hand: n = rgb / 255 * 2 - 1
    dec = rgb.astype(np.float64) / 255 * 2 - 1
    length = np.linalg.norm(dec, axis=-1)
    assert np.abs(length - 1).max() <= 0.02
    assert (dec[..., 2] > 0).all()
    np.testing.assert_allclose(decode_normals_png(data), dec, atol=1e-6)
    # a flat pixel encodes as (128, 128, 255)
    assert tuple(rgb[0, 0]) == (128, 128, 255)


def test_16bit_png_roundtrip_is_lossless_after_quantisation():
    rng = np.random.default_rng(3)
    n = normals_from_depth(rng.random((37, 23)).astype(np.float32), strength=0.5)
    data = encode_normals_png(n, bit_depth=16)
    q = quantize_normals(n, 16)
    np.testing.assert_array_equal(decode_rgb16_png(data), q)
    dec = decode_normals_png(data)
    assert np.abs(dec - n).max() < 2 / 65535
    # other readers see a 48-bit RGB PNG too
    with Image.open(io.BytesIO(data)) as im:
        assert im.size == (23, 37) and im.mode == "RGB"
        im.load()
        np.testing.assert_allclose(np.asarray(im, np.int32), q >> 8, atol=1)


def test_rgb16_png_rejects_what_it_cannot_read():
    with pytest.raises(ValueError):
        decode_rgb16_png(b"not a png")
    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, format="PNG")
    with pytest.raises(ValueError):
        decode_rgb16_png(buf.getvalue())


# ------------------------------------------------------------------- quantised inputs


def test_an_8bit_depth_map_is_smoothed_without_halos():
    """An 8-bit provider map is terraced: one value step between neighbours would tilt a normal by
    tens of degrees. Smoothing the terraces recovers the sphere; the raw differences do not."""
    near, true, dist = sphere_scene(512, 384, base=0.0)
    near = near + 0.1 * (true[..., 2] < 1.0)  # a real depth step at the rim
    scale = float(near.max())
    q8 = (np.round(near / scale * 255) / 255).astype(np.float32)
    away = dist > 3
    smooth = angular_error_deg(normals_from_depth(q8, scale), true)
    raw = angular_error_deg(normals_from_depth(q8, scale, smooth_quantized=False), true)
    assert smooth[away].mean() < 3.0
    assert raw[away].mean() > 2 * smooth[away].mean()
    rim_background = (dist <= 3) & (true[..., 2] >= 1.0)
    assert smooth[rim_background].max() < 0.5  # the step is not smeared into the background


def test_quantization_step_finds_the_value_grid():
    from flux_depth_assets.depth.normals import quantization_step

    u, v = grid(300, 200)
    ramp = (0.8 * u + 0.1 * v).astype(np.float32)
    assert quantization_step(ramp) < 1e-3  # float: no grid
    assert quantization_step(np.round(ramp * 255) / 255) == pytest.approx(1 / 255, rel=1e-3)

"""Parallax sprites on synthetic scenes whose layers are known."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from flux_depth_assets.config.models import SpriteSettings
from flux_depth_assets.depth.sprites import (
    PREVIEW_LOOP_MS,
    build_sprites,
    decode_rgba,
    depth_cuts,
    feathered_alpha,
    fill_holes,
    layer_labels,
    match_size,
    psnr,
    recompose,
)

W, H = 160, 120


def scene(seed: int = 0):
    """Textured RGB, nearness, and the masks of a far wall, a mid box and a near disc."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W]
    rgb = np.empty((H, W, 3), np.uint8)
    rgb[..., 0] = 40 + (xx * 0.5).astype(np.uint8)
    rgb[..., 1] = 60 + (yy * 0.5).astype(np.uint8)
    rgb[..., 2] = 200
    box = (xx >= 20) & (xx < 90) & (yy >= 30) & (yy < 100)
    disc = (xx - 115) ** 2 + (yy - 60) ** 2 < 28**2
    rgb[box] = [200, 180, 30]
    rgb[disc] = [220, 30, 30]
    rgb = np.clip(rgb.astype(np.int16) + rng.integers(-12, 13, rgb.shape), 0, 255).astype(np.uint8)
    near = (0.05 + 0.1 * yy / H).astype(np.float32)  # a gently sloping far wall
    near[box] = 0.5 + 0.05 * xx[box] / W
    near[disc] = 0.9 - 0.05 * ((xx[disc] - 115) ** 2 + (yy[disc] - 60) ** 2) / 28**2
    wall = ~(box | disc)
    return rgb, near, wall, box & ~disc, disc


def read_from(ss):
    files = ss.files()
    return lambda name: files[name]


# ------------------------------------------------------------------- the whole set


@pytest.mark.parametrize("layers,feather", [(5, 2.0), (3, 0.0), (2, 6.5), (8, 3.0)])
def test_recomposition_reproduces_the_source(layers, feather):
    rgb, near, *_ = scene()
    ss = build_sprites(rgb, near, SpriteSettings(layers=layers, feather_px=feather))
    back = recompose(ss.manifest, read_from(ss))
    assert back.shape == rgb.shape
    assert psnr(back, rgb) >= 35.0
    # stronger than the threshold: the layers are cut so that zero offset is exact
    np.testing.assert_array_equal(back, rgb)


def test_recomposition_detects_a_missing_layer():
    rgb, near, *_ = scene()
    ss = build_sprites(rgb, near, SpriteSettings(layers=3))
    manifest = json.loads(json.dumps(ss.manifest))
    manifest["layers"] = manifest["layers"][:-1]  # drop the nearest layer: its pixels show the fill
    assert psnr(recompose(manifest, read_from(ss)), rgb) < 35.0


def test_files_and_manifest():
    rgb, near, *_ = scene()
    ss = build_sprites(
        rgb, near, SpriteSettings(layers=5), image_id="abc123", depth_sha256="f" * 64
    )
    files = ss.files()
    assert sorted(files) == sorted(
        [f"layer_{k}.png" for k in range(5)] + ["manifest.json", "preview.webp"]
    )
    m = json.loads(files["manifest.json"])
    assert m == ss.manifest
    assert m["image"] == {"id": "abc123", "width": W, "height": H}
    assert m["depth"]["sha256"] == "f" * 64
    assert m["order"] == "far_to_near"
    assert [layer["index"] for layer in m["layers"]] == list(range(5))
    assert m["layers"][0]["role"] == "background" and m["layers"][0]["inpainted"]
    assert m["layers"][0]["bbox"] == {"x": 0, "y": 0, "width": W, "height": H}
    for layer in m["layers"]:
        rgba = decode_rgba(files[layer["file"]])
        with Image.open(io.BytesIO(files[layer["file"]])) as im:
            assert (im.format, im.mode) == ("PNG", "RGBA")
        if not layer["empty"]:
            b = layer["bbox"]
            assert rgba.shape[:2] == (b["height"], b["width"])
            assert 0 <= b["x"] and b["x"] + b["width"] <= W and b["y"] + b["height"] <= H
    # depth ranges ascend far → near and parallax goes 0 (background) → 1 (nearest)
    medians = [layer["nearness"]["median"] for layer in m["layers"] if not layer["empty"]]
    assert medians == sorted(medians)
    factors = [layer["parallax_factor"] for layer in m["layers"]]
    assert factors[0] == 0.0 and max(factors) == 1.0 and factors == sorted(factors)
    assert abs(sum(layer["coverage"] for layer in m["layers"]) - 1.0) < 1e-5
    assert len(m["cuts"]) == 4 and m["cuts"] == sorted(m["cuts"])


def test_background_is_opaque_and_filled_from_the_background():
    rgb, near, wall, box, disc = scene()
    ss = build_sprites(rgb, near, SpriteSettings(layers=3))
    bg = decode_rgba(ss.files()["layer_0.png"])
    assert bg.shape == (H, W, 4) and (bg[..., 3] == 255).all()
    np.testing.assert_array_equal(bg[..., :3][wall], rgb[wall])  # the wall is untouched
    # where the red disc and yellow box stood, the fill has the wall's blue, not their colours
    hidden = box | disc
    inner = hidden & ~np.roll(hidden, 6, 0) | hidden & ~np.roll(hidden, -6, 1)
    core = hidden & ~inner
    wall_mean = rgb[wall].astype(float).mean(0)
    fill_mean = bg[..., :3][core].astype(float).mean(0)
    assert np.abs(fill_mean - wall_mean).max() < 25, (fill_mean, wall_mean)
    assert fill_mean[2] > 150 and fill_mean[0] < 120


def test_layers_follow_object_boundaries():
    rgb, near, wall, box, disc = scene()
    ss = build_sprites(rgb, near, SpriteSettings(layers=3, feather_px=0))
    labels = layer_labels(near, np.asarray(ss.manifest["cuts"]))
    assert (labels[wall] == 0).all() and (labels[box] == 1).all() and (labels[disc] == 2).all()
    # so each layer's alpha is exactly its object (no feather)
    files = ss.files()
    b = ss.manifest["layers"][2]["bbox"]
    a = decode_rgba(files["layer_2.png"])[..., 3]
    full = np.zeros((H, W), np.uint8)
    full[b["y"] : b["y"] + b["height"], b["x"] : b["x"] + b["width"]] = a
    np.testing.assert_array_equal(full > 0, disc)


def test_valley_cuts_move_to_depth_gaps_where_quantiles_would_slice_a_surface():
    # 70 % of the pixels on a far ramp (0 … 0.3), 30 % on a near object at 0.8
    ramp = np.linspace(0.0, 0.3, 7000, dtype=np.float32)
    obj = np.full(3000, 0.8, np.float32) + np.linspace(0, 0.02, 3000, dtype=np.float32)
    values = np.concatenate([ramp, obj]).reshape(100, 100)
    quant = depth_cuts(values, 2, "quantile")
    valley = depth_cuts(values, 2, "valley")
    assert quant[0] < 0.3  # the median sits on the ramp: the plain quantile splits the wall
    assert 0.3 < valley[0] < 0.8
    labels = layer_labels(values, valley).ravel()
    assert (labels[:7000] == 0).all() and (labels[7000:] == 1).all()


def test_cuts_on_uniform_depth_stay_near_the_quantiles():
    values = np.linspace(0, 1, 10000, dtype=np.float32).reshape(100, 100)
    cuts = depth_cuts(values, 5)
    np.testing.assert_allclose(cuts, [0.2, 0.4, 0.6, 0.8], atol=0.1)
    assert (np.diff(cuts) > 0).all()


def test_feathered_alpha_fades_outward_over_farther_pixels_only():
    labels = np.zeros((40, 60), np.uint8)
    labels[10:30, 20:40] = 1
    labels[10:30, 40:50] = 2  # a nearer layer touching the right side
    alpha, (x, y, w, h) = feathered_alpha(labels, 1, feather_px=3.0)
    full = np.zeros((40, 60), np.float32)
    full[y : y + h, x : x + w] = alpha
    assert (full[labels == 1] == 1.0).all()
    assert (full[labels == 2] == 0.0).all()  # no fringe over the nearer layer
    row = full[20, 14:20]  # leftwards from the edge: strictly decreasing to 0
    assert list(row[::-1]) == sorted(row, reverse=True)
    assert row[-1] > 0.5 and row[0] == 0.0
    assert (full[:, :16] == 0).all() and (full[:6] == 0).all()
    hard, _ = feathered_alpha(labels, 1, feather_px=0.0)
    assert set(np.unique(hard).tolist()) == {1.0}


def test_preview_is_an_animated_sway_small_enough_to_glance_at():
    rgb, near, *_ = scene()
    big_rgb = np.asarray(Image.fromarray(rgb).resize((960, 720), Image.Resampling.NEAREST))
    big_near = match_size(near, 960, 720)
    for fmt, frames in (("webp", 32), ("gif", 24)):
        ss = build_sprites(
            big_rgb, big_near, SpriteSettings(preview_format=fmt, preview_frames=frames)
        )
        with Image.open(io.BytesIO(ss.preview)) as im:
            assert im.format == fmt.upper()
            assert im.n_frames == frames
            assert max(im.size) <= 512
            assert (im.size[0], im.size[1]) == (
                ss.manifest["preview"]["width"],
                ss.manifest["preview"]["height"],
            )
            im.seek(0)
            first = np.asarray(im.convert("RGB"), np.int16)
            im.seek(frames // 4)
            quarter = np.asarray(im.convert("RGB"), np.int16)
        assert np.abs(first - quarter).mean() > 1.0  # the camera moves
        assert ss.preview_file == f"preview.{fmt}"
        # one sway loop lasts the same whatever the frame count
        assert abs(ss.manifest["preview"]["frame_ms"] * frames - PREVIEW_LOOP_MS) <= frames


def test_invalid_depth_goes_to_the_background_and_constant_depth_gives_one_layer():
    rgb, near, *_ = scene()
    near = near.copy()
    near[:10] = np.nan
    ss = build_sprites(rgb, near, SpriteSettings(layers=3))
    labels = layer_labels(near, np.asarray(ss.manifest["cuts"]))
    assert (labels[:10] == 0).all()
    assert psnr(recompose(ss.manifest, read_from(ss)), rgb) >= 35.0

    flat = build_sprites(rgb, np.full((H, W), 0.4, np.float32), SpriteSettings(layers=4))
    assert [layer["empty"] for layer in flat.manifest["layers"]] == [False, True, True, True]
    np.testing.assert_array_equal(recompose(flat.manifest, read_from(flat)), rgb)


def test_inputs_are_checked():
    rgb, near, *_ = scene()
    with pytest.raises(ValueError, match="differ in size"):
        build_sprites(rgb, near[:-1])
    with pytest.raises(ValueError):
        build_sprites(rgb.astype(np.float32), near)


def test_match_size_keeps_invalid_pixels_invalid():
    near = np.linspace(0, 1, 20 * 30, dtype=np.float32).reshape(20, 30)
    near[:, :10] = np.nan
    out = match_size(near, 60, 40)
    assert out.shape == (40, 60)
    assert np.isnan(out[:, :18]).all() and np.isfinite(out[:, 22:]).all()


def test_fill_holes_interpolates_smoothly_and_keeps_known_pixels():
    yy, xx = np.mgrid[0:200, 0:300]
    grad = np.stack([xx * 255 // 299, yy * 255 // 199, np.full_like(xx, 90)], -1).astype(np.uint8)
    known = np.ones((200, 300), bool)
    known[60:140, 100:220] = False
    out = fill_holes(grad, known, work_side=64)
    np.testing.assert_array_equal(out[known], grad[known])
    err = np.abs(out[~known].astype(int) - grad[~known].astype(int))
    assert err.mean() < 12, err.mean()
    # nothing known at all: the image mean; nothing to fill: unchanged
    none = fill_holes(grad, np.zeros_like(known))
    assert (none == none[0, 0]).all()
    np.testing.assert_array_equal(fill_holes(grad, np.ones_like(known)), grad)


def test_label_counts_boxes_and_the_cut_histogram_match_their_numpy_definitions():
    from flux_depth_assets.depth.layers import (
        _HIST_BINS,
        alpha8,
        folded_histogram,
        label_boxes,
        label_counts,
    )

    rng = np.random.default_rng(3)
    labels = np.zeros((90, 120), np.uint8)
    labels[10:40, 5:60] = 1
    labels[50:52, 100:119] = 3  # label 2 owns nothing
    assert label_counts(labels, 4).tolist() == np.bincount(labels.ravel(), minlength=4).tolist()
    assert label_boxes(labels, 4) == [(0, 0, 120, 90), (5, 10, 55, 30), None, (100, 50, 19, 2)]

    v = rng.random(200_000, dtype=np.float32)
    lo, hi = 0.1, 0.8  # tails below and above the range fold into the end bins
    hist, edges = folded_histogram(v, lo, hi)
    ref, ref_edges = np.histogram(np.clip(v, lo, hi), bins=_HIST_BINS, range=(lo, hi))
    np.testing.assert_array_equal(edges, ref_edges)
    assert hist.sum() == v.size
    assert hist[0] >= np.count_nonzero(v < lo) and hist[-1] >= np.count_nonzero(v >= hi)
    assert np.abs(hist - ref).sum() <= 10  # at most a value on a bin edge rounded differently

    alpha = np.array([[0.0, 0.5 / 255, 1.5 / 255, 0.5, 1.0]], np.float32)
    np.testing.assert_array_equal(alpha8(alpha), np.rint(alpha * 255.0).astype(np.uint8))

"""What people see: subjects nearer than what is behind them, no border band or seam, layers
filled so a camera sway shows no hole (on every demo photo)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from flux_depth_assets.config.models import NormalMapSettings, SpriteSettings
from flux_depth_assets.depth import subjects
from flux_depth_assets.depth.local_estimator import estimate_depth
from flux_depth_assets.depth.normals import normals_from_depth, tilt_deg
from flux_depth_assets.depth.parallax_check import unfilled_pixels
from flux_depth_assets.depth.sprites import build_sprites, decode_rgba

DEMO = Path(__file__).resolve().parents[1] / "examples" / "demo_catalog"
PHOTOS = sorted(p for p in DEMO.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp"))


def _load(path: Path) -> Image.Image:
    with Image.open(path) as im:
        return im.convert("RGB")


def _faces(im: Image.Image) -> list[subjects.Box]:
    f = min(1.0, 256 / max(im.size))
    small = im.resize((round(im.width * f), round(im.height * f)))
    return [
        subjects.scale_box(face.box, 1 / f, 1 / f)
        for face in subjects.detect_faces(np.asarray(small.convert("L")))
    ]


@pytest.mark.parametrize("path", PHOTOS, ids=lambda p: p.name)
def test_a_detected_face_is_nearer_than_the_background_beside_it(path: Path) -> None:
    im = _load(path)
    faces = _faces(im)
    if path.stem == "astronaut":
        assert faces, "the astronaut's face must be detected"
    depth = estimate_depth(im)
    for x, y, w, h in faces:
        face = depth[y + h // 4 : y + 3 * h // 4, x + w // 4 : x + 3 * w // 4].mean()
        beside = np.concatenate(
            [
                depth[y : y + h, max(0, x - w) : x].ravel(),
                depth[y : y + h, x + w : x + 2 * w].ravel(),
            ]
        )
        assert face > beside.mean() + 0.1, (path.name, face, beside.mean())


@pytest.mark.parametrize("path", PHOTOS, ids=lambda p: p.name)
def test_no_clamped_band_or_seam_at_any_border(path: Path) -> None:
    depth = estimate_depth(_load(path))
    h, w = depth.shape
    span = float(depth.max() - depth.min())
    normals = normals_from_depth(depth, smooth_px=NormalMapSettings().smooth * max(h, w))
    tilt = tilt_deg(normals)
    for name, d, t in (
        ("top", depth, tilt),
        ("bottom", depth[::-1], tilt[::-1]),
        ("left", depth.T, tilt.T),
        ("right", depth.T[::-1], tilt.T[::-1]),
    ):
        band = max(3, int(0.15 * d.shape[0]))
        # a clamp: neighbouring lines holding the very same values (the old horizon cut made
        # the top 10-15 % one constant)
        same = (np.abs(np.diff(d[:band], axis=0)).max(axis=1) < 1e-6 * span).sum()
        assert same < 2, f"{path.name}: {same} identical lines at the {name} border"
        # a seam: a jump of the mean tilt between neighbouring lines of the border band
        line_tilt = t[:band].mean(axis=1)
        assert np.abs(np.diff(line_tilt)).max() < 15.0, f"{path.name}: seam at the {name} border"


@pytest.mark.parametrize("path", PHOTOS, ids=lambda p: p.name)
def test_no_unfilled_pixel_at_the_largest_offset(path: Path) -> None:
    im = _load(path)
    ss = build_sprites(np.asarray(im), estimate_depth(im), SpriteSettings())
    files = ss.files()
    assert unfilled_pixels(ss.manifest, files.__getitem__) == 0


def _two_step_scene() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
    near = np.full((120, 160), 0.1, np.float32)
    near[20:110, 20:140] = 0.5  # a middle slab
    near[40:90, 60:100] = 0.9  # a near box on it
    rgb[20:110, 20:140] = [200, 180, 30]
    return rgb, near


def test_a_middle_layer_is_filled_under_the_nearer_one() -> None:
    rgb, near = _two_step_scene()
    ss = build_sprites(rgb, near, SpriteSettings(layers=3, feather_px=0))
    files = ss.files()
    mid = next(layer for layer in ss.manifest["layers"] if layer["index"] == 1)
    a = decode_rgba(files[mid["file"]])
    bx, by = mid["bbox"]["x"], mid["bbox"]["y"]
    # just inside the near box's edge: owned by the near layer, filled (opaque, slab colour) in the middle one
    px, py = 62 - bx, 60 - by
    assert a[py, px, 3] == 255
    assert np.abs(a[py, px, :3].astype(int) - [200, 180, 30]).max() < 40
    assert unfilled_pixels(ss.manifest, files.__getitem__) == 0


def test_the_hole_check_fails_on_a_background_with_a_hole() -> None:
    rgb, near = _two_step_scene()
    ss = build_sprites(rgb, near, SpriteSettings(layers=3))
    files = dict(ss.files())
    bg = decode_rgba(files["layer_0.png"]).copy()
    bg[8:18, 144:154, 3] = 0  # a hole in the background where no nearer layer covers it
    import io

    buf = io.BytesIO()
    Image.fromarray(bg, "RGBA").save(buf, format="PNG")
    files["layer_0.png"] = buf.getvalue()
    assert unfilled_pixels(ss.manifest, files.__getitem__) > 0


def test_a_cut_through_a_detected_face_is_undone() -> None:
    """Nearness that would cut the astronaut's face in two (left half near, right half far):
    the face's ellipse ends up in one layer."""
    from flux_depth_assets.depth.sprites import keep_faces_whole, layer_labels

    im = _load(DEMO / "astronaut.jpg")
    rgb = np.asarray(im)
    [(x, y, w, h)] = _faces(im)
    near = np.zeros(rgb.shape[:2], np.float32)
    near[:, : x + w // 2] = 1.0  # the cut runs down the middle of the face
    labels = layer_labels(near, np.array([0.5]))
    inner = (slice(y + h // 4, y + 3 * h // 4), slice(x + w // 4, x + 3 * w // 4))
    assert len(np.unique(labels[inner])) == 2  # split before
    assert len(np.unique(keep_faces_whole(rgb, labels)[inner])) == 1  # whole after


def test_a_face_subject_does_not_depend_on_what_the_process_segmented_before() -> None:
    # GrabCut draws from OpenCV's per-thread RNG; unseeded, a worker's output for an image
    # would depend on the images it handled before (workers: 1 vs all cores would differ)
    astronaut = _load(DEMO / "astronaut.jpg")
    first = estimate_depth(astronaut)
    for other in PHOTOS:
        estimate_depth(_load(other))
    np.testing.assert_array_equal(estimate_depth(astronaut), first)

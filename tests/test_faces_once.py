"""Faces are found once per image: the local estimator notes its boxes in the depth PNG, and the
parallax sprites keep those faces whole without running the detector again."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from flux_depth_assets.config.models import LocalProviderConfig
from flux_depth_assets.depth import subjects
from flux_depth_assets.depth.encoding import (
    FACES_TEXT_KEY,
    decode_png16,
    depth_faces,
    encode_png,
    encode_png16,
    png_text,
)
from flux_depth_assets.depth.local_estimator import estimate_depth, estimate_depth_and_faces
from flux_depth_assets.depth.sprites import build_sprites, keep_faces_whole, layer_labels
from flux_depth_assets.providers.base import ProviderInput
from flux_depth_assets.providers.local import LocalProvider

DEMO = Path(__file__).resolve().parents[1] / "examples" / "demo_catalog"


def _astronaut() -> Image.Image:
    with Image.open(DEMO / "astronaut.jpg") as im:
        return im.convert("RGB")


def _codes() -> np.ndarray:
    return np.arange(1, 1 + 40 * 30, dtype=np.uint16).reshape(30, 40)


def test_faces_noted_in_a_depth_png_come_back_and_leave_the_pixels_alone() -> None:
    plain, noted = encode_png16(_codes()), encode_png16(_codes(), [[3, 4, 10, 12], [20, 1, 5, 5]])
    assert depth_faces(noted) == [(3, 4, 10, 12), (20, 1, 5, 5)]
    assert depth_faces(encode_png16(_codes(), [])) == []  # looked, found none: do not look again
    assert depth_faces(plain) is None  # never looked (a hosted provider's map): look
    np.testing.assert_array_equal(decode_png16(noted), decode_png16(plain))
    with Image.open(io.BytesIO(noted)) as im:  # a standard tEXt chunk any reader sees
        assert im.info[FACES_TEXT_KEY] == "[[3,4,10,12],[20,1,5,5]]"
        np.testing.assert_array_equal(np.asarray(im), _codes())


def test_a_garbled_faces_note_means_look_again() -> None:
    for bad in ("not json", "[[1,2,3]]", '{"x": 1}', "[[1, 2, 3, null]]"):
        data = encode_png(_codes(), {FACES_TEXT_KEY: bad})
        assert depth_faces(data) is None, bad
    assert png_text(encode_png(_codes(), {"a": "b", "c": "d=e"})) == {"a": "b", "c": "d=e"}


def test_the_estimator_returns_the_faces_it_used_in_image_pixels() -> None:
    im = _astronaut()
    depth, faces = estimate_depth_and_faces(im)
    np.testing.assert_array_equal(depth, estimate_depth(im))
    assert faces is not None and len(faces) == 1
    x, y, w, h = faces[0]
    assert 0 <= x < x + w <= im.width and 0 <= y < y + h <= im.height
    # the same face the sprites' own detector finds on its 256 px copy (to a few pixels)
    f = 256 / max(im.size)
    small = im.resize((round(im.width * f), round(im.height * f)))
    [own] = subjects.detect_faces(np.asarray(small.convert("L")))
    ox, oy, ow, oh = subjects.scale_box(own.box, 1 / f, 1 / f)
    assert abs(ox - x) <= 0.1 * w and abs(oy - y) <= 0.1 * h
    assert abs(ow - w) <= 0.1 * w and abs(oh - h) <= 0.1 * h


def test_the_local_provider_hands_its_faces_on(tmp_path: Path) -> None:
    flat = Image.new("RGB", (64, 48), (120, 130, 140))
    provider = LocalProvider(LocalProviderConfig())
    items = [
        ProviderInput("astro", "a" * 64, "k1", load_image=_astronaut),
        ProviderInput("flat", "b" * 64, "k2", load_image=lambda: flat),
    ]
    astro, plain = provider.predict_many(items)
    assert len(astro.extra["faces"]) == 1 and len(astro.extra["faces"][0]) == 4
    assert plain.extra["faces"] == []


def _no_detector(*_args: object, **_kw: object) -> list[subjects.Face]:
    raise AssertionError("the face detector ran although the faces were known")


def test_sprites_given_faces_do_not_detect_again(monkeypatch: pytest.MonkeyPatch) -> None:
    im = _astronaut()
    rgb = np.asarray(im)
    near, faces = estimate_depth_and_faces(im)
    monkeypatch.setattr(subjects, "detect_faces", _no_detector)
    with_faces = build_sprites(rgb, near, faces=faces)
    assert build_sprites(rgb, near, faces=[]).manifest["layers"]
    with pytest.raises(AssertionError, match="detector ran"):
        build_sprites(rgb, near)  # unknown faces: the sprites look for themselves
    assert with_faces.manifest["layers"]


def test_known_faces_are_kept_whole_like_detected_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    rgb = np.zeros((120, 160, 3), np.uint8)
    near = np.zeros((120, 160), np.float32)
    near[:, :80] = 1.0  # a cut down the middle of the box below
    labels = layer_labels(near, np.array([0.5]))
    box = (60, 30, 40, 40)
    inner = (slice(40, 60), slice(70, 90))
    assert len(np.unique(labels[inner])) == 2
    monkeypatch.setattr(subjects, "detect_faces", _no_detector)
    assert len(np.unique(keep_faces_whole(rgb, labels, [box])[inner])) == 1
    np.testing.assert_array_equal(keep_faces_whole(rgb, labels, []), labels)


def test_a_local_run_detects_each_face_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Through the real runner: depth_maps (local) notes the faces in its PNGs; parallax_sprites
    then succeeds on every image with the detector made to fail."""
    import dagster as dg

    from flux_depth_assets.defs.runner import materialize_catalog
    from flux_depth_assets.storage.store import Storage
    from tests.catalogs import shop_catalog

    cfg = shop_catalog(
        tmp_path, {p: (DEMO / p).read_bytes() for p in ("astronaut.jpg", "coffee.jpg")}
    )
    instance = dg.DagsterInstance.ephemeral()

    def run(assets: list[str]) -> None:
        out = materialize_catalog(
            "shop", assets=assets, config_dir=cfg, instance=instance, log_level="WARNING"
        )
        assert out.success, out.error

    run(["source_images", "depth_maps"])
    store = Storage(str(tmp_path / "home"))
    depth_rows = store.partition_dicts("depth_maps", "shop")
    assert depth_rows is not None
    noted = sorted(len(depth_faces(store.read_bytes(r["depth_path"])) or []) for r in depth_rows)
    assert noted == [0, 1]  # the coffee has no face, the astronaut one
    monkeypatch.setattr(subjects, "detect_faces", _no_detector)
    run(["parallax_sprites"])
    sprite_rows = store.partition_dicts("parallax_sprites", "shop")
    assert sprite_rows is not None
    assert [r["status"] for r in sprite_rows] == ["succeeded", "succeeded"], sprite_rows


def test_threads_detecting_at_once_get_the_same_faces() -> None:
    """Two runs of a catalog in one process (threads) detect faces at the same time: OpenCV's
    cascade keeps per-call scale data inside the classifier, so a shared one raised
    `getScaleData` / `vector::_M_range_check` errors; each thread has its own."""
    from concurrent.futures import ThreadPoolExecutor

    im = _astronaut()
    f = 256 / max(im.size)
    gray = np.asarray(im.resize((round(im.width * f), round(im.height * f))).convert("L"))
    sizes = [gray, gray[:150], gray[:, :200], gray[40:]]  # different sizes: different scale data
    expected = [subjects.detect_faces(g) for g in sizes]
    with ThreadPoolExecutor(4) as pool:
        for _ in range(15):
            got = list(pool.map(subjects.detect_faces, sizes))
            assert got == expected

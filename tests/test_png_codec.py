"""The pipeline's PNG writer and its fast reader: lossless, standard, and honest about what it
cannot read (other encoders' files go to Pillow)."""

from __future__ import annotations

import io
import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest
from PIL import Image

from flux_depth_assets.depth.encoding import (
    PNG_MAX,
    decode_image,
    decode_own_png,
    decode_png16,
    encode_png,
)
from flux_depth_assets.depth.normals import decode_normals_png, quantize_normals
from flux_depth_assets.pipeline.derived_specs import code_lengths, normal_lengths
from flux_depth_assets.pipeline.parallel import keep_image_buffers
from tests import images

RNG = np.random.default_rng(7)


@pytest.mark.parametrize(
    ("dtype", "shape"),
    [
        (np.uint8, (17, 23)),
        (np.uint8, (17, 23, 2)),
        (np.uint8, (17, 23, 3)),
        (np.uint8, (17, 23, 4)),
        (np.uint16, (17, 23)),
        (np.uint16, (17, 23, 3)),
        (np.uint8, (1, 1, 4)),
    ],
)
def test_own_files_decode_to_the_same_pixels(dtype: type, shape: tuple[int, ...]) -> None:
    top = np.iinfo(dtype).max
    a: np.ndarray = RNG.integers(0, top + 1, shape).astype(dtype)
    data = encode_png(a)
    back = decode_own_png(data)
    assert back is not None and back.dtype == a.dtype
    np.testing.assert_array_equal(back, a)
    if dtype == np.uint8 or len(shape) == 2:  # Pillow reads these losslessly too
        with Image.open(io.BytesIO(data)) as im:
            np.testing.assert_array_equal(np.asarray(im), a)


def test_other_encoders_files_are_left_to_pillow() -> None:
    rgb = RNG.integers(0, 256, (40, 30, 3)).astype(np.uint8)
    rgb[:, :15] = np.linspace(0, 255, 15).astype(np.uint8)[None, :, None]  # Sub/Paeth rows
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", compress_level=9)
    assert decode_own_png(buf.getvalue()) is None
    np.testing.assert_array_equal(decode_image(buf.getvalue(), "RGB"), rgb)
    rgba = decode_image(buf.getvalue(), "RGBA")
    assert rgba.shape == (40, 30, 4) and (rgba[..., 3] == 255).all()
    jpeg = io.BytesIO()
    Image.fromarray(rgb).save(jpeg, format="JPEG")
    assert decode_image(jpeg.getvalue(), "RGB").shape == (40, 30, 3)


def test_broken_files_say_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="not a PNG"):
        decode_own_png(b"GIF89a....")
    data = encode_png(RNG.integers(0, 256, (64, 64, 3)).astype(np.uint8))
    idat = data.index(b"IDAT")
    torn = data[: idat + 40] + data[-12:]  # IDAT cut short, IEND kept
    with pytest.raises(ValueError):
        decode_own_png(torn)


def test_depth_codes_decode_to_the_documented_nearness() -> None:
    q = RNG.integers(0, PNG_MAX + 1, (31, 29)).astype(np.uint16)
    q[0, :3] = (0, 1, PNG_MAX)
    near = decode_png16(encode_png(q))
    expected = (q.astype(np.float64) - 1.0) / (PNG_MAX - 1)
    assert np.isnan(near[q == 0]).all()
    assert near[0, 1] == 0.0 and near[0, 2] == 1.0
    np.testing.assert_allclose(near[q > 0], expected[q > 0], rtol=0, atol=1e-7)


@pytest.mark.parametrize("bit_depth", [8, 16])
def test_lengths_from_codes_match_the_decoded_normals(bit_depth: int) -> None:
    n = RNG.normal(size=(21, 19, 3)).astype(np.float32)
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    q = quantize_normals(n, bit_depth)  # type: ignore[arg-type]
    decoded = decode_normals_png(encode_png(q))
    top = 255 if bit_depth == 8 else 65535
    np.testing.assert_allclose(code_lengths(q, top), normal_lengths(decoded), atol=1e-6)


def _maps() -> list[np.ndarray]:
    """Small and ~1 MP maps of the kinds the pipeline writes (photo, 16-bit depth, RGBA)."""
    out = []
    for i, (w, h) in enumerate([(64, 48), (97, 61), (1200, 850)]):
        rgb = np.asarray(images.photo(w, h, seed=i))
        out += [rgb, (rgb[..., 1].astype(np.uint16) * 257), np.dstack([rgb, rgb[..., :1]])]
    return out


def _encode_after_others(order: list[int]) -> list[bytes]:
    """Encode the maps in `order` in a fresh process with the pool workers' allocator settings,
    after other images (so the encoder's buffers come back from the heap holding old data)."""
    keep_image_buffers()
    maps = _maps()
    for seed in range(3):
        encode_png(np.asarray(images.photo(333, 222, seed=10 + seed)))
    return [encode_png(maps[i]) for i in order]


def test_the_same_pixels_give_the_same_bytes_in_every_process() -> None:
    """The `workers: 1` ≡ every-core contract compares files byte for byte, so the encoder
    must not depend on the process, its history or the order of work (ISA-L's level 1 did,
    now and then, on an AVX-512 machine)."""
    here = [encode_png(m) for m in _maps()]
    order = list(reversed(range(len(here))))
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        runs = list(pool.map(_encode_after_others, [order, order]))
    for run in runs:
        assert [here[i] for i in order] == run

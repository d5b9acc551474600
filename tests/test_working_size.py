"""Huge images are reduced once, early, to the working bound; their own size is still recorded.
And the pipeline's PNG writer: any reader decodes exactly the pixels it was given."""

from __future__ import annotations

import io

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from flux_depth_assets.config import load_project
from flux_depth_assets.depth.encoding import encode_png
from flux_depth_assets.depth.normals import decode_rgb16_png
from flux_depth_assets.imaging.validation import (
    WORKING_MAX_PIXELS,
    ValidImage,
    validate_image_bytes,
)
from flux_depth_assets.pipeline.scan import scan_catalog
from flux_depth_assets.storage.store import Storage
from tests import images
from tests.catalogs import shop_catalog


def bilevel_png(side: int = 7900) -> bytes:
    """The issue's 62 MP bilevel PNG: a few KB on disk, 62 MP once decoded."""
    im = Image.new("1", (side, side), 0)
    im.paste(1, (side // 4, side // 4, 3 * side // 4, 3 * side // 4))
    return images.encode(im, "PNG", optimize=True)


def test_a_62_mp_bilevel_png_is_reduced_to_the_working_bound_with_its_size_recorded():
    data = bilevel_png()
    assert len(data) < 50_000
    result = validate_image_bytes(data)
    assert isinstance(result, ValidImage), result
    assert (result.original_width, result.original_height) == (7900, 7900)
    assert result.width * result.height <= WORKING_MAX_PIXELS
    assert result.width == result.height >= 1900  # reduced, not thumbnailed
    px = np.asarray(result.image)
    assert px.dtype == np.uint8 and px.shape == (result.height, result.width, 3)
    # the white square in the middle survives the reduction, the black border too
    assert px[result.height // 2, result.width // 2].tolist() == [255, 255, 255]
    assert px[5, 5].tolist() == [0, 0, 0]


def test_a_big_rotated_jpeg_is_reduced_and_turned_upright():
    im = images.photo(2900, 1500, seed=1)  # 4.35 MP, just over the bound
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° CW to display
    result = validate_image_bytes(images.encode(im, "JPEG", quality=85, exif=exif.tobytes()))
    assert isinstance(result, ValidImage), result
    assert (result.original_width, result.original_height) == (1500, 2900)
    assert result.height > result.width  # portrait, like the displayed photo
    assert result.width * result.height <= WORKING_MAX_PIXELS
    assert result.exif_orientation == 6


def test_a_big_palette_image_keeps_its_colours_and_transparency():
    rgb = np.zeros((2100, 2100, 3), np.uint8)
    rgb[:, :1050] = (200, 30, 30)
    im = Image.fromarray(rgb, "RGB").convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    transparent = im.getpixel((2000, 10))  # the black half's palette index
    result = validate_image_bytes(images.encode(im, "PNG", transparency=transparent))
    assert isinstance(result, ValidImage), result
    px = np.asarray(result.image)
    assert result.has_alpha
    assert px[10, 10].tolist() == [200, 30, 30]  # colour kept (not turned gray)
    assert px[10, -10].tolist() == [255, 255, 255]  # transparent → composited on white


def test_images_within_the_bound_are_not_resampled():
    result = validate_image_bytes(images.png(seed=3))
    assert isinstance(result, ValidImage)
    assert (result.width, result.height) == (result.original_width, result.original_height)
    assert np.array_equal(
        np.asarray(result.image), np.asarray(Image.open(io.BytesIO(images.png(seed=3))))
    )


def test_the_scan_records_both_sizes_and_stores_the_bounded_copy(tmp_path):
    cfg = shop_catalog(tmp_path, {"big.png": bilevel_png(4200), "small.jpg": images.jpeg()})
    storage = Storage(str(tmp_path / "home"))
    result = scan_catalog(load_project(cfg).catalog("shop"), storage)
    rows = {r["source_uri"].rsplit("/", 1)[-1]: r for r in result.rows}
    big, small = rows["big.png"], rows["small.jpg"]
    assert (big["original_width"], big["original_height"]) == (4200, 4200)
    assert big["width"] * big["height"] <= WORKING_MAX_PIXELS
    with Image.open(io.BytesIO(storage.read_bytes(big["normalized_path"]))) as copy:
        assert copy.size == (big["width"], big["height"])
    assert (small["original_width"], small["width"]) == (96, 96)
    storage.write_partition("source_images", "shop", result.table())
    table = pq.read_table(tmp_path / "home/tables/source_images/catalog=shop/part-0.parquet")
    assert {"original_width", "original_height"} <= set(table.column_names)


@pytest.mark.parametrize(
    "shape,dtype",
    [
        ((7, 5), np.uint8),
        ((7, 5), np.uint16),
        ((9, 4, 3), np.uint8),
        ((3, 8, 4), np.uint8),
        ((3, 8, 2), np.uint8),
        ((1, 1, 4), np.uint8),
        ((1, 6), np.uint16),
    ],
)
def test_the_png_writer_round_trips_through_pillow(shape, dtype):
    arr = np.random.default_rng(0).integers(0, np.iinfo(dtype).max + 1, shape, dtype=dtype)
    with Image.open(io.BytesIO(encode_png(arr))) as im:
        assert np.array_equal(np.asarray(im).astype(dtype), arr)


def test_the_png_writer_writes_16_bit_rgb_that_the_normals_reader_decodes():
    arr = np.random.default_rng(1).integers(0, 65536, (6, 5, 3), dtype=np.uint16)
    assert np.array_equal(decode_rgb16_png(encode_png(arr)), arr)


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((4, 4), np.float32),
        np.zeros((4, 4, 5), np.uint8),
        np.zeros((0, 4), np.uint8),
        np.zeros(4, np.uint8),
    ],
)
def test_the_png_writer_refuses_what_png_cannot_hold(bad):
    with pytest.raises(ValueError, match="expected"):
        encode_png(bad)

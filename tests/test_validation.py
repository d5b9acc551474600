"""Image validation on a corpus of good and bad files the tests make."""

from __future__ import annotations

import numpy as np
import pytest

from flux_depth_assets.imaging.validation import Rejected, ValidImage, validate_image_bytes
from tests import images


def test_good_formats_are_accepted_with_identity():
    for data, fmt in [(images.jpeg(), "JPEG"), (images.png(), "PNG"), (images.webp(), "WEBP")]:
        result = validate_image_bytes(data)
        assert isinstance(result, ValidImage), result
        assert result.format == fmt
        assert (result.width, result.height) == (96, 64)
        assert result.image.mode == "RGB"
        assert result.image_id == result.sha256[:16] and len(result.sha256) == 64
        assert result.bytes == len(data)


@pytest.mark.parametrize(
    "data, fragment",
    [
        (b"", "empty file"),
        (b"hello, I am a text file pretending to be a JPEG\n", "not a JPEG, PNG or WebP"),
        (images.truncated_jpeg(), "truncated"),
        (images.tiny_png(), "smaller than 16 px"),
        (images.huge_dimension_png(), "decompression-bomb"),
    ],
)
def test_bad_files_are_rejected_with_a_reason(data, fragment):
    result = validate_image_bytes(data)
    assert isinstance(result, Rejected)
    assert fragment in result.reason


def test_size_limit_is_checked_before_decoding():
    data = images.png()
    result = validate_image_bytes(data, max_bytes=len(data) - 1)
    assert isinstance(result, Rejected) and "over the" in result.reason and result.sha256


def test_format_comes_from_magic_bytes_not_the_name():
    # validate_image_bytes never sees a name; a PNG stored as .jpg is still a PNG
    assert validate_image_bytes(images.png()).format == "PNG"


def test_cmyk_is_converted_to_rgb():
    result = validate_image_bytes(images.cmyk_jpeg())
    assert isinstance(result, ValidImage) and result.mode == "CMYK" and result.image.mode == "RGB"
    # the red object survives the conversion as red-ish
    arr = np.asarray(result.image)
    patch = arr[64 // 3 + 3 : 2 * 64 // 3 - 3, 96 // 3 + 3 : 96 // 2 - 3].reshape(-1, 3).mean(0)
    assert patch[0] > 150 and patch[1] < 110


def test_16bit_png_is_scaled_not_clipped():
    result = validate_image_bytes(images.png16())
    assert isinstance(result, ValidImage) and result.mode.startswith("I")
    arr = np.asarray(result.image.convert("L"), dtype=np.float64)
    assert arr.min() <= 2 and arr.max() >= 253  # full range kept
    assert 100 < arr.mean() < 155  # a ramp, not saturated white


def test_palette_with_transparency_is_composited_on_white():
    result = validate_image_bytes(images.palette_png_with_transparency())
    assert isinstance(result, ValidImage) and result.has_alpha and result.image.mode == "RGB"


def test_alpha_is_composited_on_white():
    result = validate_image_bytes(images.rgba_png())
    assert isinstance(result, ValidImage) and result.has_alpha
    left = np.asarray(result.image)[:, :40]
    assert (left == 255).all()


def test_exif_orientation_is_applied():
    result = validate_image_bytes(images.exif_rotated_jpeg(6))
    assert isinstance(result, ValidImage)
    assert result.exif_orientation == 6
    assert (result.width, result.height) == (64, 96)

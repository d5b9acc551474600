"""Decide whether a file is an image we can process, and normalise it to 8-bit RGB.

The format is read from magic bytes, never from the file name. Every refusal carries a reason a
person can act on; nothing here raises for bad input.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

MAX_BYTES = 50 * 1024 * 1024
MAX_PIXELS = 64_000_000
#: the normalised copy every provider and derived asset reads is at most this many pixels (the
#: hosted model's ~4 MP input; the local estimator works at 1024 px): a bigger file is decoded
#: reduced (JPEG draft) or reduced right after decoding, once, so no later step ever holds it
WORKING_MAX_PIXELS = 2048 * 2048
MIN_SIDE = 16
EXIF_ORIENTATION_TAG = 0x0112

_MAGIC = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
)


@dataclass(frozen=True)
class ValidImage:
    sha256: str
    image_id: str
    format: str
    mode: str
    width: int
    height: int
    bytes: int
    exif_orientation: int
    has_alpha: bool
    image: Image.Image  # RGB, orientation applied, alpha composited on white, ≤ working bound
    alpha: Image.Image | None = None  # "L", orientation applied, when the source has transparency
    original_width: int = 0  # the file's size after orientation (width/height: `image`'s)
    original_height: int = 0


@dataclass(frozen=True)
class Rejected:
    reason: str
    sha256: str | None = None
    bytes: int = 0
    format: str | None = None


def image_id_for(sha256: str) -> str:
    return sha256[:16]


def sniff_format(head: bytes) -> str | None:
    """JPEG/PNG/WEBP from the first bytes, or None."""
    for magic, fmt in _MAGIC:
        if head.startswith(magic):
            return fmt
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    return None


def validate_image_bytes(
    data: bytes, *, max_bytes: int = MAX_BYTES, max_pixels: int = MAX_PIXELS
) -> ValidImage | Rejected:
    size = len(data)
    if size == 0:
        return Rejected("empty file (0 bytes)")
    sha = hashlib.sha256(data).hexdigest()
    if size > max_bytes:
        return Rejected(f"file is {size:,} bytes, over the {max_bytes:,}-byte limit", sha, size)
    fmt = sniff_format(data[:16])
    if fmt is None:
        return Rejected(
            f"not a JPEG, PNG or WebP image (first bytes {data[:8].hex(' ')})", sha, size
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data), formats=[fmt])
            width, height = im.size
            if width * height > max_pixels:
                return Rejected(
                    f"{width}x{height} = {width * height:,} pixels exceeds the "
                    f"{max_pixels:,}-pixel limit (decompression-bomb guard)",
                    sha,
                    size,
                    fmt,
                )
            if width * height > WORKING_MAX_PIXELS and fmt == "JPEG":
                # decode at 1/2, 1/4 or 1/8 scale, never below the working bound
                im.draft(im.mode, _bounded_size(width, height))
            im.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        return Rejected(f"decompression-bomb guard: {exc}", sha, size, fmt)
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        return Rejected(f"corrupt or truncated {fmt}: {exc}", sha, size, fmt)
    if min(width, height) < MIN_SIDE:
        return Rejected(
            f"image is {width}x{height}, smaller than {MIN_SIDE} px on a side", sha, size, fmt
        )
    orientation = _exif_orientation(im)
    mode = im.mode
    try:
        if width * height > WORKING_MAX_PIXELS:
            upright = _transpose(_reduce(im), orientation)
        else:
            upright = ImageOps.exif_transpose(im)
        rgb, has_alpha = to_rgb(upright)
        alpha = upright.convert("RGBA").getchannel("A") if has_alpha else None
    except (OSError, ValueError) as exc:
        return Rejected(f"cannot convert {fmt} mode {mode} to RGB: {exc}", sha, size, fmt)
    ow, oh = (height, width) if orientation in _SWAPS_SIDES else (width, height)
    return ValidImage(
        sha256=sha,
        image_id=image_id_for(sha),
        format=fmt,
        mode=mode,
        width=rgb.width,
        height=rgb.height,
        bytes=size,
        exif_orientation=orientation,
        has_alpha=has_alpha,
        image=rgb,
        alpha=alpha,
        original_width=ow,
        original_height=oh,
    )


_SWAPS_SIDES = (5, 6, 7, 8)
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _bounded_size(width: int, height: int, bound: int = WORKING_MAX_PIXELS) -> tuple[int, int]:
    """The largest size with the same aspect ratio and at most `bound` pixels."""
    scale = min(1.0, (bound / (width * height)) ** 0.5)
    return max(1, int(width * scale)), max(1, int(height * scale))


def _reduce(im: Image.Image) -> Image.Image:
    """`im` at most WORKING_MAX_PIXELS: an integer box reduction (cheap, in the decoded mode's
    own bytes, so a 62 MP bilevel image never becomes a 190 MB RGB one), then an exact resize."""
    if im.mode == "1":
        im = im.convert("L")
    elif im.mode in ("P", "PA") or "transparency" in im.info:
        im = im.convert("RGBA")  # a colour key or palette alpha would not survive the reduction
    elif im.mode == "CMYK":
        im = im.convert("RGB")
    elif im.mode.startswith("I;16"):
        im = im.convert("I")
    elif im.mode not in ("L", "LA", "RGB", "RGBA", "I", "F"):
        im = im.convert("RGBA")
    target = _bounded_size(*im.size)
    factor = min(im.width // target[0], im.height // target[1])
    if factor > 1:
        im = im.reduce(factor)
    if im.width * im.height > WORKING_MAX_PIXELS:
        im = im.resize(_bounded_size(*im.size), Image.Resampling.BOX)
    return im


def _transpose(im: Image.Image, orientation: int) -> Image.Image:
    """What `ImageOps.exif_transpose` does, for an image already separated from its EXIF."""
    method = _TRANSPOSE.get(orientation)
    return im if method is None else im.transpose(method)


def _exif_orientation(im: Image.Image) -> int:
    try:
        value = int(im.getexif().get(EXIF_ORIENTATION_TAG, 1))
    except Exception:  # noqa: BLE001 - malformed EXIF must not reject an otherwise good image
        return 1
    return value if 1 <= value <= 8 else 1


def to_rgb(im: Image.Image) -> tuple[Image.Image, bool]:
    """8-bit RGB from any Pillow mode; transparent pixels are composited on white."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        hi = 65535.0 if im.mode.startswith("I;16") or arr.max() > 255 else 255.0
        arr8 = np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr8, "L").convert("RGB"), False
    has_alpha = (
        im.mode in ("RGBA", "LA", "PA")
        or (im.mode == "P" and "transparency" in im.info)
        or (im.mode in ("RGB", "L") and "transparency" in im.info)
    )
    if has_alpha:
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB"), True
    if im.mode == "CMYK":
        return im.convert("RGB"), False
    return (im if im.mode == "RGB" else im.convert("RGB")), False

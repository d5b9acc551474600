"""Depth map encoding: float32 (larger = nearer) ⇄ 16-bit PNG.

PNG convention (stated once, documented in the README):
- 16-bit grayscale; 0 = invalid/unknown pixel; 1..65535 = far..near, linear in the provider's
  relative inverse depth between the map's own min (→ 1) and max (→ 65535);
- the pre-normalisation min/max are kept in the `depth_maps` table to undo the scaling.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

PNG_MAX = 65535


def to_nearness(depth: np.ndarray, metric: bool) -> np.ndarray:
    """Relative inverse depth (larger = nearer); metric depth in metres is inverted."""
    d = np.asarray(depth, dtype=np.float32)
    if not metric:
        return d
    out = np.full(d.shape, np.nan, dtype=np.float32)
    ok = np.isfinite(d) & (d > 0)
    out[ok] = 1.0 / d[ok]
    return out


def quantize(nearness: np.ndarray) -> tuple[np.ndarray, float, float]:
    """uint16 image and the (min, max) of the valid input values."""
    d = np.asarray(nearness, dtype=np.float64)
    valid = np.isfinite(d)
    if not valid.any():
        return np.zeros(d.shape, np.uint16), float("nan"), float("nan")
    lo, hi = float(d[valid].min()), float(d[valid].max())
    span = hi - lo
    out = np.zeros(d.shape, np.uint16)
    if span <= 0:
        out[valid] = (PNG_MAX + 1) // 2
    else:
        out[valid] = np.round(1 + (d[valid] - lo) / span * (PNG_MAX - 1)).astype(np.uint16)
    return out, lo, hi


def encode_png16(q: np.ndarray) -> bytes:
    if q.dtype != np.uint16 or q.ndim != 2:
        raise ValueError(f"expected a 2-D uint16 array, got {q.dtype} {q.shape}")
    buf = io.BytesIO()
    Image.fromarray(q).save(buf, format="PNG", optimize=False, compress_level=3)
    return buf.getvalue()


def decode_png16(data: bytes) -> np.ndarray:
    """Float32 in [0, 1] (larger = nearer) with NaN where the PNG holds 0 (invalid)."""
    with Image.open(io.BytesIO(data)) as im:
        arr = np.asarray(im).astype(np.float32)
    out = (arr - 1.0) / (PNG_MAX - 1)
    out[arr == 0] = np.nan
    return out


def depth_image_to_nearness(data: bytes) -> np.ndarray:
    """A provider's returned depth image (8/16-bit PNG or JPG, white = near) as float32 [0, 1]."""
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        if im.mode in ("I;16", "I;16B", "I;16L", "I"):
            arr = np.asarray(im, dtype=np.float32)
            return arr / (PNG_MAX if arr.max() > 255 else 255.0)
        return np.asarray(im.convert("L"), dtype=np.float32) / 255.0

"""The images on either side of a prediction, as pure functions: the control image sent to the host
(≤ 4 MP, ≤ 50 MB, a JPEG data URI) and the output read back (format sniffed from its bytes, depth
decoded to float32 nearness in [0, 1], larger = nearer)."""

from __future__ import annotations

import base64
import io
import math

import numpy as np
from PIL import Image

from flux_depth_assets.depth.encoding import depth_image_to_nearness

MAX_INPUT_PIXELS = 4_000_000  # the host takes "up to about 4 megapixels"
MAX_INPUT_BYTES = 50 * 1024 * 1024
JPEG_QUALITIES = (95, 90, 80, 70)
PREPROCESS_VERSION = "1"  # bump when the control image preparation changes the host's output


def prepare_control_image(image: Image.Image) -> tuple[str, tuple[int, int]]:
    """A JPEG data URI of `image` downscaled (aspect kept) to ≤ 4 MP and ≤ 50 MB; and its size."""
    im = image if image.mode == "RGB" else image.convert("RGB")
    w, h = im.size
    if w * h > MAX_INPUT_PIXELS:
        scale = math.sqrt(MAX_INPUT_PIXELS / (w * h))
        size = (max(1, math.floor(w * scale)), max(1, math.floor(h * scale)))
        while size[0] * size[1] > MAX_INPUT_PIXELS:  # floor rounding can still land one row over
            size = (size[0], size[1] - 1)
        im = im.resize(size, Image.Resampling.BICUBIC, reducing_gap=3.0)
    for quality in JPEG_QUALITIES:
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=quality)
        if buf.tell() <= MAX_INPUT_BYTES:
            break
    else:
        raise ValueError("control image does not fit in 50 MB even at JPEG quality 70")
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii"), im.size


def sniff_image_format(data: bytes) -> str | None:
    """`png`, `jpg` or `webp` from the magic bytes (hosts' content types are not trusted)."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def decode_depth(data: bytes, size: tuple[int, int] | None) -> np.ndarray:
    """float32 nearness in [0, 1] (white = near) at `size` (w, h) when given."""
    nearness = depth_image_to_nearness(data)
    if size is not None and nearness.shape != (size[1], size[0]):
        resized = Image.fromarray(nearness.astype(np.float32), "F").resize(
            size, Image.Resampling.BILINEAR
        )
        nearness = np.asarray(resized, dtype=np.float32)
    return np.ascontiguousarray(nearness, dtype=np.float32)

"""The fake host's "model": a plausible, deterministic depth image of a control image.

depth = 0.65 × vertical position (bottom of the frame = near) + 0.35 × smoothed luminance,
8-bit grayscale, white = near, at the control image's size. With a non-empty prompt the fake
returns an RGB "render" instead: the control image shaded by that depth and tinted by the prompt,
which is what a depth-conditioned generator would hand back in `render` mode.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io

import numpy as np
from PIL import Image, ImageFilter

MAX_WORK_SIDE = 256  # the depth is computed at this size, then resized to the control image's size


class ControlImageError(ValueError):
    """The control image could not be decoded (bad data URI, not an image, too large)."""


def decode_data_uri(uri: str, max_bytes: int) -> bytes:
    """Bytes of a `data:<mime>;base64,<payload>` URI."""
    head, sep, payload = uri.partition(",")
    if not sep or not head.startswith("data:") or ";base64" not in head:
        raise ControlImageError("control_image is not a base64 data URI")
    if len(payload) > max_bytes * 4 // 3 + 8:
        raise ControlImageError(f"control_image is larger than {max_bytes} bytes")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ControlImageError(f"control_image has invalid base64: {exc}") from None
    return data


def open_image(data: bytes, max_pixels: int) -> Image.Image:
    try:
        im = Image.open(io.BytesIO(data))
        if im.format not in ("JPEG", "PNG", "WEBP"):
            raise ControlImageError(f"control_image format {im.format} is not jpeg/png/webp")
        if im.width * im.height > max_pixels:
            raise ControlImageError(
                f"control_image is {im.width}x{im.height}, more than {max_pixels} pixels"
            )
        im.load()
    except ControlImageError:
        raise
    except Exception as exc:  # noqa: BLE001 - any decoder error is a bad input
        raise ControlImageError(
            f"control_image could not be decoded: {type(exc).__name__}"
        ) from None
    return im.convert("RGB")


def gradient_image(seed_text: str, size: tuple[int, int] = (512, 512)) -> Image.Image:
    """Stand-in for a control image the fake will not fetch (a non-loopback URL)."""
    w, h = size
    phase = int.from_bytes(hashlib.sha256(seed_text.encode()).digest()[:1], "big") / 255.0
    y = np.linspace(0, 255, h, dtype=np.float32)[:, None].repeat(w, axis=1)
    x = np.linspace(0, 64 * phase, w, dtype=np.float32)[None, :].repeat(h, axis=0)
    g = np.clip(y * 0.8 + x, 0, 255).astype(np.uint8)
    return Image.fromarray(np.stack([g, g, g], axis=-1), "RGB")


def fake_depth(image: Image.Image) -> Image.Image:
    """8-bit grayscale depth (white = near) at `image`'s size."""
    w, h = image.size
    scale = min(1.0, MAX_WORK_SIDE / max(w, h))
    sw, sh = max(1, round(w * scale)), max(1, round(h * scale))
    small = (
        image.convert("L").resize((sw, sh), Image.Resampling.BILINEAR)
        if scale < 1
        else image.convert("L")
    )
    blurred = small.filter(ImageFilter.GaussianBlur(radius=max(1.0, max(sw, sh) / 48)))
    luma = np.asarray(blurred, dtype=np.float32) / 255.0
    ramp = np.linspace(0.0, 1.0, sh, dtype=np.float32)[:, None]
    depth = 0.65 * ramp + 0.35 * luma
    lo, hi = float(depth.min()), float(depth.max())
    depth = (depth - lo) / (hi - lo) if hi > lo else np.full_like(depth, 0.5)
    out = Image.fromarray(np.round(depth * 255).astype(np.uint8), "L")
    return out.resize((w, h), Image.Resampling.BILINEAR) if (sw, sh) != (w, h) else out


def fake_render(image: Image.Image, depth: Image.Image, prompt: str) -> Image.Image:
    """An RGB "re-render": the control image shaded by depth and tinted by the prompt."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
    d = np.asarray(depth, dtype=np.float32)[..., None] / 255.0
    tint = np.frombuffer(hashlib.sha256(prompt.encode()).digest()[:3], np.uint8).astype(np.float32)
    out = rgb * (0.45 + 0.55 * d) * 0.8 + tint * 0.2
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8), "RGB")


def encode(image: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    if fmt == "jpg":
        image.save(buf, format="JPEG", quality=92)
    else:
        image.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def make_output(image: Image.Image, prompt: str, fmt: str, always_render: bool = False) -> bytes:
    """A depth map for an empty prompt, else a render; `always_render`: a render every time."""
    depth = fake_depth(image)
    render = always_render or bool(prompt.strip())
    return encode(fake_render(image, depth, prompt) if render else depth, fmt)

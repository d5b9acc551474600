"""The animated preview of a sprite set: an endless camera sway, as WebP or GIF.

Drawn from the same alphas and parallax factors as the layer files (see `depth.sprites`), so it
shows what a parallax player would, at a glance and without one.
"""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np
from PIL import Image

from flux_depth_assets.config.models import SpriteSettings
from flux_depth_assets.depth.layers import Box

#: sway amplitude of the nearest layer in the preview, as a fraction of the preview width
SWAY_AMPLITUDE = 0.03
PREVIEW_FRAME_MS = 60


def sway_preview(rgb: np.ndarray, background: np.ndarray,
                 alphas: list[tuple[np.ndarray, Box] | None],
                 factors: list[float], settings: SpriteSettings) -> tuple[bytes, dict[str, Any]]:
    """An endless camera sway made from the layers, cropped so no frame shows past the border.

    The scene is scaled so that after cropping a margin larger than the sway on every side the
    preview fits `preview_max_side`; each frame draws the (still) background, then every layer
    moved by `factor × sway` with sub-pixel (bilinear) shifts.
    """
    h, w = background.shape[:2]
    long_out = min(settings.preview_max_side, max(h, w))
    amp = SWAY_AMPLITUDE * long_out  # nearest layer's horizontal sway, output pixels
    margin = math.ceil(amp) + 1
    s = (long_out + 2 * margin) / max(h, w)  # scene → canvas scale
    cw, ch = max(1, round(w * s)), max(1, round(h * s))
    pw, ph = max(1, cw - 2 * margin), max(1, ch - 2 * margin)
    if min(pw, ph) < 8:  # a sliver image: no cropping, no sway
        margin, amp, pw, ph = 0, 0.0, cw, ch
    small_rgb = Image.fromarray(rgb, "RGB").resize((cw, ch), Image.Resampling.BOX)
    bg = Image.fromarray(background, "RGB").resize((cw, ch), Image.Resampling.BOX).convert("RGBA")
    bg_view = bg.crop((margin, margin, margin + pw, margin + ph))
    layers = []
    for k, item in enumerate(alphas):
        if k == 0 or item is None:
            continue
        alpha, (x, y, bw, bh) = item
        canvas = np.zeros((h, w), dtype=np.uint8)
        canvas[y:y + bh, x:x + bw] = np.rint(alpha * 255.0).astype(np.uint8)
        a_small = Image.fromarray(canvas, "L").resize((cw, ch), Image.Resampling.BOX)
        layer = small_rgb.copy()
        layer.putalpha(a_small)
        cbox = a_small.getbbox()  # where this layer is visible on the canvas
        if cbox is not None:
            layers.append((layer, factors[k], cbox))
    frames = []
    n = settings.preview_frames
    for t in range(n):
        th = 2.0 * math.pi * t / n
        dx, dy = amp * math.sin(th), 0.3 * amp * math.cos(th)
        frame = bg_view.copy()
        for layer, f, (cx0, cy0, cx1, cy1) in layers:
            # output pixel (u, v) shows canvas point (u + ox, v + oy); |f·dx|, |f·dy| < margin
            ox, oy = margin - f * dx, margin - f * dy
            u0, v0 = max(0, math.floor(cx0 - ox) - 1), max(0, math.floor(cy0 - oy) - 1)
            u1, v1 = min(pw, math.ceil(cx1 - ox) + 1), min(ph, math.ceil(cy1 - oy) + 1)
            if u1 <= u0 or v1 <= v0:
                continue
            tile = layer.resize((u1 - u0, v1 - v0), Image.Resampling.BILINEAR,
                                box=(u0 + ox, v0 + oy, u1 + ox, v1 + oy))
            frame.alpha_composite(tile, dest=(u0, v0))
        frames.append(frame.convert("RGB"))
    buf = io.BytesIO()
    if settings.preview_format == "webp":
        frames[0].save(buf, format="WEBP", save_all=True, append_images=frames[1:],
                       duration=PREVIEW_FRAME_MS, loop=0, quality=70, method=0)
    else:
        # one shared palette, no dithering: Pillow's per-frame quantizer is ~20× slower
        palette = frames[0].quantize(colors=255, method=Image.Quantize.FASTOCTREE)
        pframes = [f.quantize(palette=palette, dither=Image.Dither.NONE) for f in frames]
        pframes[0].save(buf, format="GIF", save_all=True, append_images=pframes[1:],
                        duration=PREVIEW_FRAME_MS, loop=0, optimize=False, disposal=1)
    info = {"format": settings.preview_format, "width": pw, "height": ph, "frames": n,
            "frame_ms": PREVIEW_FRAME_MS, "amplitude_px": round(amp, 2),
            "crop_px": round(margin / s, 2),
            "motion": "ellipse: dx = A sin(t), dy = 0.3 A cos(t); layer offset = parallax_factor × (dx, dy)"}
    return buf.getvalue(), info

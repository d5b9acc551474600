"""Push-pull inpainting: fills the background where nearer layers hide it, fast at any size."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image


def as_rgb8(rgb: np.ndarray) -> np.ndarray:
    """`rgb` as an array; a ValueError unless it is uint8 (H, W, 3)."""
    img = np.asarray(rgb)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected uint8 (H, W, 3) rgb, got {img.dtype} {img.shape}")
    return img


def _down2(x: np.ndarray) -> np.ndarray:
    """Sum of 2×2 blocks (zero-padded to even size)."""
    h, w = x.shape[:2]
    if h % 2 or w % 2:
        pad = [(0, h % 2), (0, w % 2)] + [(0, 0)] * (x.ndim - 2)
        x = np.pad(x, pad)
    return x[0::2, 0::2] + x[1::2, 0::2] + x[0::2, 1::2] + x[1::2, 1::2]


def _up2(x: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear ×2 upsampling (pixel centres aligned), cropped to `shape`."""
    def axis_up(a: np.ndarray, axis: int) -> np.ndarray:
        a = np.moveaxis(a, axis, 0)
        prev = np.concatenate([a[:1], a[:-1]])
        nxt = np.concatenate([a[1:], a[-1:]])
        out = np.empty((a.shape[0] * 2,) + a.shape[1:], dtype=a.dtype)
        out[0::2] = 0.75 * a + 0.25 * prev
        out[1::2] = 0.75 * a + 0.25 * nxt
        return np.moveaxis(out, 0, axis)
    y = axis_up(axis_up(x, 0), 1)
    return y[: shape[0], : shape[1]]


def _push_pull(p: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Colour everywhere from premultiplied colour `p` (H, W, 3) and weights `w` in [0, 1]."""
    levels: list[tuple[np.ndarray, np.ndarray]] = []
    while max(w.shape) > 1:
        levels.append((p, w))
        sw, sp = _down2(w), _down2(p)
        w = np.minimum(sw, 1.0)
        p = (sp * (w / np.maximum(sw, 1e-12))[..., None]).astype(np.float32)
    full = p / np.maximum(w, 1e-12)[..., None]
    for p_l, w_l in reversed(levels):
        full = p_l + (1.0 - w_l)[..., None] * _up2(full, w_l.shape)
    return full.astype(np.float32)


def _block_sum(x: np.ndarray, f: int, hs: int, ws: int) -> np.ndarray:
    """Sum of f×f blocks of a uint8 (H, W[, C]) array zero-padded to (hs·f, ws·f), as uint32."""
    h, w = x.shape[:2]
    if (h, w) != (hs * f, ws * f):
        padded = np.zeros((hs * f, ws * f) + x.shape[2:], dtype=x.dtype)
        padded[:h, :w] = x
        x = padded
    rest = int(np.prod(x.shape[2:], dtype=np.int64))
    rows = x.reshape(hs, f, ws * f * rest).sum(axis=1, dtype=np.uint32)  # contiguous: fast
    return rows.reshape((hs, ws, f) + x.shape[2:]).sum(axis=2, dtype=np.uint32)


def fill_holes(rgb: np.ndarray, known: np.ndarray, fill: np.ndarray | None = None,
               work_side: int = 512) -> np.ndarray:
    """Push-pull inpainting: uint8 (H, W, 3), `rgb` except at `fill` pixels (default: ~known).

    Known colours are area-averaged onto a grid of at most `work_side` cells on the long side
    (a cell with any known pixel counts as known), averaged further into a pyramid, then pushed
    back down, each level's gaps taking the bilinearly upsampled coarser colour. The result is
    brought back to full size bilinearly and replaces `rgb` at the `fill` pixels only.
    """
    img = as_rgb8(rgb)
    k = np.asarray(known, dtype=bool)
    target = ~k if fill is None else np.asarray(fill, dtype=bool)
    out = img.copy()
    if not target.any():
        return out
    if not k.any():
        out[target] = np.rint(img.reshape(-1, 3).mean(0)).astype(np.uint8)
        return out
    h, w = k.shape
    f = max(1, math.ceil(max(h, w) / work_side))
    hs, ws = math.ceil(h / f), math.ceil(w / f)
    sw = _block_sum(k.view(np.uint8), f, hs, ws).astype(np.float32)
    sp = _block_sum(img * k[..., None], f, hs, ws).astype(np.float32)
    w0 = np.minimum(sw, 1.0)
    p0 = (sp * (w0 / np.maximum(sw, 1e-12))[..., None]).astype(np.float32)
    small = np.clip(np.rint(_push_pull(p0, w0)), 0, 255).astype(np.uint8)
    if f > 1:
        up = np.asarray(Image.fromarray(small, "RGB").resize((ws * f, hs * f), Image.Resampling.BILINEAR))[:h, :w]
    else:
        up = small
    np.copyto(out, up, where=target[..., None])
    return out

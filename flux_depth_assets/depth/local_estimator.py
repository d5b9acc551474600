"""The embedded offline depth estimator: monocular cues, no weights, deterministic.

Output: float32 (H, W) relative inverse depth in [0, 1], larger = nearer.
Cues: a ground-plane prior (lower in the frame = nearer), propagated edge-aware with a guided
filter so depth is flat inside regions and changes at colour edges.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage


def _box(x: np.ndarray, r: int) -> np.ndarray:
    return ndimage.uniform_filter(x, size=2 * r + 1, mode="reflect")


def guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """He et al.'s guided filter with a gray guide: smooths `src` but keeps `guide`'s edges."""
    mean_i, mean_p = _box(guide, radius), _box(src, radius)
    cov_ip = _box(guide * src, radius) - mean_i * mean_p
    var_i = _box(guide * guide, radius) - mean_i * mean_i
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    return _box(a, radius) * guide + _box(b, radius)


def estimate_depth(image: Image.Image, max_side: int = 512) -> np.ndarray:
    rgb = image.convert("RGB")
    w, h = rgb.size
    scale = min(1.0, max_side / max(w, h))
    small = rgb.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BILINEAR) \
        if scale < 1 else rgb
    gray = np.asarray(small.convert("L"), dtype=np.float32) / 255.0
    sh, sw = gray.shape
    prior = np.repeat(np.linspace(0.0, 1.0, sh, dtype=np.float32)[:, None], sw, axis=1)
    radius = max(2, round(min(sh, sw) / 24))
    depth = guided_filter(gray, prior, radius, 1e-3)
    depth = guided_filter(gray, depth, radius, 1e-3)
    lo, hi = float(depth.min()), float(depth.max())
    depth = (depth - lo) / (hi - lo) if hi > lo else np.zeros_like(depth)
    if (sw, sh) != (w, h):
        depth = np.asarray(Image.fromarray(depth.astype(np.float32), "F").resize((w, h), Image.BILINEAR))
    return np.clip(depth, 0.0, 1.0).astype(np.float32)

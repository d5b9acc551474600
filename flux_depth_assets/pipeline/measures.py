"""What the depth and normal checks measure, as plain functions of arrays (no Dagster, no I/O).

Each measure is chosen so that a broken output fails whatever the provider, including the
local estimator whose maps are always min-max normalised and never invalid:

- `edge_lift`: depth edges sit on image edges. Among the strongest depth-gradient pixels, how
  much more often than chance an image edge lies within `radius` px. A real map (any provider)
  puts object boundaries on colour boundaries; noise or a shifted/unrelated map gives ~1.
- `vertical_prior_share`: how much of the map's variance one value per row explains. 1.0 is a
  pure top-to-bottom ramp, what an estimator falls back to when it sees nothing in the image.
- `bottom_minus_top`: mean nearness of the bottom third minus the top third. Photos are mostly
  nearer at the bottom (ground) than at the top; a catalog whose maps say the opposite on most
  images has its convention inverted (far = larger).
- `normal_roughness_deg`: median angle between each normal and its neighbourhood mean. Normals
  from a smooth surface vary slowly; normals dominated by texture noise turn at every pixel.

Arrays are reduced to at most `MAX_SIDE` px first, so a check costs the same on any image size.
"""

from __future__ import annotations

import warnings

import cv2
import numpy as np
from scipy import ndimage

MAX_SIDE = 256


def reduce(a: np.ndarray, max_side: int = MAX_SIDE) -> np.ndarray:
    """Block-mean downscale by an integer factor so the longer side is ≤ `max_side`."""
    h, w = a.shape[:2]
    f = int(np.ceil(max(h, w) / max_side))
    if f <= 1:
        return a.astype(np.float32)
    h2, w2 = h // f * f, w // f * f
    b = np.ascontiguousarray(a[:h2, :w2], dtype=np.float32)
    # OpenCV's area resize by an integer factor is the exact block mean, in one SIMD pass
    # (numpy's reshape-and-mean over two strided axes took ~6 ms per 1 MP map)
    return np.asarray(cv2.resize(b, (w2 // f, h2 // f), interpolation=cv2.INTER_AREA))


def luminance(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.float32)
    return rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32) if rgb.ndim == 3 else rgb


def _gradient(a: np.ndarray) -> np.ndarray:
    gy, gx = np.gradient(a)
    return np.hypot(gx, gy)


def _unit(a: np.ndarray) -> np.ndarray:
    lo, hi = float(a.min()), float(a.max())
    return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)


def edge_lift(
    nearness: np.ndarray,
    rgb: np.ndarray,
    valid: np.ndarray | None = None,
    *,
    top: float = 0.1,
    radius: int = 2,
) -> float:
    """P(image edge near a depth edge) / P(image edge); 0 when the map has no edges at all."""
    if nearness.shape[:2] != rgb.shape[:2]:
        raise ValueError(f"depth {nearness.shape[:2]} and image {rgb.shape[:2]} differ in size")
    d = reduce(np.where(valid, nearness, 0) if valid is not None else nearness)
    g = reduce(luminance(rgb))
    ok = reduce(valid.astype(np.float32)) > 0.99 if valid is not None else np.ones(d.shape, bool)
    ok = ndimage.binary_erosion(ok, iterations=1)  # the invalid region's border is not an edge
    gd, gi = _gradient(_unit(d)), _gradient(g / 255.0)
    if ok.sum() < 16 or float(gd[ok].max()) <= 1e-6:
        return 0.0
    depth_edges = ok & (gd >= np.quantile(gd[ok], 1 - top)) & (gd > 1e-6)
    image_edges = ndimage.binary_dilation(gi >= np.quantile(gi[ok], 1 - top), iterations=radius)
    base = float(image_edges[ok].mean())
    return float(image_edges[depth_edges].mean()) / base if base > 0 else 0.0


def vertical_prior_share(nearness: np.ndarray, valid: np.ndarray | None = None) -> float:
    """Share of the map's variance explained by its row means (1.0 for a flat or pure ramp)."""
    d = reduce(nearness)
    ok = reduce(valid.astype(np.float32)) > 0.5 if valid is not None else np.ones(d.shape, bool)
    if ok.sum() < 16:
        return 1.0
    masked = np.where(ok, d, np.nan)
    with warnings.catch_warnings():  # an all-invalid row has no mean: NaN, excluded below
        warnings.simplefilter("ignore", RuntimeWarning)
        rows = np.nanmean(masked, axis=1, keepdims=True)
    total = float(np.var(d[ok]))
    if total <= 1e-12:
        return 1.0
    explained = np.broadcast_to(rows, d.shape)[ok]  # rows with a valid pixel have a mean
    return float(np.clip(np.var(explained) / total, 0.0, 1.0))


def bottom_minus_top(nearness: np.ndarray, valid: np.ndarray | None = None) -> float:
    """Mean nearness (0..1 scale) of the bottom third minus the top third of valid pixels."""
    d = _unit(reduce(nearness))
    ok = reduce(valid.astype(np.float32)) > 0.5 if valid is not None else np.ones(d.shape, bool)
    third = max(1, d.shape[0] // 3)
    top, bottom = d[:third][ok[:third]], d[-third:][ok[-third:]]
    if not top.size or not bottom.size:
        return 0.0
    return float(bottom.mean() - top.mean())


def normal_roughness_deg(normals: np.ndarray, size: int = 5) -> float:
    """Median angle (degrees) between each unit normal and the mean normal around it."""
    n = reduce(normals)
    n = n / np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-6)
    mean = np.stack(
        [ndimage.uniform_filter(n[..., c], size=size, mode="nearest") for c in range(3)], axis=-1
    )
    mean /= np.maximum(np.linalg.norm(mean, axis=-1, keepdims=True), 1e-6)
    cos = np.clip((n * mean).sum(axis=-1), -1.0, 1.0)
    return float(np.degrees(np.median(np.arccos(cos))))

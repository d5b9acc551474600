"""The embedded offline depth estimator: monocular cues, no weights, deterministic.

Output: float32 (H, W) relative inverse depth in [0, 1], larger = nearer, at the input image's size.

Method (see docs/depth_quality.md for the figures and where it fails):

1. **Working image.** The image is reduced to `work_side` pixels on its long side (a fixed size, so the
   result does not depend on the input resolution) and turned into an opponent colour space
   (luminance, red-green, yellow-blue).
2. **Occlusion edges.** Colour gradient magnitude after a Gaussian blur (which suppresses fine texture),
   normalised by a high percentile of the image's own gradients and soft-thresholded, so only the
   image's strongest boundaries count.
3. **Geodesic ground-plane prior.** Nearness is the geodesic distance from the top border of the frame,
   where every step costs its length (the plain "lower in the frame = nearer" prior) plus the edge
   strength it crosses. Inside a region depth follows the vertical prior; crossing a boundary on the way
   down from the top makes everything beyond it nearer (an object in front of the background, a
   product on a plain backdrop, the table in front of the wall). The distance is computed for a few
   edge weights spanning a decade and averaged, which makes the result far less sensitive to how
   textured a scene is than any single weight.
4. **Horizon.** Depth above a horizon line (a fraction of the normalised distance) is flattened: the
   far background is a backdrop, not an infinitely receding plane.
5. **Edge-aware upsampling.** A guided filter (He et al.) fitted at the working size and applied at
   the output size, so depth steps sit on the full-resolution colour edges.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

_SQRT2 = np.float32(np.sqrt(2.0))


@dataclass(frozen=True)
class EstimatorParams:
    """Every setting that changes the estimator's output (all of them go into the provider's cache key)."""

    work_side: int = 192  # long side of the working image, pixels
    edge_sigma: float = 2.0  # Gaussian blur before the gradient, working-image pixels
    edge_percentile: float = 95.0  # gradients are divided by this percentile of the image's own
    edge_threshold: float = 0.5  # normalised gradients below this are not boundaries
    edge_weights: tuple[float, ...] = (0.03, 0.1, 0.3)  # cost of a full-strength edge pixel, per weight
    horizon: float = 0.1  # normalised nearness below which everything is one backdrop
    guide_radius: int = 2  # guided-upsampling window radius, working-image pixels
    guide_eps: float = 1e-3  # guided-upsampling regulariser (larger = less edge transfer)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["edge_weights"] = list(self.edge_weights)
        return d


DEFAULT_PARAMS = EstimatorParams()


# --------------------------------------------------------------------------- building blocks


def _resize_rgb(image: Image.Image, long_side: int) -> Image.Image:
    w, h = image.size
    scale = long_side / max(w, h)
    if scale >= 1.0:
        return image
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return image.resize(size, Image.Resampling.BILINEAR, reducing_gap=3.0)


def opponent_colour(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) RGB in [0, 1] → (H, W, 3) luminance, red-green, yellow-blue (roughly perceptual weights)."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    lum = 0.299 * r + 0.587 * g + 0.114 * b
    return np.stack([lum, 0.7 * (r - g), 0.35 * (r + g - 2.0 * b)], axis=-1).astype(np.float32)


def edge_strength(colour: np.ndarray, sigma: float, percentile: float, threshold: float) -> np.ndarray:
    """Boundary strength in [0, 1]: blurred colour-gradient magnitude, normalised and soft-thresholded."""
    mag2 = np.zeros(colour.shape[:2], dtype=np.float32)
    for k in range(colour.shape[2]):
        ch = ndimage.gaussian_filter(colour[..., k], sigma) if sigma > 0 else colour[..., k]
        mag2 += ndimage.sobel(ch, axis=0) ** 2 + ndimage.sobel(ch, axis=1) ** 2
    mag = np.sqrt(mag2) / 8.0
    scale = float(np.percentile(mag, percentile))
    if scale <= 1e-6:  # a flat image has no boundaries
        return np.zeros_like(mag)
    e = np.minimum(mag / scale, 1.0)
    return np.where(e > threshold, e, 0.0).astype(np.float32)


def geodesic_from_top(cost: np.ndarray, step: float, sweeps: int = 2) -> np.ndarray:
    """Geodesic distance from the top row on an 8-connected grid.

    A step between neighbours p, q of length l (1 or √2) costs ``l * (step + (cost[p] + cost[q]) / 2)``.
    Computed with alternating raster sweeps (down, up, right, left), each vectorised along a row or a
    column; two rounds converge for the paths that matter here (they turn at most a few times).
    """
    h, w = cost.shape
    c = cost.astype(np.float32)
    step32 = np.float32(step)
    d = np.full((h, w), np.inf, dtype=np.float32)
    d[0] = 0.0
    for _ in range(sweeps):
        for rows, prev in ((range(1, h), -1), (range(h - 2, -1, -1), 1)):
            for y in rows:
                _relax(d[y], d[y + prev], c[y], c[y + prev], step32)
        dt, ct = d.T, c.T  # views: columns become rows
        for cols, prev in ((range(1, w), -1), (range(w - 2, -1, -1), 1)):
            for x in cols:
                _relax(dt[x], dt[x + prev], ct[x], ct[x + prev], step32)
    return d


def _relax(cur: np.ndarray, nb: np.ndarray, c_cur: np.ndarray, c_nb: np.ndarray,
           step: np.float32) -> None:
    """Lower `cur` (one row/column, in place) through its three neighbours in the adjacent line `nb`."""
    straight = nb + (c_cur + c_nb) * np.float32(0.5) + step
    np.minimum(cur, straight, out=cur)
    if cur.shape[0] > 1:
        diag_step = step * _SQRT2
        a = nb[:-1] + (c_cur[1:] + c_nb[:-1]) * (np.float32(0.5) * _SQRT2) + diag_step
        np.minimum(cur[1:], a, out=cur[1:])
        b = nb[1:] + (c_cur[:-1] + c_nb[1:]) * (np.float32(0.5) * _SQRT2) + diag_step
        np.minimum(cur[:-1], b, out=cur[:-1])


def _box(x: np.ndarray, r: int) -> np.ndarray:
    return ndimage.uniform_filter(x, size=2 * r + 1, mode="reflect")


def _resize_f32(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a float32 map to (width, height)."""
    if (x.shape[1], x.shape[0]) == size:
        return x
    return np.asarray(Image.fromarray(np.ascontiguousarray(x, dtype=np.float32), "F")
                      .resize(size, Image.Resampling.BILINEAR))


def guided_upsample(src: np.ndarray, guide_lo: np.ndarray, guide_hi: np.ndarray,
                    radius: int, eps: float) -> np.ndarray:
    """Fast guided filter: fit q = a·I + b at the low resolution, apply (a, b) at the high resolution."""
    mean_i, mean_p = _box(guide_lo, radius), _box(src, radius)
    cov_ip = _box(guide_lo * src, radius) - mean_i * mean_p
    var_i = _box(guide_lo * guide_lo, radius) - mean_i * mean_i
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    size = (guide_hi.shape[1], guide_hi.shape[0])
    a_hi = _resize_f32(_box(a, radius).astype(np.float32), size)
    b_hi = _resize_f32(_box(b, radius).astype(np.float32), size)
    return a_hi * guide_hi + b_hi


# --------------------------------------------------------------------------- the estimator


def nearness_at_working_size(rgb_small: np.ndarray, params: EstimatorParams = DEFAULT_PARAMS) -> np.ndarray:
    """Steps 1–4 on an (h, w, 3) float RGB array in [0, 1]; returns (h, w) nearness in [0, 1]."""
    h = rgb_small.shape[0]
    colour = opponent_colour(rgb_small)
    edges = edge_strength(colour, params.edge_sigma, params.edge_percentile, params.edge_threshold)
    step = 1.0 / max(h - 1, 1)
    acc = np.zeros(edges.shape, dtype=np.float32)
    for weight in params.edge_weights:
        dist = geodesic_from_top(edges * np.float32(weight), step)
        top = float(dist.max())
        if top > 0:
            acc += dist / np.float32(top)
    near = acc / np.float32(max(len(params.edge_weights), 1))
    if params.horizon > 0:
        near = np.maximum(near - np.float32(params.horizon), 0.0) / np.float32(1.0 - params.horizon)
    return near.astype(np.float32)


def _normalise(x: np.ndarray) -> np.ndarray:
    lo, hi = float(x.min()), float(x.max())
    if not hi > lo:
        return np.zeros(x.shape, dtype=np.float32)
    return ((x - lo) / (hi - lo)).astype(np.float32)


def _gray(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("L"), dtype=np.float32) / np.float32(255.0)


def estimate_depth(image: Image.Image, max_side: int = 1024,
                   params: EstimatorParams = DEFAULT_PARAMS) -> np.ndarray:
    """Relative inverse depth (float32, (H, W) of `image`, in [0, 1], larger = nearer).

    `max_side` caps the resolution at which the edge-aware upsampling runs; above it the result is
    resized bilinearly to the full size (bounds time and memory on very large images).
    """
    if params.horizon >= 1.0 or params.horizon < 0:
        raise ValueError(f"horizon must be in [0, 1), got {params.horizon}")
    rgb = image.convert("RGB")
    w, h = rgb.size
    small = _resize_rgb(rgb, params.work_side)
    near = nearness_at_working_size(np.asarray(small, dtype=np.float32) / np.float32(255.0), params)
    if small.size == rgb.size:
        out = near
    else:
        mid = _resize_rgb(rgb, max(max_side, params.work_side))
        out = guided_upsample(near, _gray(small), _gray(mid), params.guide_radius, params.guide_eps)
        out = _resize_f32(out.astype(np.float32), (w, h))
    return np.clip(_normalise(out), 0.0, 1.0).astype(np.float32)

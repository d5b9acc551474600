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
4. **Horizon.** Depth near the top of the distance range is compressed smoothly (a softplus knee
   at `horizon`): the far background recedes slowly, like a backdrop, without the flat clamped band
   (and the seam it made in normal maps) of a hard cut.
5. **Subjects** (`depth.subjects`). Faces found by OpenCV's cascades imply a subject standing in
   front of what is behind it; GrabCut gives its outline and the whole subject is brought to the
   nearness of its lowest part (an upright subject is as near as where it stands). A weak
   spectral-residual saliency term lifts salient foreground a little.
6. **Edge-aware upsampling.** A guided filter (He et al.) fitted at the working size and applied at
   the output size, so depth steps sit on the full-resolution colour edges.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
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
    edge_weights: tuple[float, ...] = (
        0.03,
        0.1,
        0.3,
    )  # cost of a full-strength edge pixel, per weight
    horizon: float = 0.1  # knee of the soft compression of the far range (normalised nearness)
    horizon_softness: float = 0.05  # width of the knee (0 = the old hard clamp)
    upright_share: float = 0.3  # enclosed regions up to this share of the image stand upright
    upright_percentile: float = 75.0  # the nearness an upright region takes (of its own values)
    backdrop_slope: float = 1.0  # share of the ramp kept by regions touching only the top border
    faces: bool = True  # detect faces/cat faces and keep their subjects near
    saliency_weight: float = 0.0  # nearness added at full spectral-residual saliency
    detect_side: int = 256  # long side of the image the face detector sees
    guide_radius: int = 2  # guided-upsampling window radius, working-image pixels
    guide_eps: float = 1e-3  # guided-upsampling regulariser (larger = less edge transfer)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["edge_weights"] = list(self.edge_weights)
        return d


DEFAULT_PARAMS = EstimatorParams()


# --------------------------------------------------------------------------- building blocks


def opponent_colour(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) RGB in [0, 1] → (H, W, 3) luminance, red-green, yellow-blue (roughly perceptual weights)."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    lum = 0.299 * r + 0.587 * g + 0.114 * b
    return np.stack([lum, 0.7 * (r - g), 0.35 * (r + g - 2.0 * b)], axis=-1).astype(np.float32)


def edge_strength(
    colour: np.ndarray, sigma: float, percentile: float, threshold: float
) -> np.ndarray:
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
    """Geodesic distance from the top row on an 8-connected grid, for one cost map (h, w) or a
    stack of them (k, h, w) at once (one pass of sweeps serves every map of the stack).

    A step between neighbours p, q of length l (1 or √2) costs ``l * (step + (cost[p] + cost[q]) / 2)``.
    Computed with alternating raster sweeps (down, up, right, left), each vectorised along a row or a
    column; two rounds converge for the paths that matter here (they turn at most a few times).
    Kept as numpy sweeps: neither OpenCV nor SciPy has a geodesic distance on a cost map.
    """
    c = np.asarray(cost, dtype=np.float32)
    single = c.ndim == 2
    c = c[None] if single else c
    step32 = np.float32(step)
    d = np.full(c.shape, np.inf, dtype=np.float32)
    d[:, 0] = 0.0
    rows_c = np.ascontiguousarray(c.transpose(1, 0, 2))  # (h, k, w): one row of every map
    cols_c = np.ascontiguousarray(c.transpose(2, 0, 1))  # (w, k, h): one column of every map
    dr = np.ascontiguousarray(d.transpose(1, 0, 2))
    h, w = rows_c.shape[0], cols_c.shape[0]
    for _ in range(sweeps):
        for rows, prev in ((range(1, h), -1), (range(h - 2, -1, -1), 1)):
            for y in rows:
                _relax(dr[y], dr[y + prev], rows_c[y], rows_c[y + prev], step32)
        dc = np.ascontiguousarray(dr.transpose(2, 1, 0))  # (w, k, h)
        for cols, prev in ((range(1, w), -1), (range(w - 2, -1, -1), 1)):
            for x in cols:
                _relax(dc[x], dc[x + prev], cols_c[x], cols_c[x + prev], step32)
        dr = np.ascontiguousarray(dc.transpose(2, 1, 0))
    out = dr.transpose(1, 0, 2)
    return np.ascontiguousarray(out[0] if single else out)


def _relax(
    cur: np.ndarray, nb: np.ndarray, c_cur: np.ndarray, c_nb: np.ndarray, step: np.float32
) -> None:
    """Lower `cur` (one row/column per map, in place) through its three neighbours in the
    adjacent line `nb` (the last axis runs along the line)."""
    straight = nb + (c_cur + c_nb) * np.float32(0.5) + step
    np.minimum(cur, straight, out=cur)
    if cur.shape[-1] > 1:
        diag_step = step * _SQRT2
        a = (
            nb[..., :-1]
            + (c_cur[..., 1:] + c_nb[..., :-1]) * (np.float32(0.5) * _SQRT2)
            + diag_step
        )
        np.minimum(cur[..., 1:], a, out=cur[..., 1:])
        b = nb[..., 1:] + (c_cur[..., :-1] + c_nb[..., 1:]) * (np.float32(0.5) * _SQRT2) + diag_step
        np.minimum(cur[..., :-1], b, out=cur[..., :-1])


def _box(x: np.ndarray, r: int) -> np.ndarray:
    return cv2.boxFilter(x, -1, (2 * r + 1, 2 * r + 1), borderType=cv2.BORDER_REFLECT)


def _resize_f32(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a float32 map to (width, height)."""
    if (x.shape[1], x.shape[0]) == size:
        return x
    return cv2.resize(
        np.ascontiguousarray(x, dtype=np.float32), size, interpolation=cv2.INTER_LINEAR
    )


def _shrink(x: np.ndarray, long_side: int) -> np.ndarray:
    """Area-average `x` (H, W[, C]) down to `long_side` on its long side (never up)."""
    h, w = x.shape[:2]
    scale = long_side / max(w, h)
    if scale >= 1.0:
        return x
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(x, size, interpolation=cv2.INTER_AREA)


def guided_upsample(
    src: np.ndarray, guide_lo: np.ndarray, guide_hi: np.ndarray, radius: int, eps: float
) -> np.ndarray:
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


def nearness_at_working_size(
    rgb_small: np.ndarray, params: EstimatorParams = DEFAULT_PARAMS
) -> np.ndarray:
    """Steps 1–4 on an (h, w, 3) float RGB array in [0, 1]; returns (h, w) nearness in [0, 1]."""
    h = rgb_small.shape[0]
    colour = opponent_colour(rgb_small)
    edges = edge_strength(colour, params.edge_sigma, params.edge_percentile, params.edge_threshold)
    step = 1.0 / max(h - 1, 1)
    acc = np.zeros(edges.shape, dtype=np.float32)
    weights = np.asarray(params.edge_weights, dtype=np.float32)
    if weights.size:
        dists = geodesic_from_top(edges[None] * weights[:, None, None], step)
        for dist in dists:
            top = float(dist.max())
            if top > 0:
                acc += dist / np.float32(top)
    near = acc / np.float32(max(len(params.edge_weights), 1))
    if params.upright_share > 0:
        near = upright_regions(
            near, edges, params.upright_share, params.upright_percentile, params.backdrop_slope
        )
    return soft_horizon(near, params.horizon, params.horizon_softness)


def upright_regions(
    near: np.ndarray,
    edges: np.ndarray,
    max_share: float,
    percentile: float,
    backdrop_slope: float = 1.0,
) -> np.ndarray:
    """Regions enclosed by boundaries are upright objects: one nearness each.

    The connected edge-free regions (OpenCV connected components) that touch neither the bottom
    border (the ground does) nor the top one and hold between 0.2 % and `max_share` of the
    pixels take the `percentile` of their nearness: an object standing in the scene faces the
    camera, it is not a piece of the receding ground plane. Regions touching the top border but
    not the bottom one (a wall, the sky, a backdrop) keep `backdrop_slope` of their ramp around
    that level: they recede slowly, never flat (no band at the border). The ground keeps it all.
    """
    import cv2

    h, w = near.shape
    n, comp = cv2.connectedComponents((edges == 0).astype(np.uint8), connectivity=4)
    if n <= 2:
        return near
    counts = np.bincount(comp.ravel(), minlength=n)
    keep = np.ones(n, dtype=np.float32)  # share of the ramp a region keeps
    sized = (counts >= 0.002 * h * w) & (counts <= max_share * h * w)
    top, bottom = np.zeros(n, bool), np.zeros(n, bool)
    top[np.unique(comp[0])] = True
    bottom[np.unique(comp[-1])] = True
    keep[sized & ~top & ~bottom] = 0.0
    keep[(counts >= 0.002 * h * w) & top & ~bottom] = np.float32(backdrop_slope)
    keep[0] = 1.0  # the edge pixels themselves
    if (keep == 1.0).all():
        return near
    flat = comp.ravel()
    order = np.lexsort((near.ravel(), flat))  # by region, then nearness
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    pick = starts + np.minimum(counts - 1, (counts * (percentile / 100.0)).astype(np.int64))
    level = near.ravel()[order[np.clip(pick, 0, flat.size - 1)]]
    lv, kp = level[flat], keep[flat]
    out = lv + kp * (near.ravel() - lv)
    return out.reshape(h, w).astype(np.float32)


def soft_horizon(near: np.ndarray, knee: float, softness: float) -> np.ndarray:
    """Compress nearness below `knee` with a softplus (hard clamp when `softness` is 0).

    softness·log(1 + exp((x - knee) / softness)), rescaled so 1 stays 1: above the knee nearly
    the identity, below it a slope that fades smoothly instead of a flat band with a kink.
    """
    if knee <= 0:
        return near.astype(np.float32)
    if softness <= 0:
        return (np.maximum(near - np.float32(knee), 0.0) / np.float32(1.0 - knee)).astype(
            np.float32
        )
    k, s = np.float32(knee), np.float32(softness)
    soft = s * np.logaddexp(np.float32(0.0), (near - k) / s)
    top = float(softness * np.logaddexp(0.0, (1.0 - knee) / softness))
    return (soft / np.float32(top)).astype(np.float32)


def apply_subjects(
    near: np.ndarray,
    subjects: list[tuple[np.ndarray, float]],
    saliency: np.ndarray | None,
    saliency_weight: float,
) -> np.ndarray:
    """Bring each subject (soft mask in [0, 1], standing level) to at least the nearness where it
    stands, or of its own nearest part; add `saliency_weight × saliency` (working size)."""
    out = near
    for mask, standing in subjects:
        core = mask > 0.5
        if not core.any():
            continue
        level = np.float32(max(standing, float(np.percentile(near[core], 95))))
        out = out + mask * (np.maximum(out, level) - out)
    if saliency is not None and saliency_weight > 0:
        out = out + np.float32(saliency_weight) * saliency
    return out.astype(np.float32)


def _subject_cues(
    gray: np.ndarray, small_u8: np.ndarray, near: np.ndarray, params: EstimatorParams
) -> np.ndarray:
    """Step 5: faces (found on a `detect_side` copy of `gray`) and saliency, at the working size."""
    from flux_depth_assets.depth import subjects

    sh, sw = near.shape
    found: list[tuple[np.ndarray, float]] = []
    if params.faces:
        det = _shrink(gray, params.detect_side)
        faces = subjects.detect_faces(det)
        if faces:
            fx, fy = sw / det.shape[1], sh / det.shape[0]
            small_faces = [subjects.Face(subjects.scale_box(f.box, fx, fy), f.kind) for f in faces]
            masks = subjects.subject_masks(small_u8, small_faces)
            found = [(m, subjects.standing_level(near, f)) for m, f in zip(masks, small_faces)]
    sal = None
    if params.saliency_weight > 0:
        sal = subjects.spectral_saliency(small_u8.mean(axis=2))
    return apply_subjects(near, found, sal, params.saliency_weight)


def _normalise(x: np.ndarray) -> np.ndarray:
    lo, hi = float(x.min()), float(x.max())
    if not hi > lo:
        return np.zeros(x.shape, dtype=np.float32)
    return ((x - lo) / (hi - lo)).astype(np.float32)


def estimate_depth(
    image: Image.Image, max_side: int = 1024, params: EstimatorParams = DEFAULT_PARAMS
) -> np.ndarray:
    """Relative inverse depth (float32, (H, W) of `image`, in [0, 1], larger = nearer).

    `max_side` caps the resolution at which the edge-aware upsampling runs; above it the result is
    resized bilinearly to the full size (bounds time and memory on very large images).
    """
    if params.horizon >= 1.0 or params.horizon < 0:
        raise ValueError(f"horizon must be in [0, 1), got {params.horizon}")
    rgb = np.asarray(image.convert("RGB"))
    h, w = rgb.shape[:2]
    small_u8 = _shrink(rgb, params.work_side)
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    near = nearness_at_working_size(small_u8.astype(np.float32) / np.float32(255.0), params)
    near = _subject_cues(gray, small_u8, near, params)
    if small_u8.shape[:2] == (h, w):
        out = near
    else:
        inv = np.float32(1.0 / 255.0)
        guide_lo = cv2.cvtColor(small_u8, cv2.COLOR_RGB2GRAY).astype(np.float32) * inv
        guide_hi = _shrink(gray, max(max_side, params.work_side)).astype(np.float32) * inv
        out = guided_upsample(near, guide_lo, guide_hi, params.guide_radius, params.guide_eps)
        out = _resize_f32(out.astype(np.float32), (w, h))
    return np.clip(_normalise(out), 0.0, 1.0).astype(np.float32)

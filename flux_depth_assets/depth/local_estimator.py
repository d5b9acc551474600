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
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image
from scipy import ndimage

from flux_depth_assets.depth.subjects import Box

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
    rows = _Lines(c.transpose(1, 0, 2), np.float32(step))  # line y: row y of every map
    cols = _Lines(c.transpose(2, 0, 1), np.float32(step))  # line x: column x of every map
    rows.maps[0] = 0.0
    for _ in range(sweeps):
        rows.sweep()  # down, up
        cols.maps[...] = rows.maps.transpose(2, 1, 0)
        cols.sweep()  # right, left
        rows.maps[...] = cols.maps.transpose(2, 1, 0)
    out = rows.maps.transpose(1, 0, 2)
    return np.ascontiguousarray(out[0] if single else out)


class _Lines:
    """Distances of a stack of k maps laid out for the raster sweeps along one axis.

    Line y of every map sits side by side in one contiguous float32 row, the maps separated (and
    the row bordered) by one inf, so the three neighbours of every pixel in the adjacent line are
    three shifted slices of that row. The step costs depend on the cost maps only, so they are
    built once (inf where there is no neighbour), and one line of a sweep is four numpy calls on
    views made up front: numpy's per-call overhead, not arithmetic, is what a sweep costs here.
    """

    def __init__(self, cost_lines: np.ndarray, step: np.float32) -> None:
        n, k, m = cost_lines.shape
        width = k * (m + 1)  # one line of every map, each followed by its inf separator
        blocks = np.full((n, k + 1, m + 1), np.inf, dtype=np.float32)  # inf, then a map's line
        self.maps = blocks[:, :k, 1:]  # (n, k, m) view
        dist = blocks.reshape(n, -1)[:, : width + 2]  # inf, map 0, inf, ..., map k - 1, inf, inf
        lines = dist[:, 1:-1]
        # neighbours[y][j, i] = dist[y, i + j]: the diagonal, straight and other diagonal
        # neighbour (in line y) of pixel i of the adjacent line
        neighbours = sliding_window_view(dist, width, axis=1)
        from_prev = _step_costs(cost_lines[1:], cost_lines[:-1])  # line y from line y - 1
        from_next = _step_costs(cost_lines[:-1], cost_lines[1:])  # line y from line y + 1
        # (line, its neighbours, their step costs) in sweep order: forward, then backward
        self.order = [(lines[y], neighbours[y - 1], from_prev[y - 1]) for y in range(1, n)]
        self.order += [(lines[y], neighbours[y + 1], from_next[y]) for y in range(n - 2, -1, -1)]
        diag = step * _SQRT2
        self.steps = np.repeat(np.array([[diag], [step], [diag]], dtype=np.float32), width, axis=1)

    def sweep(self) -> None:
        """A forward then a backward sweep, in place: each line takes the minimum over its
        three neighbours in the line updated just before it."""
        steps = self.steps
        cand = np.empty_like(steps)
        best = np.empty(steps.shape[1], dtype=np.float32)
        for line, neighbours, costs in self.order:
            np.add(neighbours, costs, out=cand)  # d + l·mean cost, then + l·step: kept in
            cand += steps  # this order, the float32 result is the same as a pixel-wise loop's
            np.minimum.reduce(cand, axis=0, out=best)
            np.minimum(line, best, out=line)


def _step_costs(cur: np.ndarray, nb: np.ndarray) -> np.ndarray:
    """(n, 3, width) cost-map terms of the steps into each pixel of the lines `cur` (n, k, m)
    from their neighbours in the lines `nb`: from x - 1 (diagonal), x, x + 1 (diagonal); inf
    where there is no such neighbour and at the separators (laid out as `_Lines` rows)."""
    n, k, m = cur.shape
    half = np.float32(0.5)
    terms = np.full((n, 3, k, m + 1), np.inf, dtype=np.float32)
    for out, a, b, scale in (
        (terms[:, 0, :, 1:m], cur[..., 1:], nb[..., :-1], half * _SQRT2),
        (terms[:, 1, :, :m], cur, nb, half),
        (terms[:, 2, :, : m - 1], cur[..., :-1], nb[..., 1:], half * _SQRT2),
    ):
        np.multiply(np.add(a, b, out=out), scale, out=out)  # (c[p] + c[q]) * l / 2
    return terms.reshape(n, 3, k * (m + 1))


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
    out = a_hi * guide_hi
    out += b_hi  # in place: one 1 MP temporary fewer
    return out


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
) -> tuple[np.ndarray, list[Box] | None]:
    """Step 5: faces (found on a `detect_side` copy of `gray`) and saliency, at the working size.
    Also the face boxes in `gray`'s pixels (None when faces are off), for the parallax sprites."""
    from flux_depth_assets.depth import subjects

    sh, sw = near.shape
    found: list[tuple[np.ndarray, float]] = []
    boxes: list[Box] | None = None
    if params.faces:
        det = _shrink(gray, params.detect_side)
        faces = subjects.detect_faces(det)
        gx, gy = gray.shape[1] / det.shape[1], gray.shape[0] / det.shape[0]
        boxes = [subjects.scale_box(f.box, gx, gy) for f in faces]
        if faces:
            fx, fy = sw / det.shape[1], sh / det.shape[0]
            small_faces = [subjects.Face(subjects.scale_box(f.box, fx, fy), f.kind) for f in faces]
            masks = subjects.subject_masks(small_u8, small_faces)
            found = [(m, subjects.standing_level(near, f)) for m, f in zip(masks, small_faces)]
    sal = None
    if params.saliency_weight > 0:
        sal = subjects.spectral_saliency(small_u8.mean(axis=2))
    return apply_subjects(near, found, sal, params.saliency_weight), boxes


def _normalise(x: np.ndarray) -> np.ndarray:
    """(x - min) / (max - min), clipped to [0, 1], as a new float32 map (zeros if `x` is flat).

    In place on one new array: at 1 MP every extra temporary costs about as much as the maths."""
    lo, hi = float(x.min()), float(x.max())
    if not hi > lo:
        return np.zeros(x.shape, dtype=np.float32)
    out = np.subtract(x, lo, dtype=np.float32)
    out /= hi - lo
    return np.clip(out, 0.0, 1.0, out=out)


def estimate_depth(
    image: Image.Image, max_side: int = 1024, params: EstimatorParams = DEFAULT_PARAMS
) -> np.ndarray:
    """Relative inverse depth (float32, (H, W) of `image`, in [0, 1], larger = nearer).

    `max_side` caps the resolution at which the edge-aware upsampling runs; above it the result is
    resized bilinearly to the full size (bounds time and memory on very large images).
    """
    return estimate_depth_and_faces(image, max_side, params)[0]


def estimate_depth_and_faces(
    image: Image.Image, max_side: int = 1024, params: EstimatorParams = DEFAULT_PARAMS
) -> tuple[np.ndarray, list[Box] | None]:
    """`estimate_depth`, and the faces it found (x, y, width, height in `image`'s pixels; None
    when `params.faces` is off): the sprites keep them whole without detecting them again."""
    if params.horizon >= 1.0 or params.horizon < 0:
        raise ValueError(f"horizon must be in [0, 1), got {params.horizon}")
    rgb = np.asarray(image if image.mode == "RGB" else image.convert("RGB"))
    h, w = rgb.shape[:2]
    small_u8 = _shrink(rgb, params.work_side)
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    near = nearness_at_working_size(small_u8.astype(np.float32) / np.float32(255.0), params)
    near, faces = _subject_cues(gray, small_u8, near, params)
    if small_u8.shape[:2] == (h, w):
        out = near
    else:
        inv = np.float32(1.0 / 255.0)
        guide_lo = cv2.cvtColor(small_u8, cv2.COLOR_RGB2GRAY).astype(np.float32) * inv
        guide_hi = _shrink(gray, max(max_side, params.work_side)).astype(np.float32) * inv
        out = guided_upsample(near, guide_lo, guide_hi, params.guide_radius, params.guide_eps)
        out = _resize_f32(out, (w, h))
    return _normalise(out), faces

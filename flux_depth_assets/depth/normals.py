"""Surface normals from a nearness map, and their RGB PNG encoding.

Conventions (stated once; `docs/derived.md` explains them for users):

- Input `nearness`: float (H, W), relative inverse depth, larger = nearer, NaN = invalid. The
  stored depth maps are normalised to [0, 1] per image (see `depth.encoding`).
- The map is read as a height field h = strength * nearness over image coordinates measured in
  **image widths**: u = x / W (to the right), v = y / W (down the rows). The surface slope is
  therefore `strength * d(nearness) / d(x / W)`: a nearness change of 1.0 across the full image
  width is a 45° slope at strength 1. Because the gradient is taken per fraction of the width,
  the same scene gives the same normals at any resolution.
- Output normals: float32 (H, W, 3), unit length, z > 0 (towards the camera).
  OpenGL (+Y up, the default) or DirectX (+Y down): only the sign of the y component differs.
  Invalid pixels get the flat normal (0, 0, 1).
- Discontinuities: at every pixel the slope along each axis comes from the central difference
  when the two one-sided differences agree, and from the gentler one-sided difference when they
  disagree by more than `EDGE_ANGLE_DEG` (a depth edge between this pixel and one neighbour). A
  pixel on a silhouette so takes its slope from its own surface only: no halo, no smear.
- PNG: 8-bit RGB with n = rgb / 255 * 2 - 1 (the usual normal-map encoding), or 16-bit RGB with
  n = rgb / 65535 * 2 - 1. Pillow cannot write 48-bit RGB PNGs, so that one is written here.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from typing import Literal

import cv2
import numpy as np
from PIL import Image

from flux_depth_assets.depth.encoding import PNG_SIGNATURE as _PNG_SIG
from flux_depth_assets.depth.encoding import decode_own_png, encode_png

Convention = Literal["opengl", "directx"]

#: two one-sided slopes whose directions differ by more than this are a depth edge
EDGE_ANGLE_DEG = 25.0

#: rows per block: keeps every temporary array in cache on large images
_BLOCK_ROWS = 64
#: a map whose smallest value step tilts a normal by more than this is treated as quantised
QUANT_STEP_SLOPE = 0.1  # tan(5.7°)


def quantization_step(nearness: np.ndarray) -> float:
    """The value step of a terraced (coarsely quantised) map, or 0.0 when it is not terraced.

    Terraces: along rows, runs of equal values broken by one-step jumps (an 8-bit source seen
    through a gentle slope). The step is the small common nonzero difference between
    neighbours; a map counts as terraced when such steps sit next to zero differences on at
    least 1 % of the sampled pixels and the step is at most 1/64 of the value range (so a lone
    depth edge between two flat regions is not mistaken for quantisation).
    """
    n = np.asarray(nearness, dtype=np.float32)
    rows = n[:: max(1, n.shape[0] // 64)]
    with np.errstate(invalid="ignore"):
        d = np.abs(np.diff(rows, axis=1))
    finite = np.isfinite(d)
    nz = d[finite & (d > 0)]
    if nz.size < 16:
        return 0.0
    step = float(np.percentile(nz, 5))
    lo, hi = np.nanpercentile(rows, [1, 99]) if np.isfinite(rows).any() else (0.0, 0.0)
    if step <= 0 or step > (hi - lo) / 64:
        return 0.0
    zero = finite & (d == 0)
    one = finite & (d > 0) & (d <= 1.5 * step)
    terraced = (zero[:, :-1] & one[:, 1:]) | (one[:, :-1] & zero[:, 1:])
    return step if terraced.mean() >= 0.01 else 0.0


def dequantize(nearness: np.ndarray, step: float, radius: int) -> np.ndarray:
    """Smooth quantisation terraces away, keep real depth edges: a self-guided filter (He et
    al.) whose eps is a few quantisation steps. Where a window only holds terraces (variance ≲
    step²) it averages them into the underlying slope; where it holds a depth edge (variance ≫
    step²) it leaves the values as they are, so silhouettes stay sharp. NaN stays NaN."""
    from scipy import ndimage

    n = np.asarray(nearness, dtype=np.float32)
    valid = np.isfinite(n)
    x = np.where(valid, n, np.float32(0.0)) if not valid.all() else n
    size = 2 * radius + 1
    h, w = n.shape
    # the coefficients are smooth, so they are computed on a grid `f` times coarser and
    # brought back bilinearly ("fast guided filter", He & Sun 2015)
    f = max(1, radius // 2)
    lw, lh = max(1, round(w / f)), max(1, round(h / f))
    low = np.asarray(Image.fromarray(x, "F").resize((lw, lh), Image.Resampling.BOX)) if f > 1 else x
    low_size = 2 * max(1, round(radius / f)) + 1

    def box(a: np.ndarray) -> np.ndarray:
        return ndimage.uniform_filter(a, size=low_size, mode="reflect")

    def up(a: np.ndarray) -> np.ndarray:
        if f == 1:
            return a
        return np.asarray(
            Image.fromarray(a.astype(np.float32), "F").resize((w, h), Image.Resampling.BILINEAR)
        )

    mean = box(low)
    var = box(low * low)
    var -= mean * mean
    np.maximum(var, 0.0, out=var)
    a = var / (var + np.float32((3.0 * step) ** 2))
    b = mean - a * mean
    out = up(box(a)) * x
    out += up(box(b))
    # the filter leaks a little across a depth edge (b is averaged over windows that hold it):
    # within reach of a real jump (several steps between neighbours) keep the raw values
    jump = np.zeros(n.shape, dtype=bool)
    with np.errstate(invalid="ignore"):
        big = np.abs(np.diff(n, axis=1)) > 4.0 * step
        jump[:, :-1] |= big
        jump[:, 1:] |= big
        big = np.abs(np.diff(n, axis=0)) > 4.0 * step
        jump[:-1] |= big
        jump[1:] |= big
    keep = ~valid | jump
    if keep.any():
        reach = 2 * size - 1  # how far the filter's windows of windows reach
        if f > 1:  # dilate on the coarse grid (any-pooled), generously, then expand back
            hp, wp = -(-h // f) * f, -(-w // f) * f
            pad = np.zeros((hp, wp), dtype=bool)
            pad[:h, :w] = keep
            rows = pad[0::f].copy()  # strided ORs: much faster than any() over small axes
            for k in range(1, f):
                rows |= pad[k::f]
            coarse = rows[:, 0::f].copy()
            for k in range(1, f):
                coarse |= rows[:, k::f]
            coarse = ndimage.maximum_filter(coarse, size=-(-reach // f) + 2)
            keep = coarse.repeat(f, axis=0).repeat(f, axis=1)[:h, :w]
        else:
            keep = ndimage.maximum_filter(keep, size=reach)
        out = np.where(keep, n, out)
    return out.astype(np.float32)


#: default edge-aware smoothing before differentiation, as a fraction of the long side
SMOOTH_FRAC = 0.2
#: depth steps larger than about this fraction of the map's range are edges the smoothing keeps
SMOOTH_RANGE_FRAC = 0.3
#: long side of the copy the smoothing runs on
SMOOTH_WORK_SIDE = 256


def shape_smooth(
    nearness: np.ndarray, sigma_px: float, range_frac: float = SMOOTH_RANGE_FRAC
) -> np.ndarray:
    """Edge-aware smoothing of a depth map so normals follow shape, not texture.

    A bilateral filter of the depth itself, computed on a bilateral grid (Chen, Paris & Durand
    2007): values are splatted into a coarse (y, x, depth) grid with cells of `sigma_px` and
    `range_frac` of the map's range, the grid is blurred, and each pixel reads its value back
    with a cubic spline (smooth normals: no facets at cell borders). It averages over surfaces
    but not across depth steps, at a cost independent of the sigma. It runs on a copy
    `SMOOTH_WORK_SIDE` px long; back at full size, where the upsampled map departs from the input
    by more than a depth step (the pixels next to a silhouette) the input, median-filtered, is
    blended in, so silhouettes stay sharp. NaN stays NaN. OpenCV has no bilateral grid, and its
    bilateral filter costs grow with the square of the sigma (10-20 % of the image here).
    """
    from scipy import ndimage

    n = np.asarray(nearness, dtype=np.float32)
    valid = np.isfinite(n)
    if sigma_px <= 0 or not valid.any():
        return n
    h, w = n.shape
    x = n if valid.all() else np.where(valid, n, np.float32(np.nanmedian(n)))
    f = max(1.0, max(h, w) / SMOOTH_WORK_SIDE)
    sw, sh = max(1, round(w / f)), max(1, round(h / f))
    small = cv2.resize(x, (sw, sh), interpolation=cv2.INTER_AREA) if f > 1 else x
    lo, hi = (float(v) for v in np.percentile(small, [1, 99]))
    if not hi > lo:
        return n
    ss, sr = max(1.0, sigma_px / f), range_frac * (hi - lo)
    zlo = float(small.min())
    ny, nx = int(sh / ss) + 4, int(sw / ss) + 4
    nz = int((float(small.max()) - zlo) / sr) + 4
    cy = np.repeat((np.arange(sh, dtype=np.float32) / np.float32(ss) + 1.5)[:, None], sw, axis=1)
    cx = np.repeat((np.arange(sw, dtype=np.float32) / np.float32(ss) + 1.5)[None, :], sh, axis=0)
    cz = (small - np.float32(zlo)) / np.float32(sr) + np.float32(1.5)
    idx = (
        (np.rint(cy).astype(np.int64) * nx + np.rint(cx).astype(np.int64)) * nz
        + np.rint(cz).astype(np.int64)
    ).ravel()
    cells = ny * nx * nz
    weight = np.bincount(idx, minlength=cells).astype(np.float64).reshape(ny, nx, nz)
    value = np.bincount(idx, weights=small.ravel().astype(np.float64), minlength=cells).reshape(
        ny, nx, nz
    )
    weight = ndimage.gaussian_filter(weight, 1.0, mode="constant")
    value = ndimage.gaussian_filter(value, 1.0, mode="constant")
    num, den = _grid_cubic(np.stack([value, weight], axis=-1), cy[:, 0], cx[0], cz)
    smooth = (num / np.maximum(den, 1e-6)).astype(np.float32)
    out = cv2.resize(smooth, (w, h), interpolation=cv2.INTER_CUBIC) if f > 1 else smooth
    # the blend weight (|up - x| / 2sr - 1, clipped to [0, 1]) is 0 but in the few blocks of
    # rows that cross a silhouette: the median (the costliest step) runs on those only
    inv_2sr = np.float32(1.0 / (2.0 * sr))
    far = cv2.absdiff(out, x).max(axis=1) * inv_2sr > 1.0
    for r0 in (r for r in range(0, h, _BLOCK_ROWS) if far[r : r + _BLOCK_ROWS].any()):
        r1, lo = min(h, r0 + _BLOCK_ROWS), max(r0 - 2, 0)  # 2: the 5×5 median's reach
        up = out[r0:r1]
        keep = np.clip(np.abs(up - x[r0:r1]) * inv_2sr - np.float32(1.0), 0.0, 1.0)
        med = cv2.medianBlur(x[lo : min(r1 + 2, h)], 5)[r0 - lo : r1 - lo]
        med -= up
        med *= keep
        up += med
    if not valid.all():
        out[~valid] = np.nan
    return out


def _grid_cubic(
    grid: np.ndarray, ys: np.ndarray, xs: np.ndarray, zs: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Cubic B-spline reads of the two channels of `grid` (ny, nx, nz, 2) at every (ys[i], xs[j],
    zs[i, j]), as `ndimage.map_coordinates(order=3, mode="nearest")` would, but separably: the
    y and x reads are shared by a whole row and column of pixels (two small matrix products),
    only the z read is per pixel. About 10× faster than the generic per-point spline."""
    from scipy import ndimage

    npad = 12  # what map_coordinates pads with for mode="nearest", then crops back
    coef = np.pad(grid, [(npad, npad)] * 3 + [(0, 0)], mode="edge").astype(np.float64)
    for axis in range(3):  # the spline prefilter on the three grid axes, not the channels
        coef = ndimage.spline_filter1d(coef, 3, axis=axis, mode="nearest")
    coef = coef[npad:-npad, npad:-npad, npad:-npad]
    ny, nx, nz = coef.shape[:3]
    along_y = np.tensordot(_bspline_matrix(ys, ny), coef, axes=(1, 0))  # (h, nx, nz, 2)
    along_xy = np.tensordot(_bspline_matrix(xs, nx), along_y, axes=(1, 1))  # (w, h, nz, 2)
    h, w = zs.shape
    # read in place (no transposed copy), a (value, weight) pair as one complex: a 1-D take
    flat = along_xy.view(np.complex128).ravel()
    idx, wts = _bspline_taps(zs.astype(np.float64), nz)  # (h, w, 4) each
    idx += ((np.arange(w, dtype=np.int64) * h + np.arange(h)[:, None]) * nz)[..., None]
    picked = np.take(flat, idx).view(np.float64).reshape(h, w, 4, 2)
    out = np.einsum("hwkc,hwk->hwc", picked, wts)
    return out[..., 0], out[..., 1]


def _bspline_taps(pos: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The 4 coefficient indices (clipped into [0, n)) and cubic B-spline weights of each
    position, shape pos.shape + (4,)."""
    i = np.floor(pos)
    t = (pos - i)[..., None]
    idx = np.clip(i.astype(np.int64)[..., None] + np.arange(-1, 3), 0, n - 1)
    t2, t3 = t * t, t * t * t
    wts = (
        np.concatenate(
            [(1 - t) ** 3, 3 * t3 - 6 * t2 + 4, -3 * t3 + 3 * t2 + 3 * t + 1, t3], axis=-1
        )
        / 6.0
    )
    return idx, wts


def _bspline_matrix(pos: np.ndarray, n: int) -> np.ndarray:
    """(len(pos), n): row i holds the cubic B-spline weights that read position pos[i]."""
    idx, wts = _bspline_taps(np.asarray(pos, dtype=np.float64), n)
    m = np.zeros((pos.size, n))
    np.add.at(m, (np.repeat(np.arange(pos.size), 4), idx.ravel()), wts.ravel())
    return m


def _axis_slope(
    fwd: np.ndarray, bwd: np.ndarray, tan_edge: np.float32, has_nan: bool, out: np.ndarray
) -> None:
    """Slope at interior pixels from forward and backward one-sided slopes, into `out` (all
    three 1-D or whole rows: contiguous passes). Central difference where they agree; the
    gentler one-sided slope across a depth edge (few pixels: looked at alone); the one that
    exists when a neighbour is invalid; 0 when neither exists."""
    np.add(fwd, bwd, out=out)
    out *= 0.5
    # directions differ by more than the edge angle ⇔ |f - b| > tan(θ) (1 + f b)
    # (when 1 + f b <= 0 they differ by >= 90° and the test holds as well)
    edge = np.flatnonzero(np.abs(fwd - bwd) > (fwd * bwd + 1.0) * tan_edge)
    if edge.size:
        f, b = np.take(fwd, edge), np.take(bwd, edge)
        np.put(out, edge, np.where(np.abs(f) <= np.abs(b), f, b))
    if has_nan:
        fnan, bnan = np.isnan(fwd), np.isnan(bwd)
        if fnan.any() or bnan.any():
            np.copyto(out, bwd, where=fnan)
            np.copyto(out, fwd, where=bnan)
            out[np.isnan(out)] = 0.0


def _slopes_x(n: np.ndarray, scale: np.float32, tan_edge: np.float32, has_nan: bool) -> np.ndarray:
    """d/dx (columns, rightwards) of a block of whole rows, taken along the flattened block: the
    differences across row ends are computed too, then overwritten by the one-sided border ones."""
    w = n.shape[1]
    if w == 1:
        return np.zeros(n.shape, dtype=np.float32)
    out = np.empty(n.shape, dtype=np.float32)
    d = np.diff(n.ravel()) * scale
    _axis_slope(d[1:], d[:-1], tan_edge, has_nan, out.ravel()[1:-1])
    out[:, 0] = d[::w]  # the first and last columns: one-sided differences
    out[:, -1] = d[w - 2 :: w]
    if has_nan:  # with no neighbour across them, as on the first and last rows: flat
        for col in (out[:, 0], out[:, -1]):
            col[np.isnan(col)] = 0.0
    return out


def _slopes_y(
    n: np.ndarray, r0: int, r1: int, scale: np.float32, tan_edge: np.float32, has_nan: bool
) -> np.ndarray:
    """d/dy (rows, downwards) of rows r0..r1 of `n` (the rows around them count as neighbours)."""
    h, w = n.shape
    if h == 1:
        return np.zeros((r1 - r0, w), dtype=np.float32)
    out = np.empty((r1 - r0, w), dtype=np.float32)
    lo = max(r0 - 1, 0)
    d = np.diff(n[lo : min(r1 + 1, h)], axis=0) * scale  # d[k] ∝ n[lo + k + 1] - n[lo + k]
    a, b = max(r0, 1), min(r1, h - 1)  # the rows with a neighbour on both sides
    if b > a:
        fwd, bwd = d[a - lo : b - lo], d[a - lo - 1 : b - lo - 1]  # below, above
        _axis_slope(fwd, bwd, tan_edge, has_nan, out[a - r0 : b - r0])
    if r0 == 0:  # the image's first row: forward difference only
        out[0] = np.where(np.isnan(d[0]), 0.0, d[0])
    if r1 == h:  # the image's last row
        out[-1] = np.where(np.isnan(d[-1]), 0.0, d[-1])
    return out


def _prepared(
    nearness: np.ndarray, strength: float, convention: str, smooth_quantized: bool, smooth_px: float
) -> np.ndarray:
    """The checked float32 map `normals_from_depth` differentiates (dequantised, smoothed)."""
    n = np.ascontiguousarray(nearness, dtype=np.float32)
    if n.ndim != 2 or n.size == 0:
        raise ValueError(f"expected a non-empty 2-D nearness map, got shape {n.shape}")
    if not (strength > 0 and math.isfinite(strength)):
        raise ValueError(f"strength must be a positive number, got {strength!r}")
    if convention not in ("opengl", "directx"):
        raise ValueError(f"convention must be 'opengl' or 'directx', got {convention!r}")
    h, w = n.shape
    if smooth_quantized and min(h, w) >= 8:
        step = quantization_step(n)
        if step * w * strength > QUANT_STEP_SLOPE:
            n = dequantize(n, step, radius=max(2, round(w / 400)))
    if smooth_px and smooth_px > 0 and min(h, w) >= 8:
        n = shape_smooth(n, smooth_px)
    return n


def _slope_blocks(
    n: np.ndarray, strength: float
) -> Iterator[tuple[int, int, np.ndarray, np.ndarray, np.ndarray]]:
    """(r0, r1, sx, sy, z) per block of rows: the slopes per image width and the normals' z,
    1 / sqrt(1 + sx² + sy²). In blocks so every temporary stays in cache."""
    h, w = n.shape
    scale = np.float32(strength * w)  # nearness step per pixel → slope per image width
    has_nan = bool(np.isnan(n).any())
    tan_edge = np.float32(math.tan(math.radians(EDGE_ANGLE_DEG)))
    for r0 in range(0, h, _BLOCK_ROWS):
        r1 = min(h, r0 + _BLOCK_ROWS)
        sx = _slopes_x(n[r0:r1], scale, tan_edge, has_nan)
        sy = _slopes_y(n, r0, r1, scale, tan_edge, has_nan)
        z = np.sqrt(sx * sx + sy * sy + 1.0)
        yield r0, r1, sx, sy, np.reciprocal(z, out=z)


def normals_from_depth(
    nearness: np.ndarray,
    strength: float = 1.0,
    convention: Convention = "opengl",
    *,
    smooth_quantized: bool = True,
    smooth_px: float = 0.0,
) -> np.ndarray:
    """Unit surface normals (H, W, 3) float32 of the height field `strength * nearness`.

    Slopes are measured per image width (see the module docstring), so the result does not
    depend on the resolution the same scene is sampled at. A coarsely quantised map (e.g. from
    an 8-bit provider image, where one value step would tilt a normal by more than ~6°) is
    first smoothed by `dequantize` unless `smooth_quantized` is False. With `smooth_px` > 0,
    `shape_smooth` (edge-aware, over ~`smooth_px` pixels) first removes the texture an
    *estimated* depth map carries, keeping silhouettes: the `normal_maps` asset passes
    `smooth × long side` (default `SMOOTH_FRAC`); a measured map needs none.
    """
    n = _prepared(nearness, strength, convention, smooth_quantized, smooth_px)
    out = np.empty((*n.shape, 3), dtype=np.float32)
    for r0, r1, sx, sy, z in _slope_blocks(n, strength):
        # +x right: n_x = -dh/du. Rows go down, so dh/dv_up = -dh/dy: OpenGL n_y = +dh/dy,
        # DirectX (+Y down) n_y = -dh/dy. (-a)·z is -(a·z) bit for bit.
        o = out[r0:r1]
        np.multiply(np.negative(sx, out=sx), z, out=o[..., 0])
        np.multiply(sy if convention == "opengl" else np.negative(sy, out=sy), z, out=o[..., 1])
        o[..., 2] = z
    return out


def normal_z(nearness: np.ndarray, strength: float = 1.0) -> np.ndarray:
    """float32 (H, W): the z of `normals_from_depth(nearness, strength)` (each normal's tilt
    cosine), bit for bit, without the 3-channel map: what `depth.stats` needs."""
    n = _prepared(nearness, strength, "opengl", True, 0.0)
    return np.concatenate([z for *_, z in _slope_blocks(n, strength)])


# --------------------------------------------------------------------------- PNG encoding


def quantize_normals(normals: np.ndarray, bit_depth: Literal[8, 16] = 8) -> np.ndarray:
    """uint8/uint16 (H, W, 3) with rgb = round((n + 1) / 2 * max)."""
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth!r}")
    nrm = np.asarray(normals, dtype=np.float32)
    if nrm.ndim != 3 or nrm.shape[2] != 3:
        raise ValueError(f"expected (H, W, 3) normals, got shape {nrm.shape}")
    q = nrm + np.float32(1.0)
    if bit_depth == 8:  # OpenCV in one pass: float32 scale, |·| (a no-op after the clip),
        np.clip(q, 0.0, 2.0, out=q)  # round half to even, saturate: the steps below, bit for bit
        return cv2.convertScaleAbs(q, alpha=127.5)
    q *= np.float32(65535.0 / 2.0)
    np.clip(q, 0.0, 65535.0, out=q)
    np.rint(q, out=q)
    return q.astype(np.uint16)


def decode_rgb16_png(data: bytes) -> np.ndarray:
    """uint16 (H, W, 3) from a 48-bit RGB PNG as `encode_png` writes it (rows None/Up).

    Pillow reads such files as 8-bit RGB, dropping the low bytes, hence this reader."""
    arr = decode_own_png(data)
    if arr is None or arr.dtype != np.uint16 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError("expected a non-interlaced 16-bit RGB PNG with None/Up row filters")
    return arr


def encode_normals_png(normals: np.ndarray, bit_depth: Literal[8, 16] = 8) -> bytes:
    """RGB PNG bytes of unit normals: 8-bit (rgb = (n+1)/2*255) or 16-bit."""
    return encode_png(quantize_normals(normals, bit_depth))


#: 8-bit code → normal component (c / 255 * 2 - 1), for one table gather per decode
_UNIT_OF_CODE8 = (
    np.arange(256, dtype=np.float32) * np.float32(2.0 / 255.0) - np.float32(1.0)
).astype(np.float32)


def decode_normals_png(data: bytes) -> np.ndarray:
    """float32 (H, W, 3) normals n = rgb / max * 2 - 1 from an 8- or 16-bit RGB PNG."""
    if _png_bit_depth(data) == 16:
        arr = decode_rgb16_png(data).astype(np.float32)
        return arr * np.float32(2.0 / 65535.0) - np.float32(1.0)
    own = decode_own_png(data)
    if own is None:  # written by another PNG encoder
        with Image.open(io.BytesIO(data)) as im:
            if im.mode != "RGB":
                raise ValueError(f"expected an RGB normal map, got mode {im.mode}")
            own = np.asarray(im)
    elif own.ndim != 3 or own.shape[2] != 3:
        raise ValueError(f"expected an RGB normal map, got pixels of shape {own.shape}")
    return _UNIT_OF_CODE8[own]


def _png_bit_depth(data: bytes) -> int:
    if not data.startswith(_PNG_SIG) or data[12:16] != b"IHDR":
        raise ValueError("not a PNG file")
    return data[24]


def angular_error_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle in degrees between two fields of (not necessarily unit) normals, (H, W)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    dot = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
    return np.degrees(np.arccos(np.clip(dot, -1.0, 1.0)))


def tilt_deg(normals: np.ndarray) -> np.ndarray:
    """Angle in degrees between each normal and the view axis (0, 0, 1)."""
    z = np.clip(np.asarray(normals, dtype=np.float32)[..., 2], -1.0, 1.0)
    return np.degrees(np.arccos(z, out=z), out=z)

"""Depth layers: where to cut the nearness, who owns which pixel, soft alpha, per-layer figures.

Conventions are those of `depth.sprites` (nearness: larger = nearer, NaN = invalid; layers in
draw order far → near, label 0 = the background, which also owns invalid pixels).
"""

from __future__ import annotations

import math
from typing import Literal

import cv2
import numpy as np

_HIST_BINS = 512
#: the cut search penalises layers below this share of the pixels, up to _EMPTY_PENALTY when empty
_MIN_SHARE = 0.01
_EMPTY_PENALTY = 10.0

Box = tuple[int, int, int, int]  # x, y, width, height in full-frame pixels


# --------------------------------------------------------------------------- cuts


def depth_cuts(
    nearness: np.ndarray, n_layers: int, method: Literal["valley", "quantile"] = "valley"
) -> np.ndarray:
    """N-1 ascending nearness thresholds (float64); a pixel's layer = the number of cuts below it.

    `quantile`: the k/N quantiles. `valley` (default): the cuts that minimise, over the nearness
    histogram, the pixel density at the cuts (so they fall into the gaps between objects'
    depths) plus a penalty for layers far from an equal share of the pixels, plus a large one for
    (nearly) empty layers; solved exactly by dynamic programming over histogram edges.
    """
    if n_layers < 1:
        raise ValueError(f"n_layers must be >= 1, got {n_layers}")
    v = np.asarray(nearness, dtype=np.float32).ravel()
    finite = np.isfinite(v)
    if not finite.all():
        v = v[finite]
    if n_layers == 1:
        return np.empty(0, dtype=np.float64)
    if v.size == 0:
        return np.zeros(n_layers - 1, dtype=np.float64)
    targets = np.arange(1, n_layers) / n_layers
    if method == "quantile":
        return np.quantile(v, targets).astype(np.float64)
    if method != "valley":
        raise ValueError(f"unknown cut method {method!r}")
    # a robust range (0.1 % tails folded into the end bins) so outliers do not waste the bins
    step = max(1, v.size // 262_144)
    lo, hi = (float(x) for x in np.quantile(v[::step], [0.001, 0.999]))
    if not hi > lo:
        lo, hi = float(v.min()), float(v.max())
        if not hi > lo:
            return np.full(n_layers - 1, lo, dtype=np.float64)  # one depth: all background
    hist, edges = folded_histogram(v, lo, hi)
    cdf = np.concatenate([[0.0], np.cumsum(hist) / v.size])  # share below each edge
    # density around each interior edge (1 = uniform), smoothed so a gap is cheapest mid-gap
    dens = np.convolve(hist.astype(np.float64), np.ones(5) / 5, mode="same") * (_HIST_BINS / v.size)
    edge_cost = np.full(_HIST_BINS + 1, np.inf)
    edge_cost[1:-1] = 0.5 * (dens[:-1] + dens[1:])
    # layer cost between edges a < b
    share = cdf[None, :] - cdf[:, None]
    layer_cost = (n_layers * share - 1.0) ** 2 + _EMPTY_PENALTY * np.clip(
        1.0 - share / _MIN_SHARE, 0.0, None
    )
    layer_cost[np.tril_indices(_HIST_BINS + 1)] = np.inf
    best = layer_cost[0] + edge_cost  # one cut, at edge j
    back = []
    for _ in range(n_layers - 2):
        total = best[:, None] + layer_cost
        arg = np.argmin(total, axis=0)
        back.append(arg)
        best = total[arg, np.arange(total.shape[1])] + edge_cost
    last = best + layer_cost[:, -1]
    j = int(np.argmin(last))
    if not np.isfinite(last[j]):  # fewer edges than layers: plain quantiles
        return np.quantile(v, targets).astype(np.float64)
    idx = [j]
    for arg in reversed(back):
        j = int(arg[j])
        idx.append(j)
    return np.asarray(edges[idx[::-1]], dtype=np.float64)


def folded_histogram(v: np.ndarray, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
    """`np.histogram(np.clip(v, lo, hi), _HIST_BINS, (lo, hi))` of finite float32 `v`: OpenCV's
    histogram (one SIMD pass, no clipped copy) plus the tails counted into the end bins."""
    edges = np.histogram_bin_edges(v[:0], _HIST_BINS, (lo, hi))  # numpy's, in v's dtype
    src = np.ascontiguousarray(v, dtype=np.float32).reshape(1, -1)
    hist = cv2.calcHist([src], [0], None, [_HIST_BINS], [lo, hi]).ravel().astype(np.int64)
    hist[0] += int(np.count_nonzero(v < np.float32(lo)))
    # calcHist's range is half-open: the top edge and above go to the last bin, as in numpy
    hist[-1] += int(np.count_nonzero(v >= np.float32(hi)))
    if lost := v.size - int(hist.sum()):  # rounding put a value on an end edge outside the range
        low = min(lost, max(0, int(np.count_nonzero(v < np.float32(edges[1]))) - int(hist[0])))
        hist[0] += low
        hist[-1] += lost - low
    return hist, edges


def label_counts(labels: np.ndarray, n_layers: int) -> np.ndarray:
    """int64 pixels per label 0..n_layers-1 of a uint8 label map (OpenCV's histogram: one pass,
    where `np.bincount` first widens the map to int64)."""
    lab = np.ascontiguousarray(labels, dtype=np.uint8)
    if lab.ndim == 1:
        lab = lab.reshape(1, -1)
    if lab.size == 0:
        return np.zeros(n_layers, dtype=np.int64)
    return cv2.calcHist([lab], [0], None, [n_layers], [0, n_layers]).ravel().astype(np.int64)


def layer_labels(nearness: np.ndarray, cuts: np.ndarray) -> np.ndarray:
    """uint8 (H, W): 0 = farthest (and invalid) … len(cuts) = nearest."""
    n = np.asarray(nearness, dtype=np.float32)
    labels = np.zeros(n.shape, dtype=np.uint8)
    with np.errstate(invalid="ignore"):
        for c in cuts:
            labels += n > np.float32(c)
    return labels


# --------------------------------------------------------------------------- boxes and alpha


def grown(box: Box, r: int, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """`box` grown by `r` on every side and clipped to an image of `shape`: x0, y0, x1, y1."""
    h, w = shape[:2]
    x, y, bw, bh = box
    return max(0, x - r), max(0, y - r), min(w, x + bw + r), min(h, y + bh + r)


def bbox(mask: np.ndarray) -> Box | None:
    """The smallest box holding every True pixel of `mask`, or None when there is none."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)


def label_boxes(labels: np.ndarray, n_layers: int) -> list[Box | None]:
    """Bounding box of every label 0..n_layers-1 (None when a label owns no pixel): OpenCV's
    bounding rectangle of each label's mask."""
    lab = np.ascontiguousarray(labels, dtype=np.uint8)
    out: list[Box | None] = []
    for k in range(n_layers):
        x, y, w, h = cv2.boundingRect((lab == k).view(np.uint8))  # of the non-zero pixels
        out.append((x, y, w, h) if w > 0 else None)
    return out


def feathered_alpha(
    labels: np.ndarray, k: int, feather_px: float, box: Box | None = None
) -> tuple[np.ndarray, Box] | None:
    """Alpha (float32 in [0, 1], cropped) of layer k and its bbox; None when k owns no pixel.

    1 on the layer's own pixels; around them a linear fade to 0 over `feather_px`, on farther
    pixels only (never over nearer ones, which would drag their colour along when moved).
    `box` is layer k's own bounding box when the caller already knows it.
    """
    if box is None:
        box = bbox(labels == k)
        if box is None:
            return None
    r = math.ceil(feather_px)
    x0, y0, x1, y1 = grown(box, r, labels.shape)
    lab = labels[y0:y1, x0:x1]
    own = lab == k
    if not own.any():
        return None
    alpha = own.astype(np.float32)
    if r > 0:
        size = 2 * r + 1
        # the box mean of the mask is (r + 1 - d) / size at distance d off a straight edge:
        # scaled, 1 - d / (feather + 1) → reaches 0 just past feather_px
        ramp = cv2.boxFilter(alpha, -1, (size, size), borderType=cv2.BORDER_CONSTANT)
        ramp *= np.float32(size / (feather_px + 1.0))
        np.minimum(ramp, 1.0, out=ramp)
        ramp[lab >= k] = 0.0  # own pixels are set to 1 below; nearer pixels get no fringe
        np.maximum(alpha, ramp, out=alpha)
    sub = bbox(alpha >= (0.5 / 255))
    assert sub is not None
    sx, sy, sw, sh = sub
    return alpha[sy : sy + sh, sx : sx + sw], (x0 + sx, y0 + sy, sw, sh)


def alpha8(alpha: np.ndarray) -> np.ndarray:
    """uint8 alpha (round half to even, like `np.rint`) of a float alpha in [0, 1], one pass."""
    return np.asarray(cv2.convertScaleAbs(alpha, alpha=255.0))


def parallax_factors(medians: list[float | None]) -> list[float]:
    """0 for the background, 1 for the nearest non-empty layer, linear in median nearness."""
    known = [m for m in medians if m is not None]
    far = medians[0] if medians[0] is not None else (min(known) if known else 0.0)
    near = max(known) if known else far
    span = near - far
    out = []
    for i, m in enumerate(medians):
        if i == 0:
            out.append(0.0)
        elif m is None or span <= 0:
            out.append(round(i / max(1, len(medians) - 1), 4))  # empty/flat: by position
        else:
            out.append(round(float(np.clip((m - far) / span, 0.0, 1.0)), 4))
    return out


def layer_nearness(
    n: np.ndarray, labels: np.ndarray, n_layers: int
) -> list[tuple[float, float, float] | None]:
    """(min, max, median) nearness of every layer's valid pixels (None when it has none)."""
    finite = np.isfinite(n)
    v = n[finite]
    lv = labels[finite]
    order = np.argsort(lv, kind="stable")  # radix sort on uint8: one fast pass
    vs = v[order]
    counts = label_counts(lv, n_layers)
    out: list[tuple[float, float, float] | None] = []
    start = 0
    for c in counts[:n_layers].tolist():
        seg = vs[start : start + c]
        start += c
        out.append(None if c == 0 else (float(seg.min()), float(seg.max()), float(np.median(seg))))
    return out

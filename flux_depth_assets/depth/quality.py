"""Depth-quality metrics for relative (affine-invariant) depth, as in the MiDaS / Depth Anything papers.

Protocol, stated once:

1. Ground truth is *disparity* (proportional to inverse depth, larger = nearer); 0 or non-finite = unknown.
2. A prediction is relative inverse depth (larger = nearer) known only up to scale and shift, so it is
   aligned to the GT in disparity space with a least-squares scale ``s`` and shift ``t`` fitted on the
   valid pixels: ``aligned = s * pred + t``.
3. The aligned disparity is clipped from below at ``floor`` (default: the smallest valid GT disparity,
   i.e. MiDaS's "depth cap" at the scene's farthest GT point). This guards against zero or negative
   aligned disparities, which have no depth, and keeps one wild pixel from dominating AbsRel.
4. Both are turned into depth (``1 / disparity``; the focal length × baseline factor cancels in the
   ratios below) and scored on the valid pixels:
   AbsRel = mean(|d_pred - d_gt| / d_gt), δ1 = fraction of pixels with max(d_pred/d_gt, d_gt/d_pred) < 1.25.

Every function is pure (numpy in, numbers out) so tests and the benchmark share one definition.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

DELTA1_THRESHOLD = 1.25

NormalsFn = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class DepthScores:
    abs_rel: float
    delta1: float
    scale: float
    shift: float
    valid_pixels: int


def valid_mask(gt_disparity: np.ndarray, pred: np.ndarray | None = None) -> np.ndarray:
    """Pixels where the GT disparity is known (> 0, finite) and, if given, the prediction is finite."""
    gt = np.asarray(gt_disparity, dtype=np.float64)
    mask = np.isfinite(gt) & (gt > 0)
    if pred is not None:
        mask &= np.isfinite(np.asarray(pred, dtype=np.float64))
    return mask


def align_scale_shift(
    pred: np.ndarray, target: np.ndarray, mask: np.ndarray
) -> tuple[float, float]:
    """Least-squares ``(s, t)`` minimising ``sum((s * pred + t - target)^2)`` over ``mask``.

    A constant prediction has no defined scale: it gets ``s = 0`` and ``t = mean(target)``, which is the
    least-squares optimum among all its minimisers.
    """
    p = np.asarray(pred, dtype=np.float64)[mask]
    g = np.asarray(target, dtype=np.float64)[mask]
    if p.size == 0:
        raise ValueError("no valid pixels to align on")
    p_mean, g_mean = p.mean(), g.mean()
    dp = p - p_mean
    var = float(np.dot(dp, dp))
    if var <= 1e-12 * max(1.0, p.size * p_mean * p_mean):
        return 0.0, float(g_mean)
    s = float(np.dot(dp, g - g_mean) / var)
    return s, float(g_mean - s * p_mean)


def abs_rel(pred_depth: np.ndarray, gt_depth: np.ndarray) -> float:
    """Mean absolute relative error, ``mean(|pred - gt| / gt)``, over the arrays given (already masked)."""
    pred_depth = np.asarray(pred_depth, dtype=np.float64)
    gt_depth = np.asarray(gt_depth, dtype=np.float64)
    return float(np.mean(np.abs(pred_depth - gt_depth) / gt_depth))


def delta1(
    pred_depth: np.ndarray, gt_depth: np.ndarray, threshold: float = DELTA1_THRESHOLD
) -> float:
    """Fraction of pixels with ``max(pred/gt, gt/pred) < threshold`` (already masked, both > 0)."""
    pred_depth = np.asarray(pred_depth, dtype=np.float64)
    gt_depth = np.asarray(gt_depth, dtype=np.float64)
    ratio = np.maximum(pred_depth / gt_depth, gt_depth / pred_depth)
    return float(np.mean(ratio < threshold))


def score_disparity(
    pred: np.ndarray, gt_disparity: np.ndarray, floor: float | None = None
) -> DepthScores:
    """Align a relative inverse-depth prediction to GT disparity and score it in depth space.

    ``pred`` and ``gt_disparity`` must have the same (H, W) shape. ``floor`` is the smallest aligned
    disparity allowed (default: the smallest valid GT disparity); it must be > 0.
    """
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt_disparity, dtype=np.float64)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} != ground-truth shape {gt.shape}")
    mask = valid_mask(gt, pred)
    if not mask.any():
        raise ValueError("ground truth has no valid pixels (all 0 / non-finite)")
    s, t = align_scale_shift(pred, gt, mask)
    g = gt[mask]
    if floor is None:
        floor = float(g.min())
    if not floor > 0:
        raise ValueError(f"floor must be > 0, got {floor}")
    aligned = np.maximum(s * pred[mask] + t, floor)
    pred_depth, gt_depth = 1.0 / aligned, 1.0 / g
    return DepthScores(
        abs_rel=abs_rel(pred_depth, gt_depth),
        delta1=delta1(pred_depth, gt_depth),
        scale=s,
        shift=t,
        valid_pixels=int(mask.sum()),
    )


# --------------------------------------------------------------------------- trivial baselines


def constant_baseline(shape: tuple[int, int]) -> np.ndarray:
    """Every pixel at the same depth (aligns to the mean GT disparity)."""
    return np.zeros(shape, dtype=np.float32)


def vertical_gradient_baseline(shape: tuple[int, int]) -> np.ndarray:
    """ "Bottom is near": nearness grows linearly from 0 at the top row to 1 at the bottom row."""
    h, w = shape
    col = np.linspace(0.0, 1.0, h, dtype=np.float32) if h > 1 else np.zeros(1, np.float32)
    return np.repeat(col[:, None], w, axis=1)


# --------------------------------------------------------------------------- normal maps


#: a GT disparity step larger than this between neighbours (in pixels of disparity) is a depth edge
NORMAL_EDGE_DISPARITY = 1.0
#: pixels within this many pixels of a depth edge, an unknown pixel or the border are not scored
NORMAL_EDGE_MARGIN = 4


def interior_mask(
    gt_disparity: np.ndarray,
    edge_step: float = NORMAL_EDGE_DISPARITY,
    margin: int = NORMAL_EDGE_MARGIN,
) -> np.ndarray:
    """Pixels inside objects: known GT, at least `margin` pixels from any depth edge, unknown
    pixel or image border (where a normal is not defined by one surface)."""
    from scipy import ndimage

    gt = np.asarray(gt_disparity, dtype=np.float64)
    known = valid_mask(gt)
    bad = ~known
    with np.errstate(invalid="ignore"):
        jx = np.abs(np.diff(gt, axis=1)) > edge_step
        jy = np.abs(np.diff(gt, axis=0)) > edge_step
    bad[:, :-1] |= jx
    bad[:, 1:] |= jx
    bad[:-1] |= jy
    bad[1:] |= jy
    if margin > 0:
        bad = ndimage.binary_dilation(bad, iterations=margin)
        bad[:margin] = bad[-margin:] = True
        bad[:, :margin] = bad[:, -margin:] = True
    return ~bad


def normal_error_deg(
    pred: np.ndarray,
    gt_disparity: np.ndarray,
    normals_fn: NormalsFn,
    gt_normals_fn: NormalsFn,
    mask: np.ndarray | None = None,
) -> float:
    """Mean angle (degrees) between normals of an aligned prediction and normals of the GT.

    The prediction is aligned to the GT disparity (least-squares scale and shift), then both are
    divided by the GT's valid range so they are height fields on one scale. The prediction's
    normals come from `normals_fn(height) -> (H, W, 3)` (what the pipeline does), the reference
    from `gt_normals_fn` (kept fixed across versions; unknown GT pixels are NaN). Scored on
    `mask` (default `interior_mask`): inside objects, away from depth edges.
    """
    gt = np.asarray(gt_disparity, dtype=np.float64)
    known = valid_mask(gt, pred)
    s, t = align_scale_shift(pred, gt, known)
    span = float(gt[known].max() - gt[known].min()) or 1.0
    aligned = ((s * np.asarray(pred, dtype=np.float64) + t) / span).astype(np.float32)
    truth = np.where(known, gt / span, np.nan).astype(np.float32)
    m = interior_mask(gt) if mask is None else mask
    a, b = normals_fn(aligned), gt_normals_fn(truth)
    dot = np.clip(
        (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)), -1.0, 1.0
    )
    return float(np.degrees(np.arccos(dot[m])).mean())

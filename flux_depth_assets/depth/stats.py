"""Per-image depth statistics for analytics and the declarative asset checks.

Input: `nearness` float (H, W), larger = nearer, NaN = invalid (the stored depth maps are
normalised to [0, 1] per image; `value_range` undoes that when the provider's scale matters).

Definitions (the column names of the `depth_stats` table):

- `valid_fraction`: finite pixels / all pixels.
- `p1 … p99`: percentiles of the valid nearness, in the map's stored [0, 1] scale.
- `nearness_mean`, `nearness_std`: of the valid nearness, same scale.
- `near_far_ratio`: p99 / p1 of nearness in the provider's own scale (`value_range`). For
  inverse depth that is (distance of the far 1%) / (distance of the near 1%); null when p1 <= 0
  (relative maps whose zero is arbitrary have no meaningful ratio).
- `edge_density`: fraction of valid pixels whose nearness differs from its right or lower
  neighbour by more than `EDGE_JUMP` of the p1..p99 range: pixels on a depth discontinuity.
  Smooth slopes do not count (their steps shrink with resolution); silhouettes do.
- `mean_tilt_deg`: mean angle between the surface normal and the view axis over valid pixels
  (normals from `normals_from_depth`, so it depends on the normal maps' `strength`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from flux_depth_assets.depth.normals import normals_from_depth

PERCENTILES = (1, 5, 25, 50, 75, 95, 99)
PERCENTILE_KEYS = tuple(f"p{p}" for p in PERCENTILES)
#: a neighbour jump above this fraction of the p1..p99 nearness range is a depth edge
EDGE_JUMP = 0.05


def edge_mask(nearness: np.ndarray, jump: float) -> np.ndarray:
    """bool (H, W): pixels whose right or lower valid neighbour differs by more than `jump`."""
    n = np.asarray(nearness, dtype=np.float32)
    out = np.zeros(n.shape, dtype=bool)
    with np.errstate(invalid="ignore"):
        out[:, :-1] |= np.abs(np.diff(n, axis=1)) > jump
        out[:-1, :] |= np.abs(np.diff(n, axis=0)) > jump
    return out


def depth_statistics(
    nearness: np.ndarray,
    normals: np.ndarray | None = None,
    *,
    value_range: tuple[float, float] | None = None,
    strength: float = 1.0,
) -> dict[str, Any]:
    """One row of the `depth_stats` table (without ids): see the module docstring."""
    n = np.asarray(nearness, dtype=np.float32)
    if n.ndim != 2 or n.size == 0:
        raise ValueError(f"expected a non-empty 2-D nearness map, got shape {n.shape}")
    h, w = n.shape
    valid = np.isfinite(n)
    n_valid = int(valid.sum())
    row: dict[str, Any] = {"width": w, "height": h, "valid_fraction": n_valid / n.size}
    if n_valid == 0:
        row.update(
            {
                k: None
                for k in (
                    *PERCENTILE_KEYS,
                    "nearness_mean",
                    "nearness_std",
                    "near_far_ratio",
                    "edge_density",
                    "mean_tilt_deg",
                )
            }
        )
        return row
    v = n[valid] if n_valid < n.size else n.ravel()
    pct = np.percentile(v, PERCENTILES)
    row.update({k: float(p) for k, p in zip(PERCENTILE_KEYS, pct)})
    row["nearness_mean"] = float(v.mean(dtype=np.float64))
    row["nearness_std"] = float(v.std(dtype=np.float64))

    p1, p99 = float(pct[0]), float(pct[-1])
    if value_range is not None and all(map(math.isfinite, value_range)):
        lo, hi = value_range
        p1, p99 = lo + p1 * (hi - lo), lo + p99 * (hi - lo)
    row["near_far_ratio"] = (p99 / p1) if p1 > 0 else None

    span = float(pct[-1] - pct[0])
    if span > 0:
        row["edge_density"] = float((edge_mask(n, EDGE_JUMP * span) & valid).sum()) / n_valid
    else:
        row["edge_density"] = 0.0

    nrm = normals_from_depth(n, strength) if normals is None else np.asarray(normals, np.float32)
    if nrm.shape != (h, w, 3):
        raise ValueError(f"normals {nrm.shape} do not match the depth map {(h, w)}")
    z = np.clip(nrm[..., 2], -1.0, 1.0)
    tilt = np.degrees(np.arccos(z[valid] if n_valid < n.size else z.ravel()))
    row["mean_tilt_deg"] = float(tilt.mean(dtype=np.float64))
    return row

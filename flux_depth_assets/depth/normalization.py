"""Catalog-wide depth normalisation, for image sequences and video frames.

Every stored depth map is min-max normalised on its own (`depth.encoding`): fine for single
photos, but along a sequence the per-frame min and max move, so the same surface changes
brightness frame to frame (the flicker people see with MiDaS / Depth Anything outputs). With
`depth_maps.normalization: catalog` the derived assets read each map back on the catalog's
common range instead: value = (raw - catalog_min) / (catalog_max - catalog_min), where raw is the
provider's value before the per-image scaling (kept in the `depth_maps` table as `depth_min`,
`depth_max`). Providers that already return [0, 1] per image (the embedded `local`) gain nothing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

Range = tuple[float, float]


def catalog_range(ranges: Iterable[tuple[float | None, float | None]]) -> Range | None:
    """(min of the images' minima, max of their maxima), ignoring unknown/non-finite values;
    None when no image has a usable range."""
    lo, hi = math.inf, -math.inf
    for a, b in ranges:
        if a is None or b is None or not (math.isfinite(a) and math.isfinite(b)):
            continue
        lo, hi = min(lo, a), max(hi, b)
    return (lo, hi) if hi > lo else None


def to_catalog_scale(nearness: np.ndarray, own: Range, catalog: Range) -> np.ndarray:
    """A per-image [0, 1] map (NaN = invalid) re-expressed on the catalog's range, in [0, 1]."""
    (a, b), (lo, hi) = own, catalog
    raw = np.asarray(nearness, dtype=np.float64) * (b - a) + a
    return ((raw - lo) / (hi - lo)).astype(np.float32)

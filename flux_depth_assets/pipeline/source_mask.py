"""Transparent source pixels become invalid depth: the alpha mask kept beside the source copy.

The provider sees the source composited on white (a model needs RGB), but a transparent pixel
has no surface, so its depth is invalid (NaN → 0 in the 16-bit PNG) and every table computed
from the depth map (depth_stats' `valid_fraction`, the declared `valid_depth_ratio`) counts it
as such. The mask is stored only for sources with at least one fully transparent pixel, as
`<normalised copy>.alpha.png` (L, 0 = transparent), when the normalised copy is written.
No Dagster here.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from flux_depth_assets.storage.store import Storage


def mask_rel(normalized_rel: str) -> str:
    return normalized_rel.removesuffix(".png") + ".alpha.png"


def write_mask(storage: Storage, normalized_rel: str, alpha: Image.Image | None) -> str | None:
    """Store the alpha channel when some pixel is fully transparent; its path, or None."""
    if alpha is None:
        return None
    if int(np.asarray(alpha.convert("L")).min()) > 0:
        return None
    buf = io.BytesIO()
    alpha.convert("L").save(buf, format="PNG", compress_level=3)
    rel = mask_rel(normalized_rel)
    storage.write_bytes(rel, buf.getvalue())
    return rel


def transparent(storage: Storage, src_row: dict, shape: tuple[int, int]) -> np.ndarray | None:
    """Boolean (H, W) of fully transparent source pixels at `shape`, or None if there are none."""
    if not src_row.get("has_alpha") or not src_row.get("normalized_path"):
        return None
    rel = mask_rel(src_row["normalized_path"])
    if not storage.exists(rel):
        return None
    with Image.open(io.BytesIO(storage.read_bytes(rel))) as im:
        a = im.convert("L")
        if a.size != (shape[1], shape[0]):
            a = a.resize((shape[1], shape[0]), Image.Resampling.NEAREST)
        return np.asarray(a) == 0


def apply_mask(storage: Storage, src_row: dict, nearness: np.ndarray) -> np.ndarray:
    """`nearness` with NaN (invalid) where the source is fully transparent."""
    hole = transparent(storage, src_row, nearness.shape[:2])
    if hole is None or not hole.any():
        return nearness
    out = np.array(nearness, dtype=np.float32, copy=True)
    out[hole] = np.nan
    return out

"""Does a sprite folder leave holes when the camera sways? Read back from its files.

The preview moves layer k by `parallax_factor × (dx, dy)` with (dx, dy) on an ellipse of
half-axes (A, 0.3 A), A = `preview.amplitude_px` scaled to the full frame. At the four extreme
offsets every pixel of the preview's crop must be covered: the layers composited there must
reach full opacity. A pixel that is not is *unfilled*: what a player would show as empty.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from flux_depth_assets.depth.sprites import decode_rgba

#: coverage below this (of 1) counts as unfilled
OPAQUE = 1.0 - 1.0 / 255.0


def largest_offsets(manifest: dict[str, Any]) -> list[tuple[float, float]]:
    """The preview's extreme camera offsets, full-frame pixels."""
    prev = manifest["preview"]
    w, h = manifest["image"]["width"], manifest["image"]["height"]
    scale = max(w, h) / max(prev["width"], prev["height"], 1)  # preview px → frame px (≈)
    amp = float(prev["amplitude_px"]) * scale
    return [(amp, 0.0), (-amp, 0.0), (0.0, 0.3 * amp), (0.0, -0.3 * amp)]


def layer_alphas(
    manifest: dict[str, Any], layer: Callable[[str], np.ndarray]
) -> list[tuple[np.ndarray, dict[str, Any]]]:
    """(alpha float32 in [0, 1], manifest entry) of every non-empty layer; `layer(file_name)`
    gives that file's uint8 RGBA pixels."""
    out = []
    for entry in manifest["layers"]:
        if not entry["empty"]:
            a8 = layer(entry["file"])[..., 3]
            out.append((a8.astype(np.float32) * np.float32(1.0 / 255.0), entry))
    return out


def coverage_at(
    manifest: dict[str, Any],
    alphas: list[tuple[np.ndarray, dict[str, Any]]],
    offset: tuple[float, float],
) -> np.ndarray:
    """float32 (H, W): composited opacity of every layer moved by factor × offset."""
    w, h = manifest["image"]["width"], manifest["image"]["height"]
    clear = np.ones((h, w), dtype=np.float32)  # product of (1 - alpha)
    for a, layer in alphas:
        b = layer["bbox"]
        f = float(layer["parallax_factor"])
        x = b["x"] + round(f * offset[0])
        y = b["y"] + round(f * offset[1])
        x0, y0 = max(0, x), max(0, y)
        x1, y1 = min(w, x + a.shape[1]), min(h, y + a.shape[0])
        if x1 <= x0 or y1 <= y0:
            continue
        part = a[y0 - y : y1 - y, x0 - x : x1 - x]
        if (x0, y0, x1, y1) == (0, 0, w, h) and float(part.min()) >= 1.0:
            return np.ones((h, w), dtype=np.float32)  # one opaque layer over all: every pixel
        clear[y0:y1, x0:x1] *= 1.0 - part
    return 1.0 - clear


def unfilled_pixels(manifest: dict[str, Any], read: Callable[[str], bytes]) -> int:
    """How many pixels of the preview's crop are not fully covered at the largest offset
    (the worst of the four extremes). 0 for a sound sprite set. `read(file_name)`: its bytes."""
    return unfilled_in_layers(manifest, lambda name: decode_rgba(read(name)))


def unfilled_in_layers(manifest: dict[str, Any], layer: Callable[[str], np.ndarray]) -> int:
    """`unfilled_pixels` from decoded layers (`layer(file_name)`: uint8 RGBA pixels)."""
    w, h = manifest["image"]["width"], manifest["image"]["height"]
    crop = int(np.ceil(float(manifest["preview"].get("crop_px", 0.0))))
    alphas = layer_alphas(manifest, layer)
    worst = 0
    for off in largest_offsets(manifest):
        cov = coverage_at(manifest, alphas, off)[crop : h - crop or None, crop : w - crop or None]
        worst = max(worst, int((cov < OPAQUE).sum()))
    return worst

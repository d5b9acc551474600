"""Gallery thumbnails, made where the pixels already are.

The assets that write an image the gallery shows (the normalised source, the depth map, the normal
map, the sway preview) also write its thumbnail while the pixels are still in memory, so the
gallery decodes nothing: decoding three 1 MP PNGs and a 24-frame animation per image only to
shrink them was ~45 of the gallery's ~50 CPU-ms per image. A thumbnail is named by what it shows
(`thumb_rel`: the output's path and content), so the gallery makes any that is missing (outputs
from before this, a write that failed) the same way, from the file.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Sequence

import cv2
import numpy as np
from PIL import Image

from flux_depth_assets.depth.preview import encode_animation
from flux_depth_assets.paths import safe_segment
from flux_depth_assets.storage.store import Storage

THUMB_SIDE = 160


def gallery_dir(catalog: str) -> str:
    return f"galleries/{safe_segment(catalog)}"


def thumb_name(kind: str, rel: str, key: str) -> str:
    """`thumbs/<kind>-<tag>.<ext>` under the gallery: by the output's path and content key, so an
    output shared by two rows shares its thumbnail, and a changed output gets a new one."""
    ext = "webp" if kind == "preview" else "jpg"
    tag = hashlib.sha256(f"{rel}:{key}".encode()).hexdigest()[:10]
    return f"thumbs/{kind}-{tag}.{ext}"


def thumb_rel(catalog: str, kind: str, rel: str, key: str) -> str:
    return f"{gallery_dir(catalog)}/{thumb_name(kind, rel, key)}"


def preview_key(depth_sha256: str, params_hash: str) -> str:
    """What a sway preview depends on: its depth map and the sprite settings."""
    return f"{depth_sha256}:{params_hash}"


def _fit(w: int, h: int, side: int = THUMB_SIDE) -> tuple[int, int]:
    f = min(1.0, side / max(w, h))
    return max(1, round(w * f)), max(1, round(h * f))


def still_thumb(pixels: np.ndarray) -> bytes:
    """A JPEG at most THUMB_SIDE px of gray or RGB(A) pixels, 8- or 16-bit (16-bit keeps its high
    byte; alpha is dropped): OpenCV's area resize, which averages every source pixel."""
    a = np.asarray(pixels)
    if a.dtype == np.uint16:
        a = (a >> 8).astype(np.uint8)
    elif a.dtype != np.uint8:
        raise ValueError(f"expected uint8 or uint16 pixels, got {a.dtype}")
    if a.ndim == 3:
        a = a[..., :3] if a.shape[2] >= 3 else a[..., 0]
    h, w = a.shape[:2]
    small = cv2.resize(np.ascontiguousarray(a), _fit(w, h), interpolation=cv2.INTER_AREA)
    buf = io.BytesIO()
    Image.fromarray(small, "RGB" if small.ndim == 3 else "L").save(buf, format="JPEG", quality=80)
    return buf.getvalue()


def sway_thumb(frames: Sequence[Image.Image], frame_ms: int | Sequence[int]) -> bytes:
    """The sway animation at thumbnail size: every other frame (a page of 100 rows then loads
    ~3 MB of previews instead of ~13), THUMB_SIDE px, lossy WebP."""
    step = 2 if len(frames) > 8 else 1
    durations = [frame_ms] * len(frames) if isinstance(frame_ms, int) else list(frame_ms)
    shown, times = [], []
    for i in range(0, len(frames), step):
        rgb = np.asarray(frames[i].convert("RGB"))
        h, w = rgb.shape[:2]
        small = cv2.resize(rgb, _fit(w, h), interpolation=cv2.INTER_AREA)
        shown.append(Image.fromarray(small, "RGB"))
        times.append(sum(durations[i : i + step]))
    return encode_animation(shown, "webp", times, quality=60)


def put_thumb(
    store: Storage, catalog: str, kind: str, rel: str, key: str, make: Callable[[], bytes]
) -> None:
    """Write one thumbnail, best effort: if it cannot be written the gallery makes it later."""
    try:
        store.write_bytes(thumb_rel(catalog, kind, rel, key), make())
    except OSError:
        pass

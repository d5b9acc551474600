"""Is what a host returned in `depth` mode a depth map? And stop paying when it keeps not being one.

Hosts differ: flux-depth-pro as Black Forest Labs serves it returns a depth-*guided generation*
(a colour image), not a depth map, while the Eachlabs deployment this project was built against
returns a grayscale map for an empty prompt. Nothing in the protocol says which one answered, so
every result is checked before it is stored as a depth map:

- it decodes as an image (PNG/JPEG/WebP);
- it is gray: its channels agree (up to compression noise);
- its aspect ratio is the source's after EXIF orientation (a host may scale, never rotate or crop).

`ResultBreaker` counts bad results in one run; after `limit` of them the run stops creating
predictions, so a catalog pays for a handful of calls, not all of them, to learn that its host
answers differently. Host-agnostic and Dagster-free: every hosted adapter reuses it.
"""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass

import numpy as np
from PIL import Image

# Channels of a gray image saved as JPEG differ by a few levels (chroma subsampling); a colour
# image differs by tens across much of the frame.
MAX_CHANNEL_SPREAD = 12  # levels of 255, at the 99th percentile of pixels
MAX_ASPECT_ERROR = 0.03  # relative; covers rounding when the host scales the image
BREAKER_LIMIT = 3
ADVICE = (
    "this host returns depth-guided renders, not depth maps: set `mode: render` for that "
    "host, or use a provider that returns depth maps"
)


@dataclass(frozen=True)
class ResultProblem:
    """Why a result is not a depth map: what came back, in one line, and what to do."""

    what: str
    advice: str = ADVICE

    def __str__(self) -> str:
        return f"{self.what}; {self.advice}"


def check_depth_result(data: bytes, source_size: tuple[int, int] | None) -> ResultProblem | None:
    """None when `data` looks like a depth map for an image of `source_size` (width, height,
    orientation applied); otherwise what is wrong with it."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            fmt, mode, size = im.format, im.mode, im.size
            rgb = (
                np.asarray(im.convert("RGB")) if mode not in ("L", "I", "I;16", "F", "1") else None
            )
    except Exception as exc:  # noqa: BLE001 - any decoder error means "not an image"
        return ResultProblem(
            f"the host returned {len(data)} bytes that do not decode as an image "
            f"({type(exc).__name__})",
            "check the host's output format, or use `mode: render` if it returns "
            "something other than depth maps",
        )
    if rgb is not None:
        spread = _channel_spread(rgb)
        if spread > MAX_CHANNEL_SPREAD:
            return ResultProblem(
                f"the host returned a colour {fmt} image ({size[0]}x{size[1]}, "
                f"channels differ by up to {spread} levels), not a gray depth map"
            )
    if source_size is not None and all(source_size) and all(size):
        want = source_size[0] / source_size[1]
        got = size[0] / size[1]
        if abs(got - want) / want > MAX_ASPECT_ERROR:
            return ResultProblem(
                f"the host returned a {size[0]}x{size[1]} image for a {source_size[0]}x"
                f"{source_size[1]} source (aspect {got:.3f} vs {want:.3f}): not a depth map of "
                "this image",
                "check that the host received the oriented image; a rotated or "
                "cropped result cannot be used as its depth map",
            )
    return None


def _channel_spread(rgb: np.ndarray) -> int:
    """99th percentile over pixels of the largest difference between two channels."""
    a = rgb.astype(np.int16)
    spread = np.maximum(
        np.abs(a[..., 0] - a[..., 1]),
        np.maximum(np.abs(a[..., 1] - a[..., 2]), np.abs(a[..., 0] - a[..., 2])),
    )
    return int(np.percentile(spread, 99))


class ResultBreaker:
    """Counts bad results in one run; `tripped` once `limit` were seen. Thread-safe."""

    def __init__(self, limit: int = BREAKER_LIMIT):
        self.limit = limit
        self.bad = 0
        self.good = 0
        self.last: ResultProblem | None = None
        self._lock = threading.Lock()

    def record(self, problem: ResultProblem | None) -> None:
        with self._lock:
            if problem is None:
                self.good += 1
            else:
                self.bad += 1
                self.last = problem

    @property
    def tripped(self) -> bool:
        return self.bad >= self.limit

    @property
    def verified(self) -> bool:
        """At least one result passed: the host answers with depth maps."""
        return self.good > 0

    def reason(self) -> str:
        return (
            f"stopped creating predictions after {self.bad} results that were not depth "
            f"maps (last: {self.last})"
        )

"""Parallax sprites: depth layers with soft alpha, a filled background, a manifest and a preview.

Conventions (stated once; `docs/derived.md` explains them for users):

- Input: `rgb` uint8 (H, W, 3) and `nearness` float (H, W) of the same size, larger = nearer,
  NaN = invalid (invalid pixels belong to the background).
- Layers are numbered in **draw order, far → near**: `layer_0.png` is the background, full frame
  and opaque, with every pixel that a nearer layer covers filled in (inpainted) so a moved camera
  never sees a hole; `layer_1 … layer_{N-1}` are RGBA PNGs cropped to their bounding box
  (placed at `bbox.x, bbox.y` of the full frame).
- Cuts: the N-1 nearness thresholds are chosen on the nearness histogram to sit where it is
  least populated while keeping the layers near equal shares of the pixels (see `depth_cuts`).
  Depth edges between objects are gaps in that histogram, so the cuts follow object boundaries
  instead of slicing a surface. A pixel with nearness > cut k is nearer than the cut.
- Alpha is 1 on the pixels a layer owns and fades out *outward* over `feather_px`, only over
  farther pixels, whose own colour the fade carries. So compositing all layers in order at zero
  offset gives back the source pixels exactly, while a moved layer has a soft edge.
- Parallax factor: 0 for the background, 1 for the nearest layer, linear in the layer's median
  nearness in between (screen motion under a camera translation is proportional to inverse
  depth). A layer moves `factor × camera offset`.

The pieces live in `depth.layers` (cuts, labels, alpha), `depth.inpaint` (background fill) and
`depth.preview` (the sway animation); this module assembles them and is the public API.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import cv2
import numpy as np
from PIL import Image

from flux_depth_assets.config.models import SpriteSettings
from flux_depth_assets.depth.encoding import decode_image, encode_png
from flux_depth_assets.depth.inpaint import as_rgb8, fill_holes
from flux_depth_assets.depth.layers import (
    Box,
    alpha8,
    bbox,
    depth_cuts,
    feathered_alpha,
    grown,
    label_boxes,
    label_counts,
    layer_labels,
    layer_nearness,
    parallax_factors,
)
from flux_depth_assets.depth.preview import PREVIEW_LOOP_MS, SWAY_AMPLITUDE, sway_preview

__all__ = [
    "MANIFEST_FORMAT",
    "MANIFEST_VERSION",
    "PREVIEW_LOOP_MS",
    "SWAY_AMPLITUDE",
    "Box",
    "SpriteLayer",
    "SpriteSet",
    "build_sprites",
    "decode_rgba",
    "depth_cuts",
    "feathered_alpha",
    "fill_holes",
    "label_boxes",
    "layer_labels",
    "manifest_bytes",
    "match_size",
    "psnr",
    "recompose",
]

MANIFEST_FORMAT = "flux-depth-parallax-sprites"
MANIFEST_VERSION = 1


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class SpriteLayer:
    index: int
    file: str
    png: bytes
    bbox: Box | None  # x, y, width, height in full-frame pixels
    nearness_min: float | None
    nearness_max: float | None
    nearness_median: float | None
    parallax_factor: float
    coverage: float  # fraction of the frame this layer owns


@dataclass(frozen=True)
class SpriteSet:
    layers: list[SpriteLayer]  # draw order, far → near
    manifest: dict[str, Any]
    preview: bytes
    preview_file: str
    seconds: dict[str, float] = field(default_factory=dict)  # CPU seconds per stage
    # the preview's frames before encoding (not a file: for a thumbnail without decoding it)
    preview_frames: list[Image.Image] = field(default_factory=list, repr=False)

    def files(self) -> dict[str, bytes]:
        """Every file of the sprite folder by name (layers, manifest.json, preview)."""
        out = {layer.file: layer.png for layer in self.layers}
        out["manifest.json"] = manifest_bytes(self.manifest)
        out[self.preview_file] = self.preview
        return out


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    return (json.dumps(manifest, indent=2, sort_keys=False) + "\n").encode()


# --------------------------------------------------------------------------- entry point


def _png(arr: np.ndarray, mode: str) -> bytes:
    return encode_png(arr)  # the pipeline's PNG writer (depth.encoding): Up filter, zlib RLE 1


def build_sprites(
    rgb: np.ndarray,
    nearness: np.ndarray,
    settings: SpriteSettings | None = None,
    *,
    image_id: str | None = None,
    depth_sha256: str | None = None,
    cut_method: Literal["valley", "quantile"] = "valley",
    faces: list[Box] | None = None,
) -> SpriteSet:
    """Split an image into `settings.layers` depth layers, fill the background, make a preview.
    `faces`: boxes already found in this image (the local estimator's); None: detect them."""
    settings = settings or SpriteSettings()
    n = np.asarray(nearness, dtype=np.float32)
    img = as_rgb8(rgb)
    if n.shape != img.shape[:2]:
        raise ValueError(
            f"nearness {n.shape} and image {img.shape[:2]} differ in size; "
            "resize the depth map first (see match_size)"
        )
    h, w = n.shape
    n_layers = settings.layers
    seconds: dict[str, float] = {}
    clock = time.process_time()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.process_time()
        seconds[name] = round(now - clock, 4)
        clock = now

    cuts = depth_cuts(n, n_layers, cut_method)
    labels = keep_faces_whole(img, layer_labels(n, cuts), faces)
    coverage = label_counts(labels, n_layers) / labels.size
    near_stats = layer_nearness(n, labels, n_layers)
    boxes = label_boxes(labels, n_layers)
    lap("cut")

    alphas: list[tuple[np.ndarray, Box] | None] = [None] * n_layers
    colours: list[np.ndarray | None] = [None] * n_layers
    reach = fill_reach(w, h, settings)
    for k in range(1, n_layers):
        if (box_k := boxes[k]) is not None:
            alphas[k], colours[k] = filled_layer(img, labels, k, settings.feather_px, box_k, reach)
    lap("alpha")

    # the background: its own pixels as they are; pixels under nearer layers filled from
    # background pixels that are not right next to a nearer layer (those often carry its fringe)
    holes = labels > 0
    if holes.any():
        known = cv2.dilate(holes.view(np.uint8), np.ones((5, 5), np.uint8)) == 0
        if not known.any():
            known = ~holes
        background = fill_holes(img, known, fill=holes)
    else:
        background = img.copy()
    lap("fill")

    factors = parallax_factors([None if st is None else st[2] for st in near_stats])
    layers: list[SpriteLayer] = []
    for k in range(n_layers):
        name = f"layer_{k}.png"
        box: Box | None
        if k == 0:
            png, box = _png(cv2.cvtColor(background, cv2.COLOR_RGB2RGBA), "RGBA"), (0, 0, w, h)
        elif (entry := alphas[k]) is None:
            png, box = _png(np.zeros((1, 1, 4), np.uint8), "RGBA"), None
        else:
            alpha, box = entry
            colour = colours[k]
            assert colour is not None
            png = _png(layer_rgba(colour, alpha), "RGBA")
        st = near_stats[k]
        layers.append(
            SpriteLayer(
                index=k,
                file=name,
                png=png,
                bbox=box,
                nearness_min=None if st is None else st[0],
                nearness_max=None if st is None else st[1],
                nearness_median=None if st is None else st[2],
                parallax_factor=factors[k],
                coverage=float(coverage[k]),
            )
        )
    lap("encode_layers")

    timings: dict[str, float] = {}
    preview, preview_info, frames = sway_preview(
        img, background, alphas, factors, settings, colours, timings
    )
    preview_file = f"preview.{settings.preview_format}"
    preview_info["file"] = preview_file
    lap("preview")  # frames + encoding; the split below
    seconds["preview_encode"] = timings.get("preview_encode", 0.0)
    seconds["preview_frames"] = round(seconds["preview"] - seconds["preview_encode"], 4)

    manifest = _manifest(
        layers,
        cuts,
        preview_info,
        settings,
        width=w,
        height=h,
        image_id=image_id,
        depth_sha256=depth_sha256,
        cut_method=cut_method,
    )
    return SpriteSet(
        layers=layers,
        manifest=manifest,
        preview=preview,
        preview_file=preview_file,
        seconds=seconds,
        preview_frames=frames,
    )


def layer_rgba(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """uint8 RGBA of a layer: its colours where alpha rounds above 0, zero elsewhere (fully
    transparent pixels carry no colour, so they compress to nothing). OpenCV's masked AND and
    channel merge: a numpy masked copy of the same took 8 ms per layer at 1 MP."""
    a8 = alpha8(alpha)
    shown = cv2.bitwise_and(colour, colour, mask=(a8 > 0).view(np.uint8))
    return cv2.merge((*cv2.split(shown), a8))


def keep_faces_whole(
    img: np.ndarray, labels: np.ndarray, faces: list[Box] | None = None
) -> np.ndarray:
    """No cut runs through a face: the ellipse inside each face box goes whole to the layer most
    of it is in. `faces` (full-frame boxes) when they are known, else found here (the OpenCV
    cascade of `depth.subjects`, on a 256 px copy)."""
    from flux_depth_assets.depth.subjects import detect_faces, scale_box

    h, w = labels.shape
    if faces is None:
        f = min(1.0, 256 / max(h, w))
        small = cv2.resize(
            img, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA
        )
        found = detect_faces(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY))
        faces = [scale_box(face.box, 1 / f, 1 / f) for face in found]
    if not faces:
        return labels
    out = labels.copy()
    for x, y, bw, bh in faces:
        ellipse = np.zeros((h, w), dtype=np.uint8)
        cv2.ellipse(ellipse, (x + bw // 2, y + bh // 2), (bw // 2, int(bh * 0.6)), 0, 0, 360, 1, -1)
        inside = ellipse.astype(bool)
        if inside.any():
            out[inside] = np.bincount(labels[inside]).argmax()
    return out


def fill_reach(w: int, h: int, settings: SpriteSettings) -> int:
    """How far (full-frame pixels) a nearer layer can slide over a farther one in the preview:
    the farther layer is filled that far under the nearer ones."""
    long_out = min(settings.preview_max_side, max(h, w))
    return math.ceil(SWAY_AMPLITUDE * long_out * max(h, w) / long_out) + 2


def filled_layer(
    img: np.ndarray, labels: np.ndarray, k: int, feather_px: float, box: Box, reach: int
) -> tuple[tuple[np.ndarray, Box] | None, np.ndarray]:
    """Layer k's alpha (cropped, with its bbox) and colours: its own pixels with a feathered
    edge, plus every nearer layer's pixel within `reach` of them, opaque and inpainted from
    layer k's own colours (push-pull, `fill_holes`: one pass for any hole size), so a
    nearer layer moving away uncovers layer k, not the background."""
    import cv2

    h, w = labels.shape
    # everything happens in layer k's box grown by the reach: nothing farther can be filled
    x0, y0, x1, y1 = grown(box, reach, labels.shape)
    lab = labels[y0:y1, x0:x1]
    own = lab == k
    # within `reach` of an own pixel: a distance transform, O(pixels) whatever the reach
    dist = cv2.distanceTransform((~own).view(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_3)
    under = (dist <= reach) & (lab > k)
    base = feathered_alpha(labels, k, feather_px, box)
    alpha_win = np.zeros(lab.shape, dtype=np.float32)
    if base is not None:
        a, (ax, ay, aw, ah) = base
        alpha_win[ay - y0 : ay - y0 + ah, ax - x0 : ax - x0 + aw] = a
    alpha_win[under] = 1.0
    sub = bbox(alpha_win >= (0.5 / 255))
    if sub is None:
        return None, np.zeros((1, 1, 3), np.uint8)
    sx, sy, sw, sh = sub
    crop = (x0 + sx, y0 + sy, sw, sh)
    if under.any():  # smooth: a coarse grid will do
        fill = np.zeros((h, w), dtype=bool)
        fill[y0:y1, x0:x1] = under
        colour = fill_holes(img, labels == k, fill=fill, work_side=256, box=crop)
    else:
        colour = img[crop[1] : crop[1] + sh, crop[0] : crop[0] + sw]
    return (alpha_win[sy : sy + sh, sx : sx + sw], crop), colour


def _manifest(
    layers: list[SpriteLayer],
    cuts: np.ndarray,
    preview_info: dict[str, Any],
    settings: SpriteSettings,
    *,
    width: int,
    height: int,
    image_id: str | None,
    depth_sha256: str | None,
    cut_method: str,
) -> dict[str, Any]:
    """manifest.json: where each layer goes, how it moves, and what it was made from."""
    bounds = [None, *cuts.tolist(), None]
    return {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "image": {"id": image_id, "width": width, "height": height},
        "depth": {
            "sha256": depth_sha256,
            "convention": "nearness in [0, 1], larger = nearer (relative inverse depth)",
        },
        "order": "far_to_near",
        "placement": "draw the layers in list order, each PNG at (bbox.x, bbox.y) of the full "
        "frame; move a layer by parallax_factor × the camera offset",
        "cut_method": cut_method,
        "cuts": [round(c, 6) for c in cuts.tolist()],
        "feather_px": settings.feather_px,
        "layers": [
            {
                "index": L.index,
                "file": L.file,
                "role": "background" if L.index == 0 else "layer",
                "empty": L.bbox is None,
                "bbox": None
                if L.bbox is None
                else dict(zip(("x", "y", "width", "height"), L.bbox)),
                "nearness": {
                    "above_cut": _r(bounds[L.index]),
                    "up_to_cut": _r(bounds[L.index + 1]),
                    "min": _r(L.nearness_min),
                    "max": _r(L.nearness_max),
                    "median": _r(L.nearness_median),
                },
                "parallax_factor": L.parallax_factor,
                "coverage": round(L.coverage, 6),
                "inpainted": L.index == 0 or (L.bbox is not None and L.index < len(layers) - 1),
            }
            for L in layers
        ],
        "preview": preview_info,
    }


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 6)


# --------------------------------------------------------------------------- reading back


def decode_rgba(data: bytes) -> np.ndarray:
    return decode_image(data, "RGBA")


def recompose(manifest: dict[str, Any], read: Callable[[str], bytes]) -> np.ndarray:
    """uint8 (H, W, 3): every layer of a sprite folder drawn in order at zero offset.

    `read(file_name)` returns a file's bytes from the folder (so this works on storage or memory).
    """
    return recompose_layers(manifest, lambda name: decode_rgba(read(name)))


def recompose_layers(manifest: dict[str, Any], layer: Callable[[str], np.ndarray]) -> np.ndarray:
    """`recompose` from decoded layers: `layer(file_name)` is that file's uint8 RGBA pixels."""
    w, h = manifest["image"]["width"], manifest["image"]["height"]
    out = np.zeros((h, w, 3), dtype=np.float32)
    for entry in manifest["layers"]:
        if entry["empty"]:
            continue
        rgba = layer(entry["file"])
        b = entry["bbox"]
        x, y, bw, bh = b["x"], b["y"], b["width"], b["height"]
        if rgba.shape[:2] != (bh, bw):
            raise ValueError(
                f"{entry['file']}: size {rgba.shape[1]}x{rgba.shape[0]} does not "
                f"match its bbox {bw}x{bh}"
            )
        region = out[y : y + bh, x : x + bw]
        a8 = rgba[..., 3]
        if a8.min() == 255:  # an opaque layer (the background): it replaces what is below
            region[...] = rgba[..., :3]
            continue
        # "over" as region + a * (colour - region): one float copy of the layer, in place
        step = rgba[..., :3].astype(np.float32)
        step -= region
        step *= (a8.astype(np.float32) * np.float32(1.0 / 255.0))[..., None]
        region += step
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of two uint8 images (inf when identical)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"psnr of images of different sizes: {a.shape} and {b.shape}")
    if np.array_equal(a, b):
        return math.inf
    if a.dtype == b.dtype == np.uint8:  # OpenCV's one streaming pass (numpy: two float64 copies)
        return float(cv2.PSNR(a, b))
    d = a.astype(np.float64) - b.astype(np.float64)
    return 10.0 * math.log10(255.0**2 / float(np.mean(d * d)))


def match_size(nearness: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize a nearness map to (height, width): bilinear values, nearest-neighbour validity."""
    n = np.asarray(nearness, dtype=np.float32)
    if n.shape == (height, width):
        return n
    valid = np.isfinite(n)
    vals = Image.fromarray(np.where(valid, n, 0.0).astype(np.float32), "F").resize(
        (width, height), Image.Resampling.BILINEAR
    )
    out = np.asarray(vals, dtype=np.float32).copy()
    if not valid.all():
        v = Image.fromarray(valid.astype(np.uint8) * 255, "L").resize(
            (width, height), Image.Resampling.NEAREST
        )
        out[np.asarray(v) == 0] = np.nan
    return out

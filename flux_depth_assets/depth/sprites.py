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
"""

from __future__ import annotations

import io
import json
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

import numpy as np
from PIL import Image
from scipy import ndimage

from flux_depth_assets.config.models import SpriteSettings

MANIFEST_FORMAT = "flux-depth-parallax-sprites"
MANIFEST_VERSION = 1
#: sway amplitude of the nearest layer in the preview, as a fraction of the preview width
SWAY_AMPLITUDE = 0.03
PREVIEW_FRAME_MS = 60
_HIST_BINS = 512
#: the cut search penalises layers below this share of the pixels, up to _EMPTY_PENALTY when empty
_MIN_SHARE = 0.01
_EMPTY_PENALTY = 10.0


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class SpriteLayer:
    index: int
    file: str
    png: bytes
    bbox: tuple[int, int, int, int] | None  # x, y, width, height in full-frame pixels
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

    def files(self) -> dict[str, bytes]:
        """Every file of the sprite folder by name (layers, manifest.json, preview)."""
        out = {layer.file: layer.png for layer in self.layers}
        out["manifest.json"] = manifest_bytes(self.manifest)
        out[self.preview_file] = self.preview
        return out


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    return (json.dumps(manifest, indent=2, sort_keys=False) + "\n").encode()


# --------------------------------------------------------------------------- cuts


def depth_cuts(nearness: np.ndarray, n_layers: int,
               method: Literal["valley", "quantile"] = "valley") -> np.ndarray:
    """N-1 ascending nearness thresholds (float64); a pixel's layer = the number of cuts below it.

    `quantile`: the k/N quantiles. `valley` (default): the cuts that minimise, over the nearness
    histogram, the pixel density at the cuts (so they fall into the gaps between objects'
    depths) plus a penalty for layers far from an equal share of the pixels, plus a large one for
    (nearly) empty layers; solved exactly by dynamic programming over histogram edges.
    """
    if n_layers < 1:
        raise ValueError(f"n_layers must be >= 1, got {n_layers}")
    v = np.asarray(nearness, dtype=np.float32)
    v = v[np.isfinite(v)]
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
    hist, edges = np.histogram(np.clip(v, lo, hi), bins=_HIST_BINS, range=(lo, hi))
    cdf = np.concatenate([[0.0], np.cumsum(hist) / v.size])  # share below each edge
    # density around each interior edge (1 = uniform), smoothed so a gap is cheapest mid-gap
    dens = np.convolve(hist.astype(np.float64), np.ones(5) / 5, mode="same") * (_HIST_BINS / v.size)
    edge_cost = np.full(_HIST_BINS + 1, np.inf)
    edge_cost[1:-1] = 0.5 * (dens[:-1] + dens[1:])
    # layer cost between edges a < b
    share = cdf[None, :] - cdf[:, None]
    layer_cost = (n_layers * share - 1.0) ** 2 \
        + _EMPTY_PENALTY * np.clip(1.0 - share / _MIN_SHARE, 0.0, None)
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


def layer_labels(nearness: np.ndarray, cuts: np.ndarray) -> np.ndarray:
    """uint8 (H, W): 0 = farthest (and invalid) … len(cuts) = nearest."""
    n = np.asarray(nearness, dtype=np.float32)
    labels = np.zeros(n.shape, dtype=np.uint8)
    with np.errstate(invalid="ignore"):
        for c in cuts:
            labels += n > np.float32(c)
    return labels


# --------------------------------------------------------------------------- background fill


def _down2(x: np.ndarray) -> np.ndarray:
    """Sum of 2×2 blocks (zero-padded to even size)."""
    h, w = x.shape[:2]
    if h % 2 or w % 2:
        pad = [(0, h % 2), (0, w % 2)] + [(0, 0)] * (x.ndim - 2)
        x = np.pad(x, pad)
    return x[0::2, 0::2] + x[1::2, 0::2] + x[0::2, 1::2] + x[1::2, 1::2]


def _up2(x: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear ×2 upsampling (pixel centres aligned), cropped to `shape`."""
    def axis_up(a: np.ndarray, axis: int) -> np.ndarray:
        a = np.moveaxis(a, axis, 0)
        prev = np.concatenate([a[:1], a[:-1]])
        nxt = np.concatenate([a[1:], a[-1:]])
        out = np.empty((a.shape[0] * 2,) + a.shape[1:], dtype=a.dtype)
        out[0::2] = 0.75 * a + 0.25 * prev
        out[1::2] = 0.75 * a + 0.25 * nxt
        return np.moveaxis(out, 0, axis)
    y = axis_up(axis_up(x, 0), 1)
    return y[: shape[0], : shape[1]]


def _push_pull(p: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Colour everywhere from premultiplied colour `p` (H, W, 3) and weights `w` in [0, 1]."""
    levels: list[tuple[np.ndarray, np.ndarray]] = []
    while max(w.shape) > 1:
        levels.append((p, w))
        sw, sp = _down2(w), _down2(p)
        w = np.minimum(sw, 1.0)
        p = (sp * (w / np.maximum(sw, 1e-12))[..., None]).astype(np.float32)
    full = p / np.maximum(w, 1e-12)[..., None]
    for p_l, w_l in reversed(levels):
        full = p_l + (1.0 - w_l)[..., None] * _up2(full, w_l.shape)
    return full.astype(np.float32)


def _block_sum(x: np.ndarray, f: int, hs: int, ws: int) -> np.ndarray:
    """Sum of f×f blocks of a uint8 (H, W[, C]) array zero-padded to (hs·f, ws·f), as uint32."""
    h, w = x.shape[:2]
    if (h, w) != (hs * f, ws * f):
        padded = np.zeros((hs * f, ws * f) + x.shape[2:], dtype=x.dtype)
        padded[:h, :w] = x
        x = padded
    rest = int(np.prod(x.shape[2:], dtype=np.int64))
    rows = x.reshape(hs, f, ws * f * rest).sum(axis=1, dtype=np.uint32)  # contiguous: fast
    return rows.reshape((hs, ws, f) + x.shape[2:]).sum(axis=2, dtype=np.uint32)


def fill_holes(rgb: np.ndarray, known: np.ndarray, fill: np.ndarray | None = None,
               work_side: int = 512) -> np.ndarray:
    """Push-pull inpainting: uint8 (H, W, 3), `rgb` except at `fill` pixels (default: ~known).

    Known colours are area-averaged onto a grid of at most `work_side` cells on the long side
    (a cell with any known pixel counts as known), averaged further into a pyramid, then pushed
    back down, each level's gaps taking the bilinearly upsampled coarser colour. The result is
    brought back to full size bilinearly and replaces `rgb` at the `fill` pixels only.
    """
    img = np.asarray(rgb)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected uint8 (H, W, 3) rgb, got {img.dtype} {img.shape}")
    k = np.asarray(known, dtype=bool)
    target = ~k if fill is None else np.asarray(fill, dtype=bool)
    out = img.copy()
    if not target.any():
        return out
    if not k.any():
        out[target] = np.rint(img.reshape(-1, 3).mean(0)).astype(np.uint8)
        return out
    h, w = k.shape
    f = max(1, math.ceil(max(h, w) / work_side))
    hs, ws = math.ceil(h / f), math.ceil(w / f)
    sw = _block_sum(k.view(np.uint8), f, hs, ws).astype(np.float32)
    sp = _block_sum(img * k[..., None], f, hs, ws).astype(np.float32)
    w0 = np.minimum(sw, 1.0)
    p0 = (sp * (w0 / np.maximum(sw, 1e-12))[..., None]).astype(np.float32)
    small = np.clip(np.rint(_push_pull(p0, w0)), 0, 255).astype(np.uint8)
    if f > 1:
        up = np.asarray(Image.fromarray(small, "RGB").resize((ws * f, hs * f), Image.BILINEAR))[:h, :w]
    else:
        up = small
    np.copyto(out, up, where=target[..., None])
    return out


# --------------------------------------------------------------------------- layers

Box = tuple[int, int, int, int]  # x, y, width, height in full-frame pixels


def _bbox(mask: np.ndarray) -> Box | None:
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)


def label_boxes(labels: np.ndarray, n_layers: int) -> list[Box | None]:
    """Bounding box of every label 0..n_layers-1 (None when a label owns no pixel), one pass."""
    slices = ndimage.find_objects(labels.astype(np.int32) + 1, max_label=n_layers)
    out: list[Box | None] = []
    for sl in slices:
        if sl is None:
            out.append(None)
        else:
            ys, xs = sl
            out.append((xs.start, ys.start, xs.stop - xs.start, ys.stop - ys.start))
    return out


def _png(arr: np.ndarray, mode: str) -> bytes:
    buf = io.BytesIO()
    # zlib level 1 with the RLE strategy: faster and smaller than the default on photo layers
    Image.fromarray(arr, mode).save(buf, format="PNG", compress_level=1, compress_type=3)
    return buf.getvalue()


def feathered_alpha(labels: np.ndarray, k: int, feather_px: float,
                    box: Box | None = None) -> tuple[np.ndarray, Box] | None:
    """Alpha (float32 in [0, 1], cropped) of layer k and its bbox; None when k owns no pixel.

    1 on the layer's own pixels; around them a linear fade to 0 over `feather_px`, on farther
    pixels only (never over nearer ones, which would drag their colour along when moved).
    `box` is layer k's own bounding box when the caller already knows it.
    """
    if box is None:
        box = _bbox(labels == k)
        if box is None:
            return None
    r = int(math.ceil(feather_px))
    h, w = labels.shape
    x, y, bw, bh = box
    x0, y0 = max(0, x - r), max(0, y - r)
    x1, y1 = min(w, x + bw + r), min(h, y + bh + r)
    lab = labels[y0:y1, x0:x1]
    own = lab == k
    if not own.any():
        return None
    alpha = own.astype(np.float32)
    if r > 0:
        size = 2 * r + 1
        # the box mean of the mask is (r + 1 - d) / size at distance d off a straight edge:
        # scaled, 1 - d / (feather + 1) → reaches 0 just past feather_px
        ramp = ndimage.uniform_filter(alpha, size=size, mode="constant")
        ramp *= np.float32(size / (feather_px + 1.0))
        np.minimum(ramp, 1.0, out=ramp)
        ramp[lab >= k] = 0.0  # own pixels are set to 1 below; nearer pixels get no fringe
        np.maximum(alpha, ramp, out=alpha)
    sub = _bbox(alpha >= (0.5 / 255))
    assert sub is not None
    sx, sy, sw, sh = sub
    return alpha[sy:sy + sh, sx:sx + sw], (x0 + sx, y0 + sy, sw, sh)


def _parallax_factors(medians: list[float | None]) -> list[float]:
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


def _layer_nearness(n: np.ndarray, labels: np.ndarray, n_layers: int) -> list[tuple[float, float, float] | None]:
    """(min, max, median) nearness of every layer's valid pixels (None when it has none)."""
    finite = np.isfinite(n)
    v = n[finite]
    lv = labels[finite]
    order = np.argsort(lv, kind="stable")  # radix sort on uint8: one fast pass
    vs = v[order]
    counts = np.bincount(lv, minlength=n_layers)
    out: list[tuple[float, float, float] | None] = []
    start = 0
    for c in counts[:n_layers].tolist():
        seg = vs[start:start + c]
        start += c
        out.append(None if c == 0 else (float(seg.min()), float(seg.max()), float(np.median(seg))))
    return out


# --------------------------------------------------------------------------- preview


def _preview(rgb: np.ndarray, background: np.ndarray,
             alphas: list[tuple[np.ndarray, Box] | None],
             factors: list[float], settings: SpriteSettings) -> tuple[bytes, dict[str, Any]]:
    """An endless camera sway made from the layers, cropped so no frame shows past the border.

    The scene is scaled so that after cropping a margin larger than the sway on every side the
    preview fits `preview_max_side`; each frame draws the (still) background, then every layer
    moved by `factor × sway` with sub-pixel (bilinear) shifts.
    """
    h, w = background.shape[:2]
    long_out = min(settings.preview_max_side, max(h, w))
    amp = SWAY_AMPLITUDE * long_out  # nearest layer's horizontal sway, output pixels
    margin = int(math.ceil(amp)) + 1
    s = (long_out + 2 * margin) / max(h, w)  # scene → canvas scale
    cw, ch = max(1, round(w * s)), max(1, round(h * s))
    pw, ph = max(1, cw - 2 * margin), max(1, ch - 2 * margin)
    if min(pw, ph) < 8:  # a sliver image: no cropping, no sway
        margin, amp, pw, ph = 0, 0.0, cw, ch
    small_rgb = Image.fromarray(rgb, "RGB").resize((cw, ch), Image.BOX)
    bg = Image.fromarray(background, "RGB").resize((cw, ch), Image.BOX).convert("RGBA")
    bg_view = bg.crop((margin, margin, margin + pw, margin + ph))
    layers = []
    for k, item in enumerate(alphas):
        if k == 0 or item is None:
            continue
        alpha, (x, y, bw, bh) = item
        canvas = np.zeros((h, w), dtype=np.uint8)
        canvas[y:y + bh, x:x + bw] = np.rint(alpha * 255.0).astype(np.uint8)
        a_small = Image.fromarray(canvas, "L").resize((cw, ch), Image.BOX)
        layer = small_rgb.copy()
        layer.putalpha(a_small)
        cbox = a_small.getbbox()  # where this layer is visible on the canvas
        if cbox is not None:
            layers.append((layer, factors[k], cbox))
    frames = []
    n = settings.preview_frames
    for t in range(n):
        th = 2.0 * math.pi * t / n
        dx, dy = amp * math.sin(th), 0.3 * amp * math.cos(th)
        frame = bg_view.copy()
        for layer, f, (cx0, cy0, cx1, cy1) in layers:
            # output pixel (u, v) shows canvas point (u + ox, v + oy); |f·dx|, |f·dy| < margin
            ox, oy = margin - f * dx, margin - f * dy
            u0, v0 = max(0, math.floor(cx0 - ox) - 1), max(0, math.floor(cy0 - oy) - 1)
            u1, v1 = min(pw, math.ceil(cx1 - ox) + 1), min(ph, math.ceil(cy1 - oy) + 1)
            if u1 <= u0 or v1 <= v0:
                continue
            tile = layer.resize((u1 - u0, v1 - v0), Image.BILINEAR,
                                box=(u0 + ox, v0 + oy, u1 + ox, v1 + oy))
            frame.alpha_composite(tile, dest=(u0, v0))
        frames.append(frame.convert("RGB"))
    buf = io.BytesIO()
    if settings.preview_format == "webp":
        frames[0].save(buf, format="WEBP", save_all=True, append_images=frames[1:],
                       duration=PREVIEW_FRAME_MS, loop=0, quality=70, method=0)
    else:
        # one shared palette, no dithering: Pillow's per-frame quantizer is ~20× slower
        palette = frames[0].quantize(colors=255, method=Image.Quantize.FASTOCTREE)
        pframes = [f.quantize(palette=palette, dither=Image.Dither.NONE) for f in frames]
        pframes[0].save(buf, format="GIF", save_all=True, append_images=pframes[1:],
                        duration=PREVIEW_FRAME_MS, loop=0, optimize=False, disposal=1)
    info = {"format": settings.preview_format, "width": pw, "height": ph, "frames": n,
            "frame_ms": PREVIEW_FRAME_MS, "amplitude_px": round(amp, 2),
            "crop_px": round(margin / s, 2),
            "motion": "ellipse: dx = A sin(t), dy = 0.3 A cos(t); layer offset = parallax_factor × (dx, dy)"}
    return buf.getvalue(), info


# --------------------------------------------------------------------------- entry point


def build_sprites(rgb: np.ndarray, nearness: np.ndarray, settings: SpriteSettings | None = None,
                  *, image_id: str | None = None, depth_sha256: str | None = None,
                  cut_method: Literal["valley", "quantile"] = "valley") -> SpriteSet:
    """Split an image into `settings.layers` depth layers, fill the background, make a preview."""
    settings = settings or SpriteSettings()
    img = np.asarray(rgb)
    n = np.asarray(nearness, dtype=np.float32)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected uint8 (H, W, 3) rgb, got {img.dtype} {img.shape}")
    if n.shape != img.shape[:2]:
        raise ValueError(f"nearness {n.shape} and image {img.shape[:2]} differ in size; "
                         "resize the depth map first (see match_size)")
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
    labels = layer_labels(n, cuts)
    coverage = np.bincount(labels.ravel(), minlength=n_layers)[:n_layers] / labels.size
    near_stats = _layer_nearness(n, labels, n_layers)
    boxes = label_boxes(labels, n_layers)
    lap("cut")

    alphas: list[tuple[np.ndarray, Box] | None] = [None] * n_layers
    for k in range(1, n_layers):
        if boxes[k] is not None:
            alphas[k] = feathered_alpha(labels, k, settings.feather_px, boxes[k])
    lap("alpha")

    # the background: its own pixels as they are; pixels under nearer layers filled from
    # background pixels that are not right next to a nearer layer (those often carry its fringe)
    holes = labels > 0
    if holes.any():
        known = ~ndimage.maximum_filter(holes, size=5)
        if not known.any():
            known = ~holes
        background = fill_holes(img, known, fill=holes)
    else:
        background = img.copy()
    lap("fill")

    factors = _parallax_factors([None if st is None else st[2] for st in near_stats])
    layers: list[SpriteLayer] = []
    for k in range(n_layers):
        name = f"layer_{k}.png"
        box: Box | None
        if k == 0:
            rgba = np.empty((h, w, 4), dtype=np.uint8)
            rgba[..., :3] = background
            rgba[..., 3] = 255
            png, box = _png(rgba, "RGBA"), (0, 0, w, h)
        elif alphas[k] is None:
            png, box = _png(np.zeros((1, 1, 4), np.uint8), "RGBA"), None
        else:
            alpha, box = alphas[k]
            x, y, bw, bh = box
            a8 = np.rint(alpha * 255.0).astype(np.uint8)
            rgba = np.zeros((bh, bw, 4), dtype=np.uint8)
            np.copyto(rgba[..., :3], img[y:y + bh, x:x + bw], where=(a8 > 0)[..., None])
            rgba[..., 3] = a8
            png = _png(rgba, "RGBA")
        st = near_stats[k]
        layers.append(SpriteLayer(
            index=k, file=name, png=png, bbox=box,
            nearness_min=None if st is None else st[0],
            nearness_max=None if st is None else st[1],
            nearness_median=None if st is None else st[2],
            parallax_factor=factors[k], coverage=float(coverage[k])))
    lap("encode_layers")

    preview, preview_info = _preview(img, background, alphas, factors, settings)
    preview_file = f"preview.{settings.preview_format}"
    preview_info["file"] = preview_file
    lap("preview")

    bounds = [None, *cuts.tolist(), None]
    manifest = {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "image": {"id": image_id, "width": w, "height": h},
        "depth": {"sha256": depth_sha256,
                  "convention": "nearness in [0, 1], larger = nearer (relative inverse depth)"},
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
                "bbox": None if L.bbox is None else dict(zip(("x", "y", "width", "height"), L.bbox)),
                "nearness": {
                    "above_cut": _r(bounds[L.index]),
                    "up_to_cut": _r(bounds[L.index + 1]),
                    "min": _r(L.nearness_min), "max": _r(L.nearness_max),
                    "median": _r(L.nearness_median),
                },
                "parallax_factor": L.parallax_factor,
                "coverage": round(L.coverage, 6),
                "inpainted": L.index == 0,
            }
            for L in layers
        ],
        "preview": preview_info,
    }
    return SpriteSet(layers=layers, manifest=manifest, preview=preview,
                     preview_file=preview_file, seconds=seconds)


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 6)


# --------------------------------------------------------------------------- reading back


def decode_rgba(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGBA"))


def recompose(manifest: dict[str, Any], read: Callable[[str], bytes]) -> np.ndarray:
    """uint8 (H, W, 3): every layer of a sprite folder drawn in order at zero offset.

    `read(file_name)` returns a file's bytes from the folder (so this works on storage or memory).
    """
    w, h = manifest["image"]["width"], manifest["image"]["height"]
    out = np.zeros((h, w, 3), dtype=np.float32)
    for layer in manifest["layers"]:
        if layer["empty"]:
            continue
        rgba = decode_rgba(read(layer["file"])).astype(np.float32)
        b = layer["bbox"]
        x, y, bw, bh = b["x"], b["y"], b["width"], b["height"]
        if rgba.shape[:2] != (bh, bw):
            raise ValueError(f"{layer['file']}: size {rgba.shape[1]}x{rgba.shape[0]} does not "
                             f"match its bbox {bw}x{bh}")
        a = rgba[..., 3:] / 255.0
        region = out[y:y + bh, x:x + bw]
        region *= 1.0 - a
        region += a * rgba[..., :3]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of two uint8 images (inf when identical)."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    mse = float(np.mean(d * d))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0 ** 2 / mse)


def match_size(nearness: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize a nearness map to (height, width): bilinear values, nearest-neighbour validity."""
    n = np.asarray(nearness, dtype=np.float32)
    if n.shape == (height, width):
        return n
    valid = np.isfinite(n)
    vals = Image.fromarray(np.where(valid, n, 0.0).astype(np.float32), "F").resize((width, height), Image.BILINEAR)
    out = np.asarray(vals, dtype=np.float32).copy()
    if not valid.all():
        v = Image.fromarray(valid.astype(np.uint8) * 255, "L").resize((width, height), Image.NEAREST)
        out[np.asarray(v) == 0] = np.nan
    return out

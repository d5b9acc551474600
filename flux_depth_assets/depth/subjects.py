"""Subject cues for the offline estimator: faces, people and salient foreground, from OpenCV.

A monocular depth prior built on "lower in the frame = nearer" puts a portrait's face (high in
the frame) far away. People and animals are seen upright, facing the camera: a subject is a
roughly fronto-parallel surface whose depth is that of the ground where it stands, so every
pixel of it should be as near as its lowest point. This module finds subjects and their extent;
`local_estimator` applies that rule.

- Faces: the Haar cascades that ship inside the `opencv-python-headless` wheel
  (`cv2.data.haarcascades`; nothing is downloaded): human frontal faces by default (the cat
  cascade is available, off by default: it finds only strictly frontal cats and doubles the
  cost), with a high neighbour count (a false face pulls a patch of background forward, which
  is worse than a missed one).
- Extent: a face implies a head above it and a body below it. `cv2.grabCut` (colour GMMs and a
  graph cut) segments that person box at the working size, with the face itself as sure
  foreground, so the subject follows its own outline instead of a box.
- Saliency: the spectral-residual saliency map (Hou & Zhang 2007), a few FFTs on a 64-px image.
  It is a soft, weak cue; written here because OpenCV's saliency module is only in the contrib
  build.

Everything is a pure function of arrays (picklable, no global state but the cached cascades).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import cv2
import numpy as np

Box = tuple[int, int, int, int]  # x, y, width, height


@dataclass(frozen=True)
class Face:
    box: Box  # at the size of the image it was found in
    kind: str  # "human" | "cat"


_CASCADES = {
    "human": "haarcascade_frontalface_default.xml",
    "cat": "haarcascade_frontalcatface.xml",
}


#: one set of classifiers per thread: `detectMultiScale` keeps its per-call scale data inside the
#: classifier, so two threads sharing one (two runs of a catalog in one process) corrupt each
#: other's and OpenCV raises (`getScaleData`, `vector::_M_range_check`)
_PER_THREAD = threading.local()


def _cascade(kind: str) -> cv2.CascadeClassifier:
    loaded: dict[str, cv2.CascadeClassifier] = _PER_THREAD.__dict__.setdefault("cascades", {})
    if kind not in loaded:
        path = str(cv2.data.haarcascades) + _CASCADES[kind]  # type: ignore[attr-defined]
        clf = cv2.CascadeClassifier(path)
        if clf.empty():  # pragma: no cover - the wheel ships these files
            raise RuntimeError(f"OpenCV cascade {path} could not be loaded")
        loaded[kind] = clf
    return loaded[kind]


def detect_faces(
    gray: np.ndarray, min_side_frac: float = 0.08, kinds: tuple[str, ...] = ("human",)
) -> list[Face]:
    """Faces in a uint8 grayscale image (any size; ~320 px on the long side is plenty).

    A face must be at least `min_side_frac` of the image's short side. Overlapping human and
    cat detections keep the human one.
    """
    g = cv2.equalizeHist(np.ascontiguousarray(gray, dtype=np.uint8))
    min_side = max(12, int(min_side_frac * min(g.shape)))
    found: list[Face] = []
    for kind in kinds:
        boxes = _cascade(kind).detectMultiScale(
            g, scaleFactor=1.15, minNeighbors=6, minSize=(min_side, min_side)
        )
        for x, y, w, h in boxes if len(boxes) else []:
            box = (int(x), int(y), int(w), int(h))
            if not any(_overlap(box, f.box) > 0.3 for f in found):
                found.append(Face(box, kind))
    return found


def _overlap(a: Box, b: Box) -> float:
    """Intersection over the smaller box."""
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    iw = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    ih = max(0, min(ay + ah, by + bh) - max(ay, by))
    return iw * ih / max(1, min(aw * ah, bw * bh))


def scale_box(box: Box, sx: float, sy: float) -> Box:
    x, y, w, h = box
    return (round(x * sx), round(y * sy), max(1, round(w * sx)), max(1, round(h * sy)))


def person_box(face: Face, shape: tuple[int, int]) -> Box:
    """Where the subject of a face probably is: the head around it and a body below it."""
    h, w = shape
    x, y, fw, fh = face.box
    cx = x + fw / 2
    half = fw * (1.6 if face.kind == "human" else 2.2)
    x0, x1 = max(0, int(cx - half)), min(w, int(cx + half))
    y0 = max(0, int(y - 0.6 * fh))
    return x0, y0, max(1, x1 - x0), h - y0  # down to the bottom of the frame


def subject_masks(rgb: np.ndarray, faces: list[Face], iterations: int = 1) -> list[np.ndarray]:
    """Per face, float32 (h, w) in [0, 1]: how surely each pixel belongs to its subject.

    GrabCut on the uint8 RGB working image (~192 px: its cost is per pixel and per iteration),
    initialised with the face's person box (outside: sure background; the face's inner part:
    sure foreground); the part connected to the face is kept.
    One iteration by default: on the demo faces a second moved no mask measurably and cost
    ~40 % more (GrabCut's colour-model set-up is most of its cost).
    """
    h, w = rgb.shape[:2]
    masks: list[np.ndarray] = []
    img = np.ascontiguousarray(rgb, dtype=np.uint8)
    for face in faces:
        out = np.zeros((h, w), dtype=np.float32)
        masks.append(out)
        px, py, pw, ph = person_box(face, (h, w))
        if pw < 8 or ph < 8:
            continue
        mask = np.full((h, w), cv2.GC_BGD, dtype=np.uint8)
        mask[py : py + ph, px : px + pw] = cv2.GC_PR_FGD
        fx, fy, fw, fh = face.box
        mx, my = fw // 5, fh // 5
        mask[fy + my : fy + fh - my, fx + mx : fx + fw - mx] = cv2.GC_FGD
        if (mask != cv2.GC_BGD).all():  # no background to learn from: the face box only
            out[fy : fy + fh, fx : fx + fw] = 1.0
            continue
        bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        # GrabCut's k-means draws from OpenCV's per-thread RNG: seed it, so a mask depends on
        # this image only, not on what the process segmented before (same input, same bytes)
        cv2.setRNGSeed(0x5EED)
        try:
            cv2.grabCut(
                img,
                mask,
                None,
                bgd,
                fgd,
                iterations,  # type: ignore[call-overload]
                cv2.GC_INIT_WITH_MASK,
            )
        except cv2.error:  # a degenerate colour model (e.g. a flat image): the face box only
            mask[:] = cv2.GC_BGD
            mask[fy : fy + fh, fx : fx + fw] = cv2.GC_FGD
        fg = ((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)).astype(np.uint8)
        # keep the part connected to the face (GrabCut may pick up look-alike colour elsewhere)
        n, comp = cv2.connectedComponents(fg, connectivity=8)
        centre = comp[min(h - 1, fy + fh // 2), min(w - 1, fx + fw // 2)]
        if n > 2 and centre > 0:
            fg = (comp == centre).astype(np.uint8)
        rows = np.flatnonzero(fg.any(axis=1))
        if rows.size == 0 or rows[-1] < min(h - 1, fy + 2 * fh):
            fg = np.maximum(fg, body_prior((h, w), face))  # GrabCut kept the head only
        out[:] = fg
        cv2.GaussianBlur(out, (0, 0), max(1.0, 0.006 * max(h, w)), dst=out)
    return masks


def body_prior(shape: tuple[int, int], face: Face) -> np.ndarray:
    """uint8 mask of where a face's body most likely is: the head (an ellipse around the face)
    and a torso widening below it to the bottom of the frame."""
    h, w = shape
    x, y, fw, fh = face.box
    cx = x + fw / 2
    out = np.zeros((h, w), dtype=np.uint8)
    cv2.ellipse(out, (int(cx), int(y + fh / 2)), (int(fw * 0.6), int(fh * 0.75)), 0, 0, 360, 1, -1)
    neck, shoulders = y + fh, y + 1.6 * fh
    torso = np.array(
        [
            [cx - 0.35 * fw, neck],
            [cx + 0.35 * fw, neck],
            [cx + 1.4 * fw, shoulders],
            [cx + 1.5 * fw, h],
            [cx - 1.5 * fw, h],
            [cx - 1.4 * fw, shoulders],
        ],
        dtype=np.int32,
    )
    cv2.fillPoly(out, [torso], 1)
    return out


def standing_level(near: np.ndarray, face: Face) -> float:
    """The nearness where a face's subject stands: the nearer quartile of the bottom tenth of
    its person box (which reaches the bottom of the frame), across the face's width."""
    h, w = near.shape
    x, _, fw, _ = face.box
    _, py, _, ph = person_box(face, (h, w))
    band = near[max(py, h - max(2, ph // 10)) : h, max(0, x) : min(w, x + fw)]
    return float(np.percentile(band, 75)) if band.size else float(near.max())


def spectral_saliency(gray: np.ndarray, side: int = 64) -> np.ndarray:
    """Spectral-residual saliency (Hou & Zhang 2007) in [0, 1] at the size of `gray` (float)."""
    h, w = gray.shape
    small = cv2.resize(
        np.asarray(gray, dtype=np.float32), (side, side), interpolation=cv2.INTER_AREA
    )
    spec = np.fft.fft2(small)
    log_amp = np.log(np.abs(spec) + 1e-6).astype(np.float32)
    residual = log_amp - cv2.blur(log_amp, (3, 3))
    sal = np.abs(np.fft.ifft2(np.exp(residual + 1j * np.angle(spec)))) ** 2
    sal = cv2.GaussianBlur(sal.astype(np.float32), (0, 0), 2.5)
    sal = cv2.resize(sal, (w, h), interpolation=cv2.INTER_LINEAR)
    top = float(np.percentile(sal, 99.5))
    return (
        np.clip(sal / top, 0.0, 1.0).astype(np.float32) if top > 0 else np.zeros((h, w), np.float32)
    )

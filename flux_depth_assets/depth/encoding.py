"""Depth map encoding: float32 (larger = nearer) ⇄ 16-bit PNG.

PNG convention (stated once, documented in the README):
- 16-bit grayscale; 0 = invalid/unknown pixel; 1..65535 = far..near, linear in the provider's
  relative inverse depth between the map's own min (→ 1) and max (→ 65535);
- the pre-normalisation min/max are kept in the `depth_maps` table to undo the scaling.
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Iterator

import deflate
import numpy as np
from PIL import Image

PNG_MAX = 65535

#: PNG colour type by channel count: gray, gray+alpha, RGB, RGBA
_COLOUR_TYPE = {1: 0, 2: 4, 3: 2, 4: 6}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, data: bytes | bytearray) -> bytes:
    crc = deflate.crc32(data, deflate.crc32(kind))
    return b"".join((struct.pack(">I", len(data)), kind, data, struct.pack(">I", crc)))


def encode_png(arr: np.ndarray, text: dict[str, str] | None = None) -> bytes:
    """A standard, lossless PNG of a uint8/uint16 (H, W[, C]) array, C in 1..4, made for speed.

    Every pixel output of the pipeline (normalised copies, depth maps, normal maps, sprite
    layers) is written here, with settings chosen on measurement (1 MP, one core): the Up row
    filter computed with numpy in one pass, and deflate at level 1 by libdeflate (`deflate`).
    The same array gives the same bytes in every process and on every CPU, which the
    `workers: 1` ≡ every-core contract needs: ISA-L (`isal`, used here before, ~2x faster)
    gave a different valid stream for the same rows now and then on a pool worker of an
    AVX-512 machine (benchmarks/README.md, "Round 7"). Against Pillow's encoder at level 3
    (adaptive filters) this is 3-5x less CPU for files within ~5 % of the size. Any PNG reader
    decodes it (Pillow does, in the tests).
    `text`: Latin-1 key → value pairs kept as tEXt chunks (see `png_text`).
    """
    a = np.asarray(arr)
    if (
        a.dtype not in (np.uint8, np.uint16)
        or a.ndim not in (2, 3)
        or (a.ndim == 3 and a.shape[2] not in _COLOUR_TYPE)
        or 0 in a.shape
    ):
        raise ValueError(
            f"expected a non-empty uint8/uint16 (H, W[, 1..4]) array, got {a.dtype} {a.shape}"
        )
    h, w = a.shape[:2]
    channels = 1 if a.ndim == 2 else a.shape[2]
    raw = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder(">")).view(np.uint8).reshape(h, -1)
    rows = np.empty((h, raw.shape[1] + 1), dtype=np.uint8)
    rows[:, 0] = 2  # filter "Up": each byte minus the byte above (mod 256)
    rows[0, 0] = 0  # the first row has nothing above it
    rows[0, 1:] = raw[0]
    np.subtract(raw[1:], raw[:-1], out=rows[1:, 1:])
    idat = deflate.zlib_compress(rows.data, 1)
    ihdr = struct.pack(">IIBBBBB", w, h, 8 * a.itemsize, _COLOUR_TYPE[channels], 0, 0, 0)
    notes = b"".join(
        _chunk(b"tEXt", k.encode("latin-1") + b"\0" + v.encode("latin-1"))
        for k, v in (text or {}).items()
    )
    return (
        PNG_SIGNATURE + _chunk(b"IHDR", ihdr) + notes + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    )


def _chunks(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    """(type, body) of every chunk of a PNG file, in order, up to IEND."""
    if not data.startswith(PNG_SIGNATURE):
        raise ValueError("not a PNG file")
    pos = len(PNG_SIGNATURE)
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        yield kind, data[pos + 8 : pos + 8 + length]
        if kind == b"IEND":
            return
        pos += 12 + length


def png_text(data: bytes) -> dict[str, str]:
    """The tEXt key → value pairs of a PNG (chunk headers only: no pixel is decoded)."""
    out = {}
    for kind, body in _chunks(data):
        if kind == b"IDAT":  # `encode_png` writes its notes before the pixels
            break
        if kind == b"tEXt" and b"\0" in body:
            key, value = body.split(b"\0", 1)
            out[key.decode("latin-1")] = value.decode("latin-1")
    return out


def decode_own_png(data: bytes) -> np.ndarray | None:
    """The pixels of a PNG as `encode_png` writes them (non-interlaced gray/RGB(A), 8 or 16
    bits, rows filtered None or Up), or None for any other PNG: read that with Pillow.

    Two passes (libdeflate inflate, one running sum mod 256 down the rows) instead of Pillow's
    per-row unfiltering: 2-3x faster on the pipeline's own maps, and 16-bit RGB (which Pillow
    reduces to 8 bits) comes back whole. Raises ValueError on a file that is not a PNG.
    """
    idat, ihdr = [], None
    for kind, body in _chunks(data):
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
    if ihdr is None:
        raise ValueError("PNG without IHDR")
    w, h, depth, ctype, _, _, interlace = ihdr
    channels = {v: k for k, v in _COLOUR_TYPE.items()}.get(ctype)
    if channels is None or depth not in (8, 16) or interlace or not idat:
        return None
    row_bytes = w * channels * depth // 8
    try:
        flat = np.frombuffer(deflate.zlib_decompress(b"".join(idat), h * (row_bytes + 1)), np.uint8)
        rows = flat.reshape(h, row_bytes + 1)
    except (deflate.DeflateError, ValueError) as exc:
        raise ValueError(f"corrupt PNG data: {exc}") from exc
    filters = rows[:, 0]
    if filters[0] not in (0, 2) or not (filters[1:] == 2).all():
        return None  # Sub/Average/Paeth or mixed rows: Pillow's general decoder
    raw = _undo_up(rows)
    dtype = np.dtype(">u2") if depth == 16 else np.dtype(np.uint8)
    shape = (h, w) if channels == 1 else (h, w, channels)
    return raw.view(dtype).reshape(shape).astype(dtype.newbyteorder("="), copy=False)


def _undo_up(rows: np.ndarray) -> np.ndarray:
    """The pixel bytes of Up-filtered rows (filter byte first; row 0 has none above): each row
    plus the row above, mod 256. One contiguous add per row: `np.cumsum(axis=0)` walks the
    array column by column and is 3-10x slower at 1 MP (13x on a 62 MP image)."""
    raw = np.empty((rows.shape[0], rows.shape[1] - 1), dtype=np.uint8)
    if rows.shape[0]:
        raw[0] = rows[0, 1:]
    for y in range(1, rows.shape[0]):
        np.add(rows[y, 1:], raw[y - 1], out=raw[y])
    return raw


def decode_image(data: bytes, mode: str) -> np.ndarray:
    """uint8 pixels of an image file in Pillow `mode` ("RGB", "RGBA"): the pipeline's own PNGs
    through `decode_own_png`, anything else through Pillow."""
    channels = len(mode)
    if data.startswith(PNG_SIGNATURE):
        arr = decode_own_png(data)
        if arr is not None and arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == channels:
            return arr
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert(mode))


def to_nearness(depth: np.ndarray, metric: bool) -> np.ndarray:
    """Relative inverse depth (larger = nearer); metric depth in metres is inverted."""
    d = np.asarray(depth, dtype=np.float32)
    if not metric:
        return d
    out = np.full(d.shape, np.nan, dtype=np.float32)
    ok = np.isfinite(d) & (d > 0)
    out[ok] = 1.0 / d[ok]
    return out


def quantize(nearness: np.ndarray) -> tuple[np.ndarray, float, float]:
    """uint16 image and the (min, max) of the valid input values.

    In place on one float64 copy, without boolean gathers when every pixel is valid (the usual
    case): the same values as the straightforward masked version, at a fraction of the CPU.
    """
    d = np.array(nearness, dtype=np.float64)  # a copy: worked on in place below
    valid = np.isfinite(d)
    all_valid = bool(valid.all())
    if not all_valid and not valid.any():
        return np.zeros(d.shape, np.uint16), float("nan"), float("nan")
    lo = float(d.min() if all_valid else d[valid].min())
    hi = float(d.max() if all_valid else d[valid].max())
    span = hi - lo
    if span <= 0:
        return np.where(valid, np.uint16((PNG_MAX + 1) // 2), np.uint16(0)), lo, hi
    d -= lo
    d /= span
    d *= PNG_MAX - 1
    d += 1
    np.round(d, out=d)
    if not all_valid:
        d[~valid] = 0
    return d.astype(np.uint16), lo, hi


#: tEXt key of a depth PNG: the faces the estimator found, JSON [[x, y, width, height], ...]
FACES_TEXT_KEY = "flux-depth:faces"


def encode_png16(q: np.ndarray, faces: list[list[int]] | None = None) -> bytes:
    """A depth map's PNG; with `faces` (the local estimator's), noted in the file for the
    sprites (`depth_faces`)."""
    if q.dtype != np.uint16 or q.ndim != 2:
        raise ValueError(f"expected a 2-D uint16 array, got {q.dtype} {q.shape}")
    text = None if faces is None else {FACES_TEXT_KEY: json.dumps(faces, separators=(",", ":"))}
    return encode_png(q, text)


def depth_faces(data: bytes) -> list[tuple[int, int, int, int]] | None:
    """The face boxes noted in a depth PNG (`encode_png16`), or None when it notes none (a
    hosted provider's map, an older file, anything unreadable): then look for faces again."""
    try:
        raw = png_text(data).get(FACES_TEXT_KEY)
        if raw is None:
            return None
        boxes = json.loads(raw)
        return [(int(x), int(y), int(w), int(h)) for x, y, w, h in boxes]
    except (ValueError, TypeError):
        return None


#: code → nearness of the PNG convention: 0 → NaN, 1..65535 → 0..1 (one gather decodes a map)
_NEARNESS_OF_CODE = np.concatenate(
    [[np.nan], np.arange(PNG_MAX, dtype=np.float32) / np.float32(PNG_MAX - 1)]
).astype(np.float32)


def decode_png16(data: bytes) -> np.ndarray:
    """Float32 in [0, 1] (larger = nearer) with NaN where the PNG holds 0 (invalid)."""
    arr = decode_own_png(data)
    if arr is None:
        with Image.open(io.BytesIO(data)) as im:
            arr = np.asarray(im)
    if arr.dtype.kind == "u" and arr.itemsize <= 2:
        return _NEARNESS_OF_CODE[arr]
    codes = arr.astype(np.float32)  # a reader that widened the codes (e.g. mode "I")
    out = (codes - 1.0) / (PNG_MAX - 1)
    out[codes == 0] = np.nan
    return out


def depth_image_to_nearness(data: bytes) -> np.ndarray:
    """A provider's returned depth image (8/16-bit PNG or JPG, white = near) as float32 [0, 1]."""
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        if im.mode in ("I;16", "I;16B", "I;16L", "I"):
            arr = np.asarray(im, dtype=np.float32)
            return arr / (PNG_MAX if arr.max() > 255 else 255.0)
        return np.asarray(im.convert("L"), dtype=np.float32) / 255.0

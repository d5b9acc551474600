"""Builders for real and broken image files, made by the tests (never downloaded)."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image


def photo(w: int = 96, h: int = 64, seed: int = 0) -> Image.Image:
    """A small synthetic 'scene': sky gradient, ground, and a bright object."""
    rng = np.random.default_rng(seed)
    y = np.linspace(0, 1, h)[:, None, None]
    img = np.concatenate(
        [
            np.broadcast_to(120 + 100 * (1 - y), (h, w, 1)),
            np.broadcast_to(140 + 60 * y, (h, w, 1)),
            np.broadcast_to(200 - 80 * y, (h, w, 1)),
        ],
        axis=2,
    ).copy()
    img[h // 2 :, :, :] = [90, 120, 60]
    img[h // 3 : 2 * h // 3, w // 3 : w // 2] = [220, 40, 40]
    img += rng.normal(0, 3, img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def jpeg(seed: int = 0, **kw) -> bytes:
    return encode(photo(seed=seed), "JPEG", quality=90, **kw)


def png(seed: int = 0) -> bytes:
    return encode(photo(seed=seed), "PNG")


def webp(seed: int = 0) -> bytes:
    return encode(photo(seed=seed), "WEBP", quality=90)


def truncated_jpeg() -> bytes:
    data = jpeg(seed=5)
    return data[: len(data) // 2]


def cmyk_jpeg() -> bytes:
    return encode(photo(seed=2).convert("CMYK"), "JPEG", quality=90)


def png16() -> bytes:
    arr = (np.linspace(0, 65535, 64 * 96).reshape(64, 96)).astype(np.uint16)
    return encode(Image.fromarray(arr), "PNG")


def palette_png_with_transparency() -> bytes:
    im = photo(seed=3).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    return encode(im, "PNG", transparency=0)


def rgba_png() -> bytes:
    im = photo(seed=4).convert("RGBA")
    a = np.asarray(im).copy()
    a[:, : a.shape[1] // 2, 3] = 0
    return encode(Image.fromarray(a, "RGBA"), "PNG")


def exif_rotated_jpeg(orientation: int = 6) -> bytes:
    """A 96x64 JPEG whose EXIF says 'rotate 90° CW' (displayed as 64x96)."""
    im = photo(seed=6)
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(im, "JPEG", quality=90, exif=exif.tobytes())


def tiny_png() -> bytes:
    return encode(Image.new("RGB", (1, 1), (10, 20, 30)), "PNG")


def huge_dimension_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A valid PNG header claiming huge dimensions with almost no data (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + chunk(b"IEND", b"")
    )

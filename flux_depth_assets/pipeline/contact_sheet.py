"""A small contact sheet of a catalog's outputs: source | depth | normals | parallax frame.

One JPEG (a few images, thumbnails `THUMB_H` px high) that a materialization embeds in its
Markdown metadata as a data URI, so the Dagster UI shows pictures of what the run made. Kept
under `MAX_BYTES` (base64 adds a third) so event-log rows stay small. Columns whose files do not
exist yet (normals before `normal_maps`, the sway preview before `parallax_sprites`) are drawn
from the depth map (normals) or left out (parallax). No Dagster here.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from functools import partial

import numpy as np
from PIL import Image, ImageDraw

from flux_depth_assets.depth.encoding import decode_image
from flux_depth_assets.depth.normals import decode_normals_png, normals_from_depth
from flux_depth_assets.pipeline.derived_run import (
    NORMALS_ASSET,
    SPRITES_ASSET,
    DepthInput,
    derived_inputs,
    load_nearness,
)
from flux_depth_assets.pipeline.memo import Memo, content_key
from flux_depth_assets.storage.store import Storage

IMAGES = 3
THUMB_H = 96
MAX_BYTES = 60_000
GAP = 4
COLUMNS = ("source", "depth", "normals", "parallax frame")


def _thumb(img: Image.Image) -> Image.Image:
    w = max(1, round(img.width * THUMB_H / img.height))
    return img.convert("RGB").resize((w, THUMB_H), Image.Resampling.BILINEAR)


def _depth_image(near: np.ndarray) -> Image.Image:
    """Larger = nearer = brighter; invalid pixels (NaN) drawn dark red."""
    g = np.nan_to_num(near, nan=0.0)
    rgb = np.repeat((np.clip(g, 0, 1) * 255).astype(np.uint8)[..., None], 3, axis=2)
    rgb[~np.isfinite(near)] = (90, 0, 0)
    return Image.fromarray(rgb, "RGB")


def _normals_image(n: np.ndarray) -> Image.Image:
    return Image.fromarray(((np.clip(n, -1, 1) + 1) * 127.5).astype(np.uint8), "RGB")


def _rows_by_id(store: Storage, asset: str, catalog: str) -> dict[str, dict]:
    rows = store.partition_dicts(asset, catalog) or []
    return {r["image_id"]: r for r in rows if r.get("status") in ("succeeded", "cached")}


@dataclass(frozen=True)
class _Files:
    """The bytes one row of the sheet is drawn from (None: that output does not exist yet)."""

    inp: DepthInput
    source: bytes
    depth: bytes
    normals: bytes | None
    preview: bytes | None


def _read(store: Storage, rel: str | None) -> bytes | None:
    return store.read_bytes(rel) if rel and store.exists(rel) else None


def _files(store: Storage, inp: DepthInput, normals: dict, sprites: dict) -> _Files:
    return _Files(
        inp,
        store.read_bytes(inp.normalized_path),
        store.read_bytes(inp.depth_path),
        _read(store, normals.get(inp.image_id, {}).get("normal_path")),
        _read(store, sprites.get(inp.image_id, {}).get("preview_path")),
    )


def _row(store: Storage, f: _Files) -> list[Image.Image]:
    near = load_nearness(store, f.inp, f.depth)
    cells = [_thumb(Image.fromarray(decode_image(f.source, "RGB"))), _thumb(_depth_image(near))]
    if f.normals is not None:
        cells.append(_thumb(_normals_image(decode_normals_png(f.normals))))
    else:
        small = np.asarray(_thumb(_depth_image(near)).convert("L"), dtype=np.float32) / 255.0
        cells.append(_normals_image(normals_from_depth(small)))
    if f.preview is not None:
        with Image.open(io.BytesIO(f.preview)) as im:
            im.seek(0)
            cells.append(_thumb(im.copy()))
    return cells


def _draw(store: Storage, files: list[_Files]) -> str:
    """The sheet, base64 JPEG (what the memo keeps and the Markdown embeds)."""
    rows = [_row(store, f) for f in files]
    ncols = max(len(r) for r in rows)
    col_w = [max((r[c].width for r in rows if c < len(r)), default=0) for c in range(ncols)]
    label_h = 14
    sheet = Image.new(
        "RGB",
        (sum(col_w) + GAP * (ncols + 1), label_h + len(rows) * (THUMB_H + GAP) + GAP),
        (32, 32, 32),
    )
    draw = ImageDraw.Draw(sheet)
    x = GAP
    for c in range(ncols):
        draw.text((x, 1), COLUMNS[c], fill=(220, 220, 220))
        for i, r in enumerate(rows):
            if c < len(r):
                sheet.paste(r[c], (x, label_h + GAP + i * (THUMB_H + GAP)))
        x += col_w[c] + GAP
    for quality in (80, 65, 50, 35):
        buf = io.BytesIO()
        sheet.save(buf, format="JPEG", quality=quality, optimize=True)
        if buf.tell() <= MAX_BYTES:
            break
    return base64.b64encode(buf.getvalue()).decode("ascii")


def contact_sheet_jpeg(store: Storage, catalog: str, images: int = IMAGES) -> bytes | None:
    """The sheet as JPEG bytes, or None when the catalog has no depth map yet. Drawn again only
    when one of the files it shows changed (`pipeline.memo`)."""
    inputs, _ = derived_inputs(store, catalog)
    if not inputs:
        return None
    normals = _rows_by_id(store, NORMALS_ASSET, catalog)
    sprites = _rows_by_id(store, SPRITES_ASSET, catalog)
    files = [
        _files(store, inp, normals, sprites)
        for inp in sorted(inputs, key=lambda i: i.image_id)[:images]
    ]
    key = content_key(
        *(part for f in files for part in (f.source, f.depth, f.normals or b"-", f.preview or b"-"))
    )
    memo = Memo(store, catalog, "contact_sheet", max_entries=2)
    sheet = memo.remember(key, partial(_draw, store, files))
    memo.save()
    return base64.b64decode(sheet)


def contact_sheet_markdown(store: Storage, catalog: str) -> str | None:
    """Markdown with the sheet embedded as a data URI (what the Dagster UI renders inline)."""
    data = contact_sheet_jpeg(store, catalog)
    if data is None:
        return None
    uri = "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii")
    return f"![contact sheet: {' | '.join(COLUMNS)}]({uri})"

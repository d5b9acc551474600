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

import numpy as np
from PIL import Image, ImageDraw

from flux_depth_assets.depth.normals import decode_normals_png, normals_from_depth
from flux_depth_assets.pipeline.derived_run import (
    NORMALS_ASSET,
    SPRITES_ASSET,
    derived_inputs,
    load_nearness,
    load_rgb,
)
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
    table = store.read_partition(asset, catalog)
    if table is None:
        return {}
    return {
        r["image_id"]: r for r in table.to_pylist() if r.get("status") in ("succeeded", "cached")
    }


def _row(
    store: Storage,
    inp_id: str,
    rgb: np.ndarray,
    near: np.ndarray,
    normals: dict[str, dict],
    sprites: dict[str, dict],
) -> list[Image.Image]:
    cells = [_thumb(Image.fromarray(rgb)), _thumb(_depth_image(near))]
    n_row = normals.get(inp_id)
    if n_row and store.exists(n_row["normal_path"]):
        cells.append(
            _thumb(_normals_image(decode_normals_png(store.read_bytes(n_row["normal_path"]))))
        )
    else:
        small = np.asarray(_thumb(_depth_image(near)).convert("L"), dtype=np.float32) / 255.0
        cells.append(_normals_image(normals_from_depth(small)))
    s_row = sprites.get(inp_id)
    if s_row and s_row.get("preview_path") and store.exists(s_row["preview_path"]):
        with Image.open(io.BytesIO(store.read_bytes(s_row["preview_path"]))) as im:
            im.seek(0)
            cells.append(_thumb(im.copy()))
    return cells


def contact_sheet_jpeg(store: Storage, catalog: str, images: int = IMAGES) -> bytes | None:
    """The sheet as JPEG bytes, or None when the catalog has no depth map yet."""
    inputs, _ = derived_inputs(store, catalog)
    if not inputs:
        return None
    normals = _rows_by_id(store, NORMALS_ASSET, catalog)
    sprites = _rows_by_id(store, SPRITES_ASSET, catalog)
    rows = []
    for inp in sorted(inputs, key=lambda i: i.image_id)[:images]:
        rows.append(
            _row(
                store,
                inp.image_id,
                load_rgb(store, inp.normalized_path),
                load_nearness(store, inp),
                normals,
                sprites,
            )
        )
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
    return buf.getvalue()


def contact_sheet_markdown(store: Storage, catalog: str) -> str | None:
    """Markdown with the sheet embedded as a data URI (what the Dagster UI renders inline)."""
    data = contact_sheet_jpeg(store, catalog)
    if data is None:
        return None
    uri = "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii")
    return f"![contact sheet: {' | '.join(COLUMNS)}]({uri})"

"""A static gallery per catalog: one HTML page to browse every image's outputs, offline.

Layout under the storage root (everything relative, so the folder opens from file:// or any
static host, with no network):

    galleries/<catalog>/index.html           the page (inline CSS/JS, no external script)
    galleries/<catalog>/data/page-0001.js    rows of one page, `galleryPage(n, rows)` (JSON in
                                             a script: file:// pages cannot fetch JSON)
    galleries/<catalog>/data/meta.js         counts, page count, rejected files with reasons
    galleries/<catalog>/thumbs/<kind>-<key>.* source/depth/normals JPEG thumbnails and the sway
                                             preview as a small animated WebP (by content)

Only the page being viewed is loaded and its images carry `loading="lazy"`, so 10,000 images
cost one small script per page. Thumbnails are named by a hash of their inputs; the assets that
write the outputs write them too (`flux_depth_assets.thumbs`), and the gallery makes only the
ones still missing. The viewer moves the parallax layers (files of `parallax_sprites`) with the mouse.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from flux_depth_assets.depth.encoding import PNG_SIGNATURE, decode_own_png
from flux_depth_assets.pipeline.parallel import PoolConfig, map_ordered
from flux_depth_assets.storage.store import FileIndex, Storage
from flux_depth_assets.thumbs import (
    THUMB_SIDE,
    gallery_dir,
    preview_key,
    still_thumb,
    sway_thumb,
    thumb_name,
)

__all__ = ["THUMB_SIDE", "GalleryResult", "build_gallery", "gallery_dir"]

PAGE_SIZE = 100
_TEMPLATE = Path(__file__).with_name("gallery_page.html")


@dataclass(frozen=True)
class GalleryResult:
    page_rel: str
    images: int
    rejected: int
    pages: int
    thumbs_made: int


def _rows(store: Storage, asset: str, catalog: str) -> dict[str, dict]:
    rows = store.partition_dicts(asset, catalog) or []
    return {r["image_id"]: r for r in rows if r.get("image_id")}


def _pixels(data: bytes) -> np.ndarray:
    """An output file's pixels: the pipeline's own PNGs through the fast reader, anything else
    through Pillow (16-bit gray stays 16-bit: `still_thumb` keeps its high byte)."""
    own = decode_own_png(data) if data.startswith(PNG_SIGNATURE) else None
    if own is not None:
        return own
    with Image.open(io.BytesIO(data)) as opened:
        opened.load()
        if opened.mode.startswith("I"):
            return np.asarray(opened, dtype=np.int64).clip(0, 65535).astype(np.uint16)
        return np.asarray(opened.convert("RGB"))


def _preview_thumb(data: bytes) -> bytes:
    """The sway preview file at thumbnail size (the sprites write it themselves, from the frames
    before encoding; this is for previews made before that, or whose thumbnail was lost)."""
    frames, durations = [], []
    with Image.open(io.BytesIO(data)) as im:
        for i in range(getattr(im, "n_frames", 1)):
            im.seek(i)
            frames.append(im.convert("RGB"))
            durations.append(int(im.info.get("duration", 60)))
    return sway_thumb(frames, durations)


@dataclass(frozen=True)
class ThumbTask:
    """One image's missing thumbnails, made on the work pool: (kind, output, thumbnail) each."""

    store: Storage
    thumbs: tuple[tuple[str, str, str], ...]


def make_thumbs(task: ThumbTask) -> list[tuple[str, str | None]]:
    """(kind, None when written else why not) of each thumbnail: a missing or corrupt output
    is shown as such, never a failure of the page."""
    out: list[tuple[str, str | None]] = []
    for kind, rel, dest in task.thumbs:
        try:
            data = task.store.read_bytes(rel)
            task.store.write_bytes(
                dest, _preview_thumb(data) if kind == "preview" else still_thumb(_pixels(data))
            )
        except (OSError, ValueError) as exc:
            out.append((kind, f"{kind}: {exc}"))
        else:
            out.append((kind, None))
    return out


def _js(name: str, *args: Any) -> bytes:
    body = ",".join(json.dumps(a, separators=(",", ":"), default=str) for a in args)
    return f"{name}({body});\n".encode()


def build_gallery(store: Storage, catalog: str, pool: PoolConfig | None = None) -> GalleryResult:
    """Write (or refresh) the catalog's gallery; returns where the page is and what it holds.
    Missing thumbnails are made on the work pool (`pool`)."""
    base = gallery_dir(catalog)
    src_rows = store.partition_dicts("source_images", catalog)
    if src_rows is None:
        raise FileNotFoundError(f"no source_images table for catalog {catalog!r}")
    depth = _rows(store, "depth_maps", catalog)
    normals = _rows(store, "normal_maps", catalog)
    sprites = _rows(store, "parallax_sprites", catalog)
    present = FileIndex(store, f"{base}/thumbs")
    made = 0
    items: list[dict[str, Any]] = []
    todo: list[tuple[int, ThumbTask]] = []
    known_layers = _previous_layers(store, base)  # manifests of unchanged sprites: not re-read
    rejected: list[dict[str, Any]] = []
    for r in src_rows:
        if r["status"] != "accepted":
            rejected.append(
                {"source": r.get("source_uri"), "status": r["status"], "reason": r.get("reason")}
            )
            continue
        iid = r["image_id"]
        d, n, s = depth.get(iid, {}), normals.get(iid, {}), sprites.get(iid, {})
        lkey = _layers_key(s)
        if lkey and (iid, lkey) not in known_layers:
            known_layers[(iid, lkey)] = _layers(store, s)
        thumbs: dict[str, str | None] = {}
        missing: list[tuple[str, str, str]] = []
        sprite_key = (
            preview_key(s["depth_sha256"], s["params_hash"])
            if s.get("depth_sha256") and s.get("params_hash")
            else None
        )
        for kind, rel, key in (
            ("src", r.get("normalized_path"), r.get("sha256")),
            ("depth", d.get("depth_path"), d.get("output_sha256")),
            ("normals", n.get("normal_path"), n.get("output_sha256")),
            ("preview", s.get("preview_path"), sprite_key),
        ):
            if not rel or not key:
                thumbs[kind] = None
                continue
            name = thumb_name(kind, rel, key)  # by content: shared outputs share a file
            if f"{base}/{name}" not in present:
                present.add(f"{base}/{name}")  # shared outputs: made once
                missing.append((kind, rel, f"{base}/{name}"))
            thumbs[kind] = name
        if missing:  # one task per image, like every other per-image step
            todo.append((len(items), ThumbTask(store, tuple(missing))))
        items.append(
            {
                "id": iid,
                "source": r.get("source_uri"),
                "w": r.get("width"),
                "h": r.get("height"),
                "thumbs": thumbs,
                "provider": d.get("provider"),
                "model": d.get("model"),
                "cost": d.get("cost_usd"),
                "checks": {
                    a: {"status": row.get("status"), "error": row.get("error")}
                    for a, row in (("depth_maps", d), ("normal_maps", n), ("parallax_sprites", s))
                    if row
                },
                "layers": known_layers.get((iid, lkey)) if lkey else None,
                "lkey": lkey,
            }
        )
    results = map_ordered(make_thumbs, (t for _, t in todo), total=len(todo), config=pool)
    for (i, _task), outcomes in zip(todo, results):
        for kind, why in outcomes:
            if why is None:
                made += 1
                continue
            items[i]["thumbs"][kind] = None  # shown as missing, with the reason
            shown = items[i]["checks"].setdefault(
                "parallax_sprites", {"status": None, "error": None}
            )
            shown["error"] = shown["error"] or why
    pages = max(1, -(-len(items) // PAGE_SIZE))
    for p in range(pages):
        chunk = items[p * PAGE_SIZE : (p + 1) * PAGE_SIZE]
        store.write_bytes(f"{base}/data/page-{p + 1:04d}.js", _js("galleryPage", p + 1, chunk))
    meta = {
        "catalog": catalog,
        "images": len(items),
        "rejected": rejected,
        "pages": pages,
        "page_size": PAGE_SIZE,
        "cost_usd": round(sum(float(i["cost"] or 0.0) for i in items), 4),
    }
    store.write_bytes(f"{base}/data/meta.js", _js("galleryMeta", meta))
    page_rel = f"{base}/index.html"
    store.write_bytes(page_rel, _TEMPLATE.read_bytes().replace(b"{{CATALOG}}", catalog.encode()))
    return GalleryResult(
        page_rel=page_rel, images=len(items), rejected=len(rejected), pages=pages, thumbs_made=made
    )


def _layers_key(sprite_row: dict) -> str | None:
    """What a sprite set's layer list depends on: the row that made it (None: no usable set)."""
    if sprite_row.get("status") not in ("succeeded", "cached"):
        return None
    parts = (sprite_row.get(k) for k in ("manifest_path", "depth_sha256", "params_hash"))
    return ":".join(str(p) for p in parts)


def _previous_layers(store: Storage, base: str) -> dict[tuple[str, str], Any]:
    """(image id, layers key) → layer list, from the pages the last build wrote."""
    known: dict[tuple[str, str], Any] = {}
    for rel in store.list(f"{base}/data"):
        if not rel.rsplit("/", 1)[-1].startswith("page-"):
            continue
        try:
            text = store.read_bytes(rel).decode()
            rows = json.loads(f"[{text[text.index('(') + 1 : text.rindex(')')]}]")[1]
        except (OSError, ValueError, IndexError):  # unreadable: those manifests are read again
            continue
        for row in rows:
            if isinstance(row, dict) and row.get("lkey"):
                known[(row["id"], row["lkey"])] = row.get("layers")
    return known


def _layers(store: Storage, sprite_row: dict) -> dict[str, Any] | None:
    """The viewer's layer list (files relative to the gallery page) from the sprite row; the
    manifest is read here because a file:// page cannot fetch it."""
    folder, manifest_rel = sprite_row.get("sprite_dir"), sprite_row.get("manifest_path")
    if not folder or not manifest_rel or sprite_row.get("status") not in ("succeeded", "cached"):
        return None
    try:
        m = json.loads(store.read_bytes(manifest_rel))
    except (OSError, ValueError):
        return None
    return {
        "w": m["image"]["width"],
        "h": m["image"]["height"],
        "list": [
            {
                "file": f"../../{folder}/{layer['file']}",
                "bbox": layer["bbox"],
                "f": layer["parallax_factor"],
            }
            for layer in m["layers"]
            if not layer["empty"]
        ],
    }

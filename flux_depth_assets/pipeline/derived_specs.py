"""What each depth-derived asset makes from one image, and where: one `DerivedSpec` per asset.

- Files: `catalogs/<name>/normal_maps/<image_id>.png`;
  `catalogs/<name>/parallax_sprites/<image_id>/{layer_<k>.png, manifest.json, preview.<ext>}`.
- Tables: `tables/<asset>/catalog=<name>/part-0.parquet` (schemas in `storage.schemas`).

The math is in `depth.normals`, `depth.sprites` and `depth.stats`; the run in `pipeline.derived_run`.
"""

from __future__ import annotations

import hashlib

import numpy as np

from flux_depth_assets.config.models import ModelSettings
from flux_depth_assets.depth.encoding import depth_faces, encode_png
from flux_depth_assets.depth.normals import (
    normals_from_depth,
    quantize_normals,
    tilt_deg,
)
from flux_depth_assets.depth.sprites import build_sprites, match_size
from flux_depth_assets.depth.stats import depth_statistics
from flux_depth_assets.paths import safe_segment
from flux_depth_assets.pipeline.derived_run import (
    NORMALS_ASSET,
    SPRITES_ASSET,
    STATS_ASSET,
    DepthInput,
    DerivedSpec,
    load_nearness,
    load_rgb,
)
from flux_depth_assets.storage.schemas import DEPTH_STATS, NORMAL_MAPS, PARALLAX_SPRITES
from flux_depth_assets.storage.store import Storage
from flux_depth_assets.thumbs import preview_key, put_thumb, still_thumb, sway_thumb


def sprite_dir(catalog: str, image_id: str) -> str:
    return f"{Storage.dir_rel(catalog, SPRITES_ASSET)}/{safe_segment(image_id)}"


#: a decoded normal shorter than this is the "no normal" marker (the zero vector, rgb 128) that
#: invalid depth (e.g. a transparent source pixel) gets
NO_NORMAL_BELOW = 0.5


def normal_lengths(normals: np.ndarray) -> np.ndarray:
    """|n| of every (H, W, 3) normal, float32 (one fused pass; `np.linalg.norm` takes 3x longer)."""
    n = np.asarray(normals, dtype=np.float32)
    return np.sqrt(np.einsum("...i,...i->...", n, n))


def code_lengths(q: np.ndarray, top: int) -> np.ndarray:
    """|n| of every normal as its PNG decodes it (code c → c / top * 2 - 1), straight from the
    (H, W, 3) codes: one table read of each component's square (8-bit: OpenCV's LUT, 4× numpy's
    gathers) instead of a float copy of the whole map, summed in order in float32."""
    import cv2

    component = np.arange(top + 1, dtype=np.float32) * np.float32(2.0 / top) - np.float32(1.0)
    square = component * component
    sq = cv2.LUT(q, square) if q.dtype == np.uint8 else np.take(square, q)
    total = sq[..., 0] + sq[..., 1]
    total += sq[..., 2]
    return np.sqrt(total, out=total)


def max_unit_error(lengths: np.ndarray) -> float:
    """max | |n| - 1 | over the normals that exist (`lengths` from `normal_lengths`): from the
    shortest and longest present length (|x - 1| is largest at one of them), no gather."""
    import cv2

    lengths = np.ascontiguousarray(lengths)
    flat = lengths.reshape(1, -1)  # one row: OpenCV goes through an (N, 1) column row by row
    present = (flat >= NO_NORMAL_BELOW).view(np.uint8)
    if not present.any():
        return 0.0
    lo, hi, _, _ = cv2.minMaxLoc(flat, mask=present)
    one = lengths.dtype.type(1.0)
    return float(max(abs(lengths.dtype.type(hi) - one), abs(lengths.dtype.type(lo) - one)))


def make_normals(
    store: Storage, catalog: str, settings: ModelSettings, inp: DepthInput, _params_hash: str
) -> dict:
    s = settings.normal_maps
    near = load_nearness(store, inp)
    # invalid depth has no surface: the zero vector ("no normal", rgb 128) instead of NaN (a
    # NaN slope makes all three components NaN, so z alone tells where)
    normals = normals_from_depth(
        near, s.strength, s.convention, smooth_px=s.smooth * max(near.shape)
    )
    valid = np.isfinite(near)
    all_valid = bool(valid.all())
    none = np.isnan(normals[..., 2]) if all_valid else ~valid | np.isnan(normals[..., 2])
    if none.any():
        normals[none] = 0.0
    q = quantize_normals(normals, s.bit_depth)  # once: the file's pixels and the error check
    png = encode_png(q)
    rel = store.file_rel(catalog, NORMALS_ASSET, inp.image_id, "png")
    store.write_bytes(rel, png)
    sha = hashlib.sha256(png).hexdigest()
    put_thumb(store, catalog, "normals", rel, sha, lambda: still_thumb(q))
    unit_err = max_unit_error(code_lengths(q, 255 if s.bit_depth == 8 else 65535))
    tilt = tilt_deg(normals if all_valid else normals[valid])  # over the valid pixels
    mean_tilt = float(tilt.mean()) if tilt.size else None
    return {
        "normal_path": rel,
        "output_sha256": sha,
        "convention": s.convention,
        "bit_depth": s.bit_depth,
        "strength": s.strength,
        "width": int(near.shape[1]),
        "height": int(near.shape[0]),
        "max_unit_error": unit_err,
        "mean_tilt_deg": mean_tilt,
    }


def make_sprites(
    store: Storage, catalog: str, settings: ModelSettings, inp: DepthInput, params_hash: str
) -> dict:
    rgb = load_rgb(store, inp.normalized_path)
    depth_png = store.read_bytes(inp.depth_path)
    ss = build_sprites(
        rgb,
        match_size(load_nearness(store, inp, depth_png), rgb.shape[1], rgb.shape[0]),
        settings.parallax_sprites,
        image_id=inp.image_id,
        depth_sha256=inp.depth_sha256,
        # the local estimator's faces, found on this same normalised image: not detected twice
        faces=depth_faces(depth_png),
    )
    folder = sprite_dir(catalog, inp.image_id)
    files = ss.files()
    manifest = files.pop("manifest.json")
    for name, data in files.items():
        store.write_bytes(f"{folder}/{name}", data)
    store.write_bytes(f"{folder}/manifest.json", manifest)  # last: its presence means complete
    frames, frame_ms = ss.preview_frames, ss.manifest["preview"]["frame_ms"]
    key = preview_key(inp.depth_sha256, params_hash)
    preview_rel = f"{folder}/{ss.preview_file}"
    put_thumb(store, catalog, "preview", preview_rel, key, lambda: sway_thumb(frames, frame_ms))
    keep = {f"{folder}/{name}" for name in [*files, "manifest.json"]}
    for rel in store.list(folder):  # files of an earlier layout (more layers, another format)
        if rel not in keep:
            store.delete(rel)
    m = ss.manifest
    return {
        "sprite_dir": folder,
        "manifest_path": f"{folder}/manifest.json",
        "preview_path": preview_rel,
        "layers": len(m["layers"]),
        "nonempty_layers": sum(not layer["empty"] for layer in m["layers"]),
        "cuts": m["cuts"],
        "width": m["image"]["width"],
        "height": m["image"]["height"],
        "bytes": sum(map(len, files.values())) + len(manifest),
        "source_sha256": inp.source_sha256,
    }


def make_stats(
    store: Storage, catalog: str, settings: ModelSettings, inp: DepthInput, _params_hash: str
) -> dict:
    near = load_nearness(store, inp)
    value_range = None
    if inp.depth_min is not None and inp.depth_max is not None:
        value_range = (float(inp.depth_min), float(inp.depth_max))
    return depth_statistics(near, value_range=value_range, strength=settings.normal_maps.strength)


SPECS = {
    spec.asset: spec
    for spec in (
        DerivedSpec(
            asset=NORMALS_ASSET,
            schema=NORMAL_MAPS,
            make=make_normals,
            params=lambda s: s.normal_maps,
            output_columns=("normal_path",),
            preview_column="normal_path",
            preview_columns=[
                "image_id",
                "status",
                "normal_path",
                "mean_tilt_deg",
                "seconds",
                "error",
            ],
        ),
        DerivedSpec(
            asset=SPRITES_ASSET,
            schema=PARALLAX_SPRITES,
            make=make_sprites,
            params=lambda s: s.parallax_sprites,
            output_columns=("manifest_path", "preview_path"),
            preview_column="preview_path",
            preview_columns=[
                "image_id",
                "status",
                "preview_path",
                "nonempty_layers",
                "seconds",
                "error",
            ],
        ),
        DerivedSpec(
            asset=STATS_ASSET,
            schema=DEPTH_STATS,
            make=make_stats,
            params=lambda s: {"normal_strength": s.normal_maps.strength},
            output_columns=(),
            preview_column=None,
            preview_columns=[
                "image_id",
                "status",
                "p50",
                "near_far_ratio",
                "edge_density",
                "mean_tilt_deg",
                "error",
            ],
        ),
    )
}

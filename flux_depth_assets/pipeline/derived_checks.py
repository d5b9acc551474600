"""What the derived assets' file-reading checks measure on each sampled image. No Dagster.

One pass per image gives every figure its checks need (a sprite set's layers are decoded once
for the recomposition PSNR and the unfilled pixels), the images' passes run on the work pool,
and the figures are remembered by the files' content (`pipeline.memo`): the second sprite check
and an unchanged re-run's spot checks read the files and hash them, but decode nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from flux_depth_assets.depth.encoding import decode_png16
from flux_depth_assets.depth.normals import decode_normals_png
from flux_depth_assets.depth.parallax_check import unfilled_in_layers
from flux_depth_assets.depth.sprites import decode_rgba, psnr, recompose_layers
from flux_depth_assets.pipeline.derived_run import NORMALS_ASSET, load_rgb
from flux_depth_assets.pipeline.derived_specs import NO_NORMAL_BELOW, max_unit_error, normal_lengths
from flux_depth_assets.pipeline.memo import Memo, content_key
from flux_depth_assets.pipeline.parallel import PoolConfig
from flux_depth_assets.storage.store import Storage


@dataclass(frozen=True)
class FigureTask:
    """One sampled image: its asset row and the file it is compared with (the depth map for
    normals, the normalised source for sprites)."""

    store: Storage
    kind: str  # NORMALS_ASSET or SPRITES_ASSET
    row: dict[str, Any]
    reference: str | None


def _files(task: FigureTask) -> list[bytes]:
    """Every file the figures depend on, in a fixed order (the memo key hashes them)."""
    store, row = task.store, task.row
    if task.kind == NORMALS_ASSET:
        out = [store.read_bytes(row["normal_path"])]
    else:
        manifest = store.read_bytes(row["manifest_path"])
        layers = [e["file"] for e in json.loads(manifest)["layers"] if not e["empty"]]
        out = [manifest, *(store.read_bytes(f"{row['sprite_dir']}/{f}") for f in layers)]
    if task.reference and store.exists(task.reference):
        out.append(store.read_bytes(task.reference))
    return out


def normal_figures(store: Storage, row: dict[str, Any], depth_rel: str | None) -> dict[str, Any]:
    """max | |n| - 1 |, the smallest z, and the pixels with valid depth but no normal."""
    n = decode_normals_png(store.read_bytes(row["normal_path"]))
    lengths = normal_lengths(n)
    present = lengths >= NO_NORMAL_BELOW  # "no normal" pixels (invalid depth) are not unit
    missing = 0
    if depth_rel and store.exists(depth_rel):
        valid = np.isfinite(decode_png16(store.read_bytes(depth_rel)))
        missing = (
            int(present.size) if valid.shape != present.shape else int((valid & ~present).sum())
        )
    return {
        "max_unit_error": max_unit_error(lengths),
        "min_z": float(n[..., 2][present].min()) if present.any() else 1.0,
        "missing": missing,
    }


def sprite_figures(store: Storage, row: dict[str, Any], source_rel: str | None) -> dict[str, Any]:
    """Recomposition PSNR against the source (None without one) and unfilled pixels at the
    preview's largest offsets, from one decode of the layers."""
    folder = row["sprite_dir"]
    manifest = json.loads(store.read_bytes(row["manifest_path"]))
    decoded: dict[str, np.ndarray] = {}

    def layer(name: str) -> np.ndarray:
        if name not in decoded:
            decoded[name] = decode_rgba(store.read_bytes(f"{folder}/{name}"))
        return decoded[name]

    back = recompose_layers(manifest, layer)
    value = psnr(back, load_rgb(store, source_rel)) if source_rel else None
    return {
        "psnr_db": None if value is None or not np.isfinite(value) else value,
        "identical": value is not None and not np.isfinite(value),
        "unfilled": unfilled_in_layers(manifest, layer),
    }


def figures(task: FigureTask) -> dict[str, Any]:
    """The figures of one image, or {"error": why}; never raises (a pool task)."""
    try:
        if task.kind == NORMALS_ASSET:
            return normal_figures(task.store, task.row, task.reference)
        return sprite_figures(task.store, task.row, task.reference)
    except Exception as exc:  # noqa: BLE001 - any failure is this image's check finding
        return {"error": f"{type(exc).__name__}: {exc}"}


def sampled_figures(
    store: Storage, catalog: str, tasks: list[FigureTask], pool: PoolConfig | None = None
) -> list[dict[str, Any]]:
    """`figures` of every task, in order: remembered ones by content, the rest on the pool."""
    if not tasks:
        return []
    out: list[dict[str, Any] | None] = []  # None: measured below
    keyed: list[tuple[str, FigureTask]] = []
    for task in tasks:
        try:
            keyed.append((content_key(*_files(task)), task))
            out.append(None)
        except Exception as exc:  # noqa: BLE001 - unreadable now: this image's finding
            out.append({"error": f"{type(exc).__name__}: {exc}"})
    memo = Memo(store, catalog, f"{tasks[0].kind}_checks")
    # a read error may not happen next time: not remembered
    measured = iter(memo.map(keyed, figures, pool, keep=lambda got: "error" not in got))
    memo.save()
    return [next(measured) if o is None else o for o in out]

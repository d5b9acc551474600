"""The depth-derived assets' shared run: inputs, the cache rule, one row per accepted image.

- Inputs: the partition's accepted `source_images` rows joined with their `depth_maps` rows.
- Cache: an image is recomputed only when its depth map's content hash (`depth_sha256`) or the
  settings + algorithm version (`params_hash`) differ from its last row, or its outputs are gone.
- Accepted images without a usable depth map get a `skipped_no_depth` row: they are counted,
  never fail the run, and show up (as a warning) in the `outputs_complete` checks.

What differs per asset (what it makes, where, which settings count) is a `DerivedSpec`; the three
specs are in `pipeline.derived_specs`.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa

from flux_depth_assets.config.models import ModelSettings
from flux_depth_assets.depth.encoding import decode_image, decode_png16
from flux_depth_assets.depth.normalization import catalog_range, to_catalog_scale
from flux_depth_assets.lineage.writer import config_hash
from flux_depth_assets.pipeline.depth_run import ASSET as DEPTH_ASSET
from flux_depth_assets.pipeline.parallel import PoolConfig, map_images
from flux_depth_assets.pipeline.rows_run import RowsRun
from flux_depth_assets.pipeline.scan import accepted_rows
from flux_depth_assets.storage.store import FileIndex, Storage

NORMALS_ASSET = "normal_maps"
SPRITES_ASSET = "parallax_sprites"
STATS_ASSET = "depth_stats"

#: bump when an algorithm's output changes: part of `params_hash`, so cached rows are redone
ALGORITHM_VERSION = {NORMALS_ASSET: "3", SPRITES_ASSET: "3", STATS_ASSET: "2"}
OK = ("succeeded", "cached")


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class DepthInput:
    """One accepted image that has a usable depth map."""

    image_id: str
    source_sha256: str
    normalized_path: str
    depth_path: str
    depth_sha256: str
    depth_min: float | None
    depth_max: float | None
    width: int
    height: int
    catalog_range: tuple[float, float] | None = None  # set with `normalization: catalog`


def derived_inputs(
    store: Storage, catalog: str, normalization: str = "per_image"
) -> tuple[list[DepthInput], list[dict]]:
    """The accepted images with a depth map, and a `skipped_no_depth` row for every other one."""
    accepted = accepted_rows(store, catalog)
    rows = store.partition_dicts(DEPTH_ASSET, catalog)
    if rows is None:
        raise FileNotFoundError(
            f"no depth_maps table for catalog {catalog!r}: materialize depth_maps first"
        )
    depth = {r["image_id"]: r for r in rows}
    present = FileIndex(store, Storage.dir_rel(catalog, DEPTH_ASSET))
    inputs, skipped = [], []
    for src in accepted:
        d = depth.get(src["image_id"])
        if (
            d is None
            or d["status"] not in OK
            or not d.get("depth_path")
            or d["depth_path"] not in present
        ):
            why = (
                "no depth_maps row"
                if d is None
                else f"depth map {d['status']}" + (f": {d['error']}" if d.get("error") else "")
                if d["status"] not in OK
                else "depth map file missing"
            )
            skipped.append(
                {
                    "image_id": src["image_id"],
                    "status": "skipped_no_depth",
                    "error": why,
                    "width": src["width"],
                    "height": src["height"],
                }
            )
            continue
        sha = (
            d.get("output_sha256") or hashlib.sha256(store.read_bytes(d["depth_path"])).hexdigest()
        )
        inputs.append(
            DepthInput(
                image_id=src["image_id"],
                source_sha256=src["sha256"],
                normalized_path=src["normalized_path"],
                depth_path=d["depth_path"],
                depth_sha256=sha,
                depth_min=d.get("depth_min"),
                depth_max=d.get("depth_max"),
                width=src["width"],
                height=src["height"],
            )
        )
    if normalization == "catalog":
        common = catalog_range((i.depth_min, i.depth_max) for i in inputs)
        inputs = [replace(i, catalog_range=common) for i in inputs]
    return inputs, skipped


def load_nearness(store: Storage, inp: DepthInput, data: bytes | None = None) -> np.ndarray:
    """float32 (H, W) in [0, 1], larger = nearer, NaN = invalid; on the catalog's common range
    when the input carries one (`depth_maps.normalization: catalog`, see depth.normalization).
    `data`: the depth PNG's bytes when the caller has read them already."""
    near = decode_png16(store.read_bytes(inp.depth_path) if data is None else data)
    if inp.catalog_range is not None and inp.depth_min is not None and inp.depth_max is not None:
        near = to_catalog_scale(near, (inp.depth_min, inp.depth_max), inp.catalog_range)
    return near


def load_rgb(store: Storage, rel: str) -> np.ndarray:
    return decode_image(store.read_bytes(rel), "RGB")


# --------------------------------------------------------------------------- specs and the cache rule


@dataclass(frozen=True)
class DerivedSpec:
    """What differs between the three derived assets."""

    asset: str
    schema: pa.Schema
    make: Callable[[Storage, str, ModelSettings, DepthInput, str], dict]
    params: Callable[[ModelSettings], Any]  # the settings the outputs depend on
    output_columns: tuple[str, ...]  # columns naming the files a row's outputs live in
    preview_column: str | None  # the column naming the file to show for a run (if any)
    preview_columns: list[str]

    def outputs(self, row: dict) -> list[str]:
        """The files `row`'s outputs live in (checked to exist)."""
        return [row[c] for c in self.output_columns]

    def preview_path(self, row: dict) -> str | None:
        return row.get(self.preview_column) if self.preview_column else None

    def out_dir(self, catalog: str) -> str | None:
        """The folder of the asset's files (None when it makes no files, only table rows)."""
        return Storage.dir_rel(catalog, self.asset) if self.output_columns else None

    def params_hash(self, settings: ModelSettings) -> str:
        return config_hash(
            {
                "asset": self.asset,
                "algorithm": ALGORITHM_VERSION[self.asset],
                "settings": self.params(settings),
            }
        )


def stale_reason(
    row: dict | None,
    inp: DepthInput,
    spec: DerivedSpec,
    present: FileIndex,
    params_hash: str | None = None,
) -> str | None:
    """None when `row` holds usable outputs of `inp`'s current depth map, else why not.

    The one cache rule, shared by the run (which also requires the current `params_hash`) and
    the `outputs_complete` checks (which do not look at settings).
    """
    if row is None:
        return "no row"
    if row["status"] not in OK:
        return row["status"]
    if row["depth_sha256"] != inp.depth_sha256:
        return "made from an older depth map"
    if params_hash is not None and row["params_hash"] != params_hash:
        return "made with other settings"
    if not all(p in present for p in spec.outputs(row)):
        return "output file missing"
    return None


# --------------------------------------------------------------------------- the run


@dataclass
class DerivedRun(RowsRun):
    @property
    def failure_ratio(self) -> float:
        attempted = self.counts.get("images", 0) - self.counts.get("skipped_no_depth", 0)
        return self.share("failed", attempted)


@dataclass(frozen=True)
class DeriveTask:
    """One image's work for a pool worker: `make` is a module-level function (sent by name)."""

    make: Callable[[Storage, str, ModelSettings, DepthInput, str], dict]
    store: Storage
    catalog: str
    settings: ModelSettings
    inp: DepthInput
    base: dict


def derive_one(task: DeriveTask) -> dict:
    """The row of one image; a failure is a `failed` row, never an exception."""
    t1 = time.perf_counter()
    inp = task.inp
    try:
        out = task.make(task.store, task.catalog, task.settings, inp, task.base["params_hash"])
        row = {**task.base, **out, "status": "succeeded", "error": None}
    except Exception as exc:  # noqa: BLE001 - one bad image never fails the run
        row = {
            **task.base,
            "status": "failed",
            "error": f"{type(exc).__name__}: {exc}"[:500],
            "width": inp.width,
            "height": inp.height,
        }
    row["seconds"] = time.perf_counter() - t1
    return row


def run_derived(
    spec: DerivedSpec,
    store: Storage,
    catalog: str,
    settings: ModelSettings,
    *,
    run_id: str = "",
    log: Callable[[str], None] | None = None,
    pool: PoolConfig | None = None,
) -> DerivedRun:
    """Make `spec.asset` for every accepted image of a catalog; reuse rows whose inputs are
    unchanged. New work runs on the work pool (`pool`); rows come back in input order."""
    t0 = time.perf_counter()
    say = log or (lambda _m: None)
    inputs, skipped = derived_inputs(store, catalog, settings.depth_maps.normalization)
    previous = store.partition_rows(spec.asset, catalog)
    present = FileIndex(store, Storage.dir_rel(catalog, spec.asset))
    params_hash = spec.params_hash(settings)
    if inputs and inputs[0].catalog_range is not None:  # a new catalog range redoes every image
        params_hash = config_hash({"params": params_hash, "catalog_range": inputs[0].catalog_range})
    now = datetime.now(UTC)
    rows: list[dict | None] = []
    stale: list[int] = []
    for inp in inputs:
        prev = previous.get(inp.image_id)
        if prev is not None and stale_reason(prev, inp, spec, present, params_hash) is None:
            rows.append(
                {
                    **prev,
                    "status": "cached",
                    "error": None,
                    "run_id": run_id,
                    **({"seconds": 0.0} if "seconds" in spec.schema.names else {}),
                }
            )
        else:
            stale.append(len(rows))
            rows.append(None)
    tasks = (
        DeriveTask(
            spec.make,
            store,
            catalog,
            settings,
            inputs[i],
            {
                "image_id": inputs[i].image_id,
                "depth_sha256": inputs[i].depth_sha256,
                "params_hash": params_hash,
                "run_id": run_id,
            },
        )
        for i in stale
    )
    if stale:
        say(f"{spec.asset}: {len(stale)} image(s) to make, {len(inputs) - len(stale)} cached")
    for i, row in map_images(derive_one, tasks, stale, pool=pool, log=say, label=spec.asset):
        row["materialized_at"] = now
        rows[i] = row
    done = [r for r in rows if r is not None]
    for row in skipped:
        done.append({**row, "params_hash": params_hash, "run_id": run_id, "materialized_at": now})
    counts = {"images": len(done)}
    for status in ("succeeded", "cached", "failed", "skipped_no_depth"):
        counts[status] = sum(r["status"] == status for r in done)
    counts["new"] = counts.pop("succeeded")
    return DerivedRun(rows=done, counts=counts, seconds=time.perf_counter() - t0)

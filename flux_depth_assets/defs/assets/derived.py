"""Depth-derived assets: `normal_maps`, `parallax_sprites`, `depth_stats`, and their asset checks.

A thin Dagster layer over the pure modules `depth.normals`, `depth.sprites` and `depth.stats`:
read the partition's `source_images` and `depth_maps` tables, make each image's outputs, write
them under the storage root, and write one snapshot table per asset and catalog.

- Files: `catalogs/<name>/normal_maps/<image_id>.png`;
  `catalogs/<name>/parallax_sprites/<image_id>/{layer_<k>.png, manifest.json, preview.<ext>}`.
- Tables: `tables/<asset>/catalog=<name>/part-0.parquet` (schemas in `storage.schemas`).
- Cache: an image is recomputed only when its depth map's content hash (`depth_sha256`) or the
  settings + algorithm version (`params_hash`) differ from its last row, or its outputs are gone.
- Accepted images without a usable depth map get a `skipped_no_depth` row: they are counted,
  never fail the run, and show up (as a warning) in the `outputs_complete` checks.
"""


import hashlib
import io
import json
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

import dagster as dg
import numpy as np
import pyarrow as pa
from PIL import Image

from flux_depth_assets.config.models import CatalogConfig, ModelSettings
from flux_depth_assets.defs.assets.catalog import source_images
from flux_depth_assets.defs.assets.depth import depth_maps
from flux_depth_assets.defs.constants import CATALOG_PARTITIONS, DERIVED_GROUP, OWNERS
from flux_depth_assets.defs.metadata import counts_metadata, preview_table
from flux_depth_assets.defs.resources import CatalogsResource, StorageResource
from flux_depth_assets.depth.encoding import decode_png16
from flux_depth_assets.depth.normals import (
    decode_normals_png,
    encode_normals_png,
    normals_from_depth,
    quantize_normals,
    tilt_deg,
)
from flux_depth_assets.depth.sprites import build_sprites, match_size, psnr, recompose
from flux_depth_assets.depth.stats import depth_statistics
from flux_depth_assets.lineage.record import record_materialization
from flux_depth_assets.lineage.writer import config_hash
from flux_depth_assets.paths import safe_segment
from flux_depth_assets.pipeline.scan import accepted_rows
from flux_depth_assets.storage.schemas import (
    DEPTH_STATS,
    NORMAL_MAPS,
    PARALLAX_SPRITES,
    table_from_rows,
)
from flux_depth_assets.storage.store import Storage

NORMALS_ASSET = "normal_maps"
SPRITES_ASSET = "parallax_sprites"
STATS_ASSET = "depth_stats"
DEPTH_ASSET = "depth_maps"

#: bump when an algorithm's output changes: part of `params_hash`, so cached rows are redone
ALGORITHM_VERSION = {NORMALS_ASSET: "1", SPRITES_ASSET: "1", STATS_ASSET: "1"}
OK = ("succeeded", "cached")
#: how many images a file-reading check opens per run (most recently made first)
CHECK_SAMPLE = 24
UNIT_TOLERANCE = 0.02
MIN_PSNR_DB = 35.0


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


def derived_inputs(store: Storage, catalog: str) -> tuple[list[DepthInput], list[dict]]:
    """The accepted images with a depth map, and a `skipped_no_depth` row for every other one."""
    accepted = accepted_rows(store, catalog)
    table = store.read_partition(DEPTH_ASSET, catalog)
    if table is None:
        raise FileNotFoundError(f"no depth_maps table for catalog {catalog!r}: "
                                "materialize depth_maps first")
    depth = {r["image_id"]: r for r in table.to_pylist()}
    inputs, skipped = [], []
    for src in accepted:
        d = depth.get(src["image_id"])
        if d is None or d["status"] not in OK or not d.get("depth_path") or not store.exists(d["depth_path"]):
            why = ("no depth_maps row" if d is None else
                   f"depth map {d['status']}" + (f": {d['error']}" if d.get("error") else "")
                   if d["status"] not in OK else "depth map file missing")
            skipped.append({"image_id": src["image_id"], "status": "skipped_no_depth", "error": why,
                            "width": src["width"], "height": src["height"]})
            continue
        sha = d.get("output_sha256") or hashlib.sha256(store.read_bytes(d["depth_path"])).hexdigest()
        inputs.append(DepthInput(
            image_id=src["image_id"], source_sha256=src["sha256"],
            normalized_path=src["normalized_path"], depth_path=d["depth_path"], depth_sha256=sha,
            depth_min=d.get("depth_min"), depth_max=d.get("depth_max"),
            width=src["width"], height=src["height"]))
    return inputs, skipped


def load_nearness(store: Storage, inp: DepthInput) -> np.ndarray:
    """float32 (H, W) in [0, 1], larger = nearer, NaN = invalid."""
    return decode_png16(store.read_bytes(inp.depth_path))


def load_rgb(store: Storage, rel: str) -> np.ndarray:
    with Image.open(io.BytesIO(store.read_bytes(rel))) as im:
        return np.asarray(im.convert("RGB"))


# --------------------------------------------------------------------------- the per-image work


def sprite_dir(catalog: str, image_id: str) -> str:
    return f"catalogs/{safe_segment(catalog)}/{SPRITES_ASSET}/{safe_segment(image_id)}"


def make_normals(store: Storage, catalog: str, settings: ModelSettings, inp: DepthInput) -> dict:
    s = settings.normal_maps
    near = load_nearness(store, inp)
    normals = normals_from_depth(near, s.strength, s.convention)
    png = encode_normals_png(normals, s.bit_depth)
    rel = store.file_rel(catalog, NORMALS_ASSET, inp.image_id, "png")
    store.write_bytes(rel, png)
    top = 255.0 if s.bit_depth == 8 else 65535.0
    decoded = quantize_normals(normals, s.bit_depth).astype(np.float32) * np.float32(2.0 / top) - 1.0
    unit_err = float(np.abs(np.linalg.norm(decoded, axis=-1) - 1.0).max())
    valid = np.isfinite(near)
    return {"normal_path": rel, "output_sha256": hashlib.sha256(png).hexdigest(),
            "convention": s.convention, "bit_depth": s.bit_depth, "strength": s.strength,
            "width": int(near.shape[1]), "height": int(near.shape[0]), "max_unit_error": unit_err,
            "mean_tilt_deg": float(tilt_deg(normals)[valid].mean()) if valid.any() else None}


def make_sprites(store: Storage, catalog: str, settings: ModelSettings, inp: DepthInput) -> dict:
    rgb = load_rgb(store, inp.normalized_path)
    near = match_size(load_nearness(store, inp), rgb.shape[1], rgb.shape[0])
    ss = build_sprites(rgb, near, settings.parallax_sprites, image_id=inp.image_id,
                       depth_sha256=inp.depth_sha256)
    folder = sprite_dir(catalog, inp.image_id)
    files = ss.files()
    manifest = files.pop("manifest.json")
    for name, data in files.items():
        store.write_bytes(f"{folder}/{name}", data)
    store.write_bytes(f"{folder}/manifest.json", manifest)  # last: its presence means complete
    keep = {f"{folder}/{name}" for name in [*files, "manifest.json"]}
    for rel in store.list(folder):  # files of an earlier layout (more layers, another format)
        if rel not in keep:
            store.delete(rel)
    m = ss.manifest
    return {"sprite_dir": folder, "manifest_path": f"{folder}/manifest.json",
            "preview_path": f"{folder}/{ss.preview_file}", "layers": len(m["layers"]),
            "nonempty_layers": sum(not layer["empty"] for layer in m["layers"]), "cuts": m["cuts"],
            "width": m["image"]["width"], "height": m["image"]["height"],
            "bytes": sum(map(len, files.values())) + len(manifest),
            "source_sha256": inp.source_sha256}


def make_stats(store: Storage, catalog: str, settings: ModelSettings, inp: DepthInput) -> dict:
    near = load_nearness(store, inp)
    value_range = None
    if inp.depth_min is not None and inp.depth_max is not None:
        value_range = (float(inp.depth_min), float(inp.depth_max))
    return depth_statistics(near, value_range=value_range, strength=settings.normal_maps.strength)


@dataclass(frozen=True)
class DerivedSpec:
    """What differs between the three derived assets."""

    asset: str
    schema: pa.Schema
    make: Callable[[Storage, str, ModelSettings, DepthInput], dict]
    params: Callable[[ModelSettings], Any]  # the settings the outputs depend on
    outputs: Callable[[dict], list[str]]  # files a row's outputs live in (checked to exist)
    preview_columns: list[str]
    preview_path: Callable[[dict], str | None]
    out_dir: Callable[[str], str | None]

    def params_hash(self, settings: ModelSettings) -> str:
        return config_hash({"asset": self.asset, "algorithm": ALGORITHM_VERSION[self.asset],
                            "settings": self.params(settings)})


SPECS = {
    NORMALS_ASSET: DerivedSpec(
        asset=NORMALS_ASSET, schema=NORMAL_MAPS, make=make_normals,
        params=lambda s: s.normal_maps,
        outputs=lambda r: [r["normal_path"]],
        preview_columns=["image_id", "status", "normal_path", "mean_tilt_deg", "seconds", "error"],
        preview_path=lambda r: r.get("normal_path"),
        out_dir=lambda c: f"catalogs/{safe_segment(c)}/{NORMALS_ASSET}"),
    SPRITES_ASSET: DerivedSpec(
        asset=SPRITES_ASSET, schema=PARALLAX_SPRITES, make=make_sprites,
        params=lambda s: s.parallax_sprites,
        outputs=lambda r: [r["manifest_path"], r["preview_path"]],
        preview_columns=["image_id", "status", "preview_path", "nonempty_layers", "seconds", "error"],
        preview_path=lambda r: r.get("preview_path"),
        out_dir=lambda c: f"catalogs/{safe_segment(c)}/{SPRITES_ASSET}"),
    STATS_ASSET: DerivedSpec(
        asset=STATS_ASSET, schema=DEPTH_STATS, make=make_stats,
        params=lambda s: {"normal_strength": s.normal_maps.strength},
        outputs=lambda r: [],
        preview_columns=["image_id", "status", "p50", "near_far_ratio", "edge_density",
                         "mean_tilt_deg", "error"],
        preview_path=lambda r: None,
        out_dir=lambda c: None),
}


@dataclass
class DerivedRun:
    rows: list[dict]
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def failure_ratio(self) -> float:
        attempted = self.counts.get("images", 0) - self.counts.get("skipped_no_depth", 0)
        return self.counts.get("failed", 0) / attempted if attempted else 0.0


def previous_rows(store: Storage, asset: str, catalog: str) -> dict[str, dict]:
    try:
        table = store.read_partition(asset, catalog)
    except Exception:  # an unreadable snapshot only costs a recompute
        return {}
    return {} if table is None else {r["image_id"]: r for r in table.to_pylist()}


def run_derived(spec: DerivedSpec, store: Storage, catalog: str, settings: ModelSettings, *,
                run_id: str = "", log: Callable[[str], None] | None = None) -> DerivedRun:
    """Make `spec.asset` for every accepted image of a catalog; reuse rows whose inputs are unchanged."""
    t0 = time.perf_counter()
    log = log or (lambda _m: None)
    inputs, skipped = derived_inputs(store, catalog)
    previous = previous_rows(store, spec.asset, catalog)
    params_hash = spec.params_hash(settings)
    now = datetime.now(timezone.utc)
    rows: list[dict] = []
    for n, inp in enumerate(inputs, 1):
        base = {"image_id": inp.image_id, "depth_sha256": inp.depth_sha256, "params_hash": params_hash,
                "run_id": run_id}
        prev = previous.get(inp.image_id)
        if (prev and prev["status"] in OK and prev["depth_sha256"] == inp.depth_sha256
                and prev["params_hash"] == params_hash
                and all(store.exists(p) for p in spec.outputs(prev))):
            rows.append({**prev, "status": "cached", "error": None, "run_id": run_id,
                         **({"seconds": 0.0} if "seconds" in spec.schema.names else {})})
            continue
        t1 = time.perf_counter()
        try:
            out = spec.make(store, catalog, settings, inp)
            row = {**base, **out, "status": "succeeded", "error": None}
        except Exception as exc:  # one bad image never fails the run
            row = {**base, "status": "failed", "error": f"{type(exc).__name__}: {exc}"[:500],
                   "width": inp.width, "height": inp.height}
        row["seconds"] = time.perf_counter() - t1
        row["materialized_at"] = now
        rows.append(row)
        if n % 25 == 0 or n == len(inputs):
            log(f"{spec.asset}: {n}/{len(inputs)} image(s) done")
    for row in skipped:
        rows.append({**row, "params_hash": params_hash, "run_id": run_id, "materialized_at": now})
    counts = {"images": len(rows)}
    for status in ("succeeded", "cached", "failed", "skipped_no_depth"):
        counts[status] = sum(r["status"] == status for r in rows)
    counts["new"] = counts.pop("succeeded")
    return DerivedRun(rows=rows, counts=counts, seconds=time.perf_counter() - t0)


# --------------------------------------------------------------------------- Dagster assets


def _materialize(spec: DerivedSpec, context: dg.AssetExecutionContext, storage: StorageResource,
                 catalogs: CatalogsResource) -> dg.MaterializeResult:
    started_at = datetime.now(timezone.utc)
    project = catalogs.load()
    catalog: CatalogConfig = project.catalog(context.partition_key)
    settings = project.settings_for(catalog.name)
    store = storage.get()
    try:
        result = run_derived(spec, store, catalog.name, settings, run_id=context.run.run_id,
                             log=context.log.info)
    except FileNotFoundError as exc:
        raise dg.Failure(description=f"catalog {catalog.name!r}: {exc}") from None
    table_rel = store.write_partition(spec.asset, catalog.name, table_from_rows(result.rows, spec.schema))
    for row in [r for r in result.rows if r["status"] == "failed"][:20]:
        context.log.warning(f"{spec.asset} failed for {row['image_id']}: {row['error']}")
    over_ratio = result.failure_ratio > catalog.max_failure_ratio
    lineage = record_materialization(
        store, context, counts=result.counts, seconds=result.seconds, started_at=started_at,
        status="failed" if over_ratio else "succeeded",
        config_hash=config_hash(catalog, spec.params(settings)))
    ok_rows = [r for r in result.rows if r["status"] in OK]
    fresh = [r for r in ok_rows if r["status"] == "succeeded"] or ok_rows
    first = next((spec.preview_path(r) for r in fresh if spec.preview_path(r)), None)
    metadata: dict[str, Any] = {
        **counts_metadata(result.counts, result.seconds, len(result.rows)),
        **lineage,
        "table": dg.MetadataValue.path(store.uri(table_rel)),
        "preview": preview_table(result.rows, spec.preview_columns),
    }
    out_dir = spec.out_dir(catalog.name)
    if out_dir:
        metadata["output_dir"] = dg.MetadataValue.path(store.uri(out_dir))
    if first:
        metadata["preview_path"] = dg.MetadataValue.path(store.uri(first))
    if over_ratio:
        raise dg.Failure(
            description=(f"catalog {catalog.name!r}: {result.counts['failed']} {spec.asset} "
                         f"image(s) failed ({result.failure_ratio:.0%}), over max_failure_ratio "
                         f"{catalog.max_failure_ratio:.0%}; errors are in {store.uri(table_rel)}"),
            metadata=metadata)
    return dg.MaterializeResult(metadata=metadata)


_COMMON = dict(partitions_def=CATALOG_PARTITIONS, group_name=DERIVED_GROUP, owners=OWNERS,
               automation_condition=dg.AutomationCondition.eager())


@dg.asset(
    name=NORMALS_ASSET, deps=[depth_maps], kinds={"python", "png", "parquet"},
    code_version=ALGORITHM_VERSION[NORMALS_ASSET], **_COMMON,
    description=(
        "Surface normals of each depth map: RGB PNG, n = rgb / 255 * 2 - 1 (16-bit: / 65535), "
        "OpenGL (+Y up) by default, DirectX (+Y down) by config. Slope = strength × Δnearness per "
        "image width (resolution independent); depth edges are handled with one-sided differences "
        "so silhouettes get no halo. Files: catalogs/<name>/normal_maps/<image_id>.png; "
        "table: tables/normal_maps/. See docs/derived.md."),
)
def normal_maps(context: dg.AssetExecutionContext, storage: StorageResource,
                catalogs: CatalogsResource) -> dg.MaterializeResult:
    return _materialize(SPECS[NORMALS_ASSET], context, storage, catalogs)


@dg.asset(
    name=SPRITES_ASSET, deps=[depth_maps, source_images], kinds={"python", "png", "webp", "json"},
    code_version=ALGORITHM_VERSION[SPRITES_ASSET], **_COMMON,
    description=(
        "Parallax sprites per image: N RGBA depth layers (far → near, cut at depth gaps, soft "
        "alpha), layer_0 a full background with the holes of nearer layers inpainted, a JSON "
        "manifest (files, bboxes, depth ranges, parallax factors, image size, depth sha256) and an "
        "animated camera-sway preview (WebP or GIF, ≤ 512 px). Files: "
        "catalogs/<name>/parallax_sprites/<image_id>/; table: tables/parallax_sprites/."),
)
def parallax_sprites(context: dg.AssetExecutionContext, storage: StorageResource,
                     catalogs: CatalogsResource) -> dg.MaterializeResult:
    return _materialize(SPECS[SPRITES_ASSET], context, storage, catalogs)


@dg.asset(
    name=STATS_ASSET, deps=[depth_maps], kinds={"python", "parquet"},
    code_version=ALGORITHM_VERSION[STATS_ASSET], **_COMMON,
    description=(
        "Per-image depth statistics: nearness percentiles p1…p99, mean/std, near/far ratio, valid "
        "fraction, edge density, mean normal tilt. Table: tables/depth_stats/ (one row per image)."),
)
def depth_stats(context: dg.AssetExecutionContext, storage: StorageResource,
                catalogs: CatalogsResource) -> dg.MaterializeResult:
    return _materialize(SPECS[STATS_ASSET], context, storage, catalogs)


# --------------------------------------------------------------------------- checks


def _check_rows(store: Storage, asset: str, catalog: str) -> list[dict] | None:
    table = store.read_partition(asset, catalog)
    return None if table is None else table.to_pylist()


def _sample(rows: list[dict]) -> list[dict]:
    """Up to CHECK_SAMPLE usable rows, the most recently made first."""
    ok = [r for r in rows if r["status"] in OK]
    epoch = datetime.min.replace(tzinfo=timezone.utc)
    ok.sort(key=lambda r: (r["status"] == "succeeded", r.get("materialized_at") or epoch), reverse=True)
    return ok[:CHECK_SAMPLE]


def _missing_table(asset: str, catalog: str) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=False, description=f"no {asset} table for catalog {catalog!r}")


def check_unit_normals(store: Storage, catalog: str) -> dg.AssetCheckResult:
    rows = _check_rows(store, NORMALS_ASSET, catalog)
    if rows is None:
        return _missing_table(NORMALS_ASSET, catalog)
    worst, min_z, bad = 0.0, 1.0, []
    sample = _sample(rows)
    for r in sample:
        try:
            n = decode_normals_png(store.read_bytes(r["normal_path"]))
        except Exception as exc:
            bad.append(f"{r['image_id']}: unreadable ({exc})")
            continue
        err = float(np.abs(np.linalg.norm(n, axis=-1) - 1.0).max())
        z = float(n[..., 2].min())
        worst, min_z = max(worst, err), min(min_z, z)
        if err > UNIT_TOLERANCE or z <= 0:
            bad.append(f"{r['image_id']}: max | |n| - 1 | = {err:.4f}, min z = {z:.4f}")
    return dg.AssetCheckResult(
        passed=not bad,
        description=(f"{len(sample)} normal map(s) decoded: unit length within ±{UNIT_TOLERANCE:.0%}"
                     " and facing the camera (z > 0)") if not bad else "; ".join(bad[:10]),
        metadata={"checked": len(sample), "max_unit_error": round(worst, 6),
                  "min_z": round(min_z, 6), "failed": len(bad)})


def check_recomposition(store: Storage, catalog: str) -> dg.AssetCheckResult:
    rows = _check_rows(store, SPRITES_ASSET, catalog)
    if rows is None:
        return _missing_table(SPRITES_ASSET, catalog)
    src = {r["image_id"]: r for r in accepted_rows(store, catalog)}
    sample, worst, bad = _sample(rows), float("inf"), []
    for r in sample:
        try:
            folder = r["sprite_dir"]
            manifest = json.loads(store.read_bytes(r["manifest_path"]))
            back = recompose(manifest, lambda name, folder=folder: store.read_bytes(f"{folder}/{name}"))
            value = psnr(back, load_rgb(store, src[r["image_id"]]["normalized_path"]))
        except Exception as exc:
            bad.append(f"{r['image_id']}: {type(exc).__name__}: {exc}")
            continue
        worst = min(worst, value)
        if value < MIN_PSNR_DB:
            bad.append(f"{r['image_id']}: PSNR {value:.1f} dB")
    return dg.AssetCheckResult(
        passed=not bad,
        description=(f"{len(sample)} sprite set(s) composited at zero offset reproduce their "
                     f"source at ≥ {MIN_PSNR_DB:.0f} dB") if not bad else "; ".join(bad[:10]),
        metadata={"checked": len(sample), "failed": len(bad),
                  # 999 stands for "identical" (infinite PSNR), which is what exact layers give
                  "min_psnr_db": round(worst, 2) if np.isfinite(worst) else 999.0})


def check_complete(store: Storage, asset: str, catalog: str) -> dg.AssetCheckResult:
    """Every accepted image has this asset's outputs, made from its current depth map.

    ERROR when an image that has a depth map lacks them (or has stale ones); WARN when the only
    gaps are images whose depth map is missing (a `depth_maps` problem, reported there).
    """
    rows = _check_rows(store, asset, catalog)
    if rows is None:
        return _missing_table(asset, catalog)
    spec = SPECS[asset]
    inputs, skipped = derived_inputs(store, catalog)
    by_id = {r["image_id"]: r for r in rows}
    missing = []
    for inp in inputs:
        r = by_id.get(inp.image_id)
        if r is None or r["status"] not in OK:
            missing.append(f"{inp.image_id}: {'no row' if r is None else r['status']}")
        elif r["depth_sha256"] != inp.depth_sha256:
            missing.append(f"{inp.image_id}: made from an older depth map")
        elif not all(store.exists(p) for p in spec.outputs(r)):
            missing.append(f"{inp.image_id}: output file missing")
    no_depth = [f"{s['image_id']}: {s['error']}" for s in skipped]
    passed = not missing and not no_depth
    severity = dg.AssetCheckSeverity.WARN if no_depth and not missing else dg.AssetCheckSeverity.ERROR
    if passed:
        text = f"all {len(inputs)} accepted image(s) have their {asset}"
    else:
        text = "; ".join((missing + [f"(no depth map) {x}" for x in no_depth])[:10])
    return dg.AssetCheckResult(
        passed=passed, severity=severity, description=text,
        metadata={"accepted": len(inputs) + len(skipped), "with_outputs": len(inputs) - len(missing),
                  "missing": len(missing), "no_depth_map": len(no_depth)})


with warnings.catch_warnings():
    # partitioned asset checks are a Dagster preview feature; they are what we need here
    warnings.simplefilter("ignore", dg.PreviewWarning)

    @dg.asset_check(asset=normal_maps, name="unit_normals", partitions_def=CATALOG_PARTITIONS,
                    description=f"Decoded normals are unit length (±{UNIT_TOLERANCE:.0%}) and face the "
                                f"camera (z > 0); checks up to {CHECK_SAMPLE} images, newest first.")
    def normal_maps_unit_normals(context: dg.AssetCheckExecutionContext,
                                 storage: StorageResource) -> dg.AssetCheckResult:
        return check_unit_normals(storage.get(), context.partition_key)

    @dg.asset_check(asset=parallax_sprites, name="recomposition_psnr", partitions_def=CATALOG_PARTITIONS,
                    description=f"All layers composited in order at zero offset reproduce the source "
                                f"image at PSNR ≥ {MIN_PSNR_DB:.0f} dB; up to {CHECK_SAMPLE} images.")
    def parallax_sprites_recomposition(context: dg.AssetCheckExecutionContext,
                                       storage: StorageResource) -> dg.AssetCheckResult:
        return check_recomposition(storage.get(), context.partition_key)

    def _complete_check(asset_def: dg.AssetsDefinition, asset: str) -> dg.AssetChecksDefinition:
        @dg.asset_check(asset=asset_def, name="outputs_complete", partitions_def=CATALOG_PARTITIONS,
                        description=f"Every accepted image has its {asset} outputs, made from its "
                                    "current depth map (WARN when only the depth map is missing).")
        def _check(context: dg.AssetCheckExecutionContext,
                   storage: StorageResource) -> dg.AssetCheckResult:
            return check_complete(storage.get(), asset, context.partition_key)
        return _check

    DERIVED_CHECKS: list = [
        normal_maps_unit_normals,
        parallax_sprites_recomposition,
        _complete_check(normal_maps, NORMALS_ASSET),
        _complete_check(parallax_sprites, SPRITES_ASSET),
        _complete_check(depth_stats, STATS_ASSET),
    ]

DERIVED_ASSETS: list = [normal_maps, parallax_sprites, depth_stats]

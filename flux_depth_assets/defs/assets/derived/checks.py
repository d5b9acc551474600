"""Partitioned asset checks of the derived assets: unit normals, recomposition PSNR, completeness.

The file-reading checks open a sample (most recently made first), so a large catalog costs the
same to check as a small one. No `from __future__ import annotations`: Dagster needs the real
`context` class at decoration time.
"""

import warnings
from collections.abc import Callable
from datetime import UTC, datetime

import dagster as dg
import numpy as np

from flux_depth_assets.defs.assets.derived.assets import depth_stats, normal_maps, parallax_sprites
from flux_depth_assets.defs.constants import CATALOG_PARTITIONS
from flux_depth_assets.defs.resources import ComputeResource, StorageResource
from flux_depth_assets.pipeline.derived_checks import FigureTask, sampled_figures
from flux_depth_assets.pipeline.derived_run import (
    NORMALS_ASSET,
    OK,
    SPRITES_ASSET,
    STATS_ASSET,
    derived_inputs,
    stale_reason,
)
from flux_depth_assets.pipeline.derived_specs import SPECS
from flux_depth_assets.pipeline.parallel import PoolConfig
from flux_depth_assets.pipeline.scan import accepted_rows
from flux_depth_assets.storage.store import FileIndex, Storage

#: how many images a file-reading check opens per run (most recently made first)
CHECK_SAMPLE = 24
CACHED_SPOT_CHECK = 2
UNIT_TOLERANCE = 0.02
MIN_PSNR_DB = 35.0


def _check_rows(store: Storage, asset: str, catalog: str) -> list[dict] | None:
    return store.partition_dicts(asset, catalog)


def _sample(rows: list[dict]) -> list[dict]:
    """Up to CHECK_SAMPLE rows made by this run, then CACHED_SPOT_CHECK earlier ones, the most
    recently made first: outputs verified when they were made are only spot-checked again, so
    an unchanged re-run stays cheap."""
    ok = [r for r in rows if r["status"] in OK]
    epoch = datetime.min.replace(tzinfo=UTC)
    ok.sort(
        key=lambda r: (r["status"] == "succeeded", r.get("materialized_at") or epoch), reverse=True
    )
    new = [r for r in ok[:CHECK_SAMPLE] if r["status"] == "succeeded"]
    return new + [r for r in ok if r["status"] != "succeeded"][:CACHED_SPOT_CHECK]


def _missing_table(asset: str, catalog: str) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=False, description=f"no {asset} table for catalog {catalog!r}"
    )


def _sampled_result(bad: list[str], passing: str, metadata: dict) -> dg.AssetCheckResult:
    """A file-reading check's result: `passing` when no sampled image was found bad, else the
    first ten findings."""
    return dg.AssetCheckResult(
        passed=not bad, description="; ".join(bad[:10]) if bad else passing, metadata=metadata
    )


def _measured(
    store: Storage, catalog: str, asset: str, pool: PoolConfig | None
) -> list[tuple[dict, dict]] | None:
    """(row, figures) of the sampled images (`pipeline.derived_checks`), None without a table.
    Both sprite checks get the same figures (the second from the memo), so each set's layers
    are decoded once per run at most."""
    rows = _check_rows(store, asset, catalog)
    if rows is None:
        return None
    sample = _sample(rows)
    refs: list[str | None]
    if asset == NORMALS_ASSET:  # compared with the depth map they were made from
        refs = [Storage.file_rel(catalog, "depth_maps", r["image_id"], "png") for r in sample]
    else:  # compared with the source image
        src = {r["image_id"]: r["normalized_path"] for r in accepted_rows(store, catalog)}
        refs = [src.get(r["image_id"]) for r in sample]
    tasks = [FigureTask(store, asset, r, ref) for r, ref in zip(sample, refs)]
    return list(zip(sample, sampled_figures(store, catalog, tasks, pool)))


def _file_check(
    asset: str, verdict: Callable[[list[tuple[dict, dict]]], dg.AssetCheckResult]
) -> Callable[..., dg.AssetCheckResult]:
    """check(store, catalog, pool=None): `verdict` over the sampled images' figures."""

    def check(store: Storage, catalog: str, pool: PoolConfig | None = None) -> dg.AssetCheckResult:
        measured = _measured(store, catalog, asset, pool)
        return _missing_table(asset, catalog) if measured is None else verdict(measured)

    return check


def _unit_normals(measured: list[tuple[dict, dict]]) -> dg.AssetCheckResult:
    worst, min_z, bad = 0.0, 1.0, []
    for r, fig in measured:
        if "error" in fig:
            bad.append(f"{r['image_id']}: unreadable ({fig['error']})")
            continue
        if fig["missing"]:
            bad.append(
                f"{r['image_id']}: {fig['missing']} pixel(s) with valid depth have no normal"
            )
            continue
        err, z = fig["max_unit_error"], fig["min_z"]
        worst, min_z = max(worst, err), min(min_z, z)
        if err > UNIT_TOLERANCE or z <= 0:
            bad.append(f"{r['image_id']}: max | |n| - 1 | = {err:.4f}, min z = {z:.4f}")
    return _sampled_result(
        bad,
        f"{len(measured)} normal map(s) decoded: unit length within ±{UNIT_TOLERANCE:.0%}"
        " and facing the camera (z > 0)",
        {
            "checked": len(measured),
            "max_unit_error": round(worst, 6),
            "min_z": round(min_z, 6),
            "failed": len(bad),
        },
    )


def _recomposition(measured: list[tuple[dict, dict]]) -> dg.AssetCheckResult:
    worst, bad = float("inf"), []
    for r, fig in measured:
        if "error" in fig:
            bad.append(f"{r['image_id']}: {fig['error']}")
        elif fig["psnr_db"] is None and not fig["identical"]:
            bad.append(f"{r['image_id']}: KeyError: no accepted source image to compare with")
        elif fig["psnr_db"] is not None:
            worst = min(worst, fig["psnr_db"])
            if fig["psnr_db"] < MIN_PSNR_DB:
                bad.append(f"{r['image_id']}: PSNR {fig['psnr_db']:.1f} dB")
    return _sampled_result(
        bad,
        f"{len(measured)} sprite set(s) composited at zero offset reproduce their "
        f"source at ≥ {MIN_PSNR_DB:.0f} dB",
        {
            "checked": len(measured),
            "failed": len(bad),
            # 999 stands for "identical" (infinite PSNR), which is what exact layers give
            "min_psnr_db": round(worst, 2) if np.isfinite(worst) else 999.0,
        },
    )


def _holes(measured: list[tuple[dict, dict]]) -> dg.AssetCheckResult:
    """At the preview's largest camera offset no pixel of any sampled sprite set is unfilled."""
    bad, worst = [], 0
    for r, fig in measured:
        if "error" in fig:
            bad.append(f"{r['image_id']}: {fig['error']}")
            continue
        worst = max(worst, fig["unfilled"])
        if fig["unfilled"]:
            bad.append(
                f"{r['image_id']}: {fig['unfilled']} unfilled pixel(s) at the largest offset"
            )
    return _sampled_result(
        bad,
        f"{len(measured)} sprite set(s): every pixel covered at the preview's largest camera offset",
        {"checked": len(measured), "failed": len(bad), "max_unfilled_pixels": worst},
    )


check_unit_normals = _file_check(NORMALS_ASSET, _unit_normals)
check_recomposition = _file_check(SPRITES_ASSET, _recomposition)
check_parallax_holes = _file_check(SPRITES_ASSET, _holes)


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
    present = FileIndex(store, Storage.dir_rel(catalog, asset))
    missing = []
    for inp in inputs:
        why = stale_reason(by_id.get(inp.image_id), inp, spec, present)
        if why is not None:
            missing.append(f"{inp.image_id}: {why}")
    no_depth = [f"{s['image_id']}: {s['error']}" for s in skipped]
    passed = not missing and not no_depth
    severity = (
        dg.AssetCheckSeverity.WARN if no_depth and not missing else dg.AssetCheckSeverity.ERROR
    )
    if passed:
        text = f"all {len(inputs)} accepted image(s) have their {asset}"
    else:
        text = "; ".join((missing + [f"(no depth map) {x}" for x in no_depth])[:10])
    return dg.AssetCheckResult(
        passed=passed,
        severity=severity,
        description=text,
        metadata={
            "accepted": len(inputs) + len(skipped),
            "with_outputs": len(inputs) - len(missing),
            "missing": len(missing),
            "no_depth_map": len(no_depth),
        },
    )


with warnings.catch_warnings():
    # partitioned asset checks are a Dagster preview feature; they are what we need here
    warnings.simplefilter("ignore", dg.PreviewWarning)

    def _partition_check(
        asset_def: dg.AssetsDefinition,
        name: str,
        description: str,
        run: Callable[[Storage, str, PoolConfig], dg.AssetCheckResult],
    ) -> dg.AssetChecksDefinition:
        """One partitioned check on `asset_def` that answers `run(storage, catalog, pool)`."""

        @dg.asset_check(
            asset=asset_def, name=name, partitions_def=CATALOG_PARTITIONS, description=description
        )
        def _check(
            context: dg.AssetCheckExecutionContext,
            storage: StorageResource,
            compute: ComputeResource,
        ) -> dg.AssetCheckResult:
            return run(storage.get(), context.partition_key, compute.pool())

        return _check

    def _complete_check(asset_def: dg.AssetsDefinition, asset: str) -> dg.AssetChecksDefinition:
        return _partition_check(
            asset_def,
            "outputs_complete",
            f"Every accepted image has its {asset} outputs, made from its current depth map "
            "(WARN when only the depth map is missing).",
            lambda store, catalog, _pool: check_complete(store, asset, catalog),
        )

    DERIVED_CHECKS: list = [
        _partition_check(
            normal_maps,
            "unit_normals",
            f"Decoded normals are unit length (±{UNIT_TOLERANCE:.0%}) and face the camera "
            f"(z > 0); checks up to {CHECK_SAMPLE} images, newest first.",
            check_unit_normals,
        ),
        _partition_check(
            parallax_sprites,
            "recomposition_psnr",
            f"All layers composited in order at zero offset reproduce the source image at "
            f"PSNR ≥ {MIN_PSNR_DB:.0f} dB; up to {CHECK_SAMPLE} images.",
            check_recomposition,
        ),
        _partition_check(
            parallax_sprites,
            "no_unfilled_pixels",
            "At the preview's largest camera offset every pixel is covered by a layer (no hole); "
            f"up to {CHECK_SAMPLE} images.",
            check_parallax_holes,
        ),
        _complete_check(normal_maps, NORMALS_ASSET),
        _complete_check(parallax_sprites, SPRITES_ASSET),
        _complete_check(depth_stats, STATS_ASSET),
    ]

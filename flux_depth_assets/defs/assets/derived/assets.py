"""The three derived assets: one factory over `pipeline.derived_run`, one `DerivedSpec` each.

No `from __future__ import annotations` here: Dagster reads the `context` annotation of an asset
function at decoration time and needs the real class.
"""

from typing import Any

import dagster as dg

from flux_depth_assets.defs.assets.catalog import source_images
from flux_depth_assets.defs.assets.depth import depth_maps
from flux_depth_assets.defs.constants import CATALOG_PARTITIONS, DERIVED_GROUP
from flux_depth_assets.defs.finish import (
    Partition,
    finish_asset,
    gate_spec,
    open_partition,
    require_upstream_gates,
)
from flux_depth_assets.defs.metadata import preview_table
from flux_depth_assets.defs.resources import CatalogsResource, ComputeResource, StorageResource
from flux_depth_assets.lineage.writer import config_hash
from flux_depth_assets.pipeline.derived_run import (
    ALGORITHM_VERSION,
    NORMALS_ASSET,
    OK,
    SPRITES_ASSET,
    STATS_ASSET,
    DerivedSpec,
    run_derived,
)
from flux_depth_assets.pipeline.derived_specs import SPECS
from flux_depth_assets.pipeline.parallel import PoolConfig
from flux_depth_assets.storage.schemas import table_from_rows

#: eager, but never on a partition whose upstream failure gate (a blocking check) failed
DERIVED_AUTOMATION = (
    dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed()
)
#: the upstream tables whose failure gate must hold before a derived asset starts
UPSTREAM = {
    NORMALS_ASSET: ["depth_maps"],
    STATS_ASSET: ["depth_maps"],
    SPRITES_ASSET: ["source_images", "depth_maps"],
}


def _materialize(
    spec: DerivedSpec, context: dg.AssetExecutionContext, part: Partition, pool: PoolConfig
) -> dg.MaterializeResult:
    catalog, store = part.catalog, part.store
    settings = part.project.settings_for(catalog.name)
    require_upstream_gates(store, catalog, UPSTREAM[spec.asset])
    try:
        result = run_derived(
            spec,
            store,
            catalog.name,
            settings,
            run_id=context.run.run_id,
            log=context.log.info,
            pool=pool,
        )
    except FileNotFoundError as exc:
        raise dg.Failure(description=f"catalog {catalog.name!r}: {exc}") from None
    ok_rows = [r for r in result.rows if r["status"] in OK]
    fresh = [r for r in ok_rows if r["status"] == "succeeded"] or ok_rows
    first = next((spec.preview_path(r) for r in fresh if spec.preview_path(r)), None)
    metadata: dict[str, Any] = {"preview": preview_table(result.rows, spec.preview_columns)}
    out_dir = spec.out_dir(catalog.name)
    if out_dir:
        metadata["output_dir"] = dg.MetadataValue.path(store.uri(out_dir))
    if first:
        metadata["preview_path"] = dg.MetadataValue.path(store.uri(first))
    return finish_asset(
        context,
        store,
        catalog,
        spec.asset,
        table=table_from_rows(result.rows, spec.schema),
        rows=result.rows,
        counts=result.counts,
        seconds=result.seconds,
        started_at=part.started_at,
        config_hash=config_hash(catalog, spec.params(settings)),
        problems=[
            f"{spec.asset} failed for {r['image_id']}: {r['error']}"
            for r in result.rows
            if r["status"] == "failed"
        ][:20],
        metadata=metadata,
        contact_sheet=spec.asset == SPRITES_ASSET,
    )


def _derived_asset(
    asset: str, *, deps: list, kinds: set[str], description: str
) -> dg.AssetsDefinition:
    """A catalog-partitioned, eagerly automated asset that runs `SPECS[asset]`."""
    spec = SPECS[asset]

    @dg.asset(
        name=asset,
        deps=deps,
        kinds=kinds,
        code_version=ALGORITHM_VERSION[asset],
        partitions_def=CATALOG_PARTITIONS,
        group_name=DERIVED_GROUP,
        automation_condition=DERIVED_AUTOMATION,
        check_specs=[gate_spec(asset)],
        description=description,
    )
    def _asset(
        context: dg.AssetExecutionContext,
        storage: StorageResource,
        catalogs: CatalogsResource,
        compute: ComputeResource,
    ) -> dg.MaterializeResult:
        return _materialize(
            spec, context, open_partition(context, catalogs, storage), compute.pool()
        )

    return _asset


normal_maps = _derived_asset(
    NORMALS_ASSET,
    deps=[depth_maps],
    kinds={"python", "png", "parquet"},
    description=(
        "Surface normals of each depth map: RGB PNG, n = rgb / 255 * 2 - 1 (16-bit: / 65535), "
        "OpenGL (+Y up) by default, DirectX (+Y down) by config. Slope = strength × Δnearness per "
        "image width (resolution independent); depth edges are handled with one-sided differences "
        "so silhouettes get no halo. Files: catalogs/{catalog}/normal_maps/{image_id}.png; "
        "table: tables/normal_maps/. See docs/derived.md."
    ),
)

parallax_sprites = _derived_asset(
    SPRITES_ASSET,
    deps=[depth_maps, source_images],
    kinds={"python", "png", "webp", "json"},
    description=(
        "Parallax sprites per image: N RGBA depth layers (far → near, cut at depth gaps, soft "
        "alpha), layer_0 a full background with the holes of nearer layers inpainted, a JSON "
        "manifest (files, bboxes, depth ranges, parallax factors, image size, depth sha256) and an "
        "animated camera-sway preview (WebP or GIF, ≤ 512 px). Files: "
        "catalogs/{catalog}/parallax_sprites/{image_id}/; table: tables/parallax_sprites/."
    ),
)

depth_stats = _derived_asset(
    STATS_ASSET,
    deps=[depth_maps],
    kinds={"python", "parquet"},
    description=(
        "Per-image depth statistics: nearness percentiles p1…p99, mean/std, near/far ratio, valid "
        "fraction, edge density, mean normal tilt. Table: tables/depth_stats/ (one row per image)."
    ),
)

DERIVED_ASSETS: list = [normal_maps, parallax_sprites, depth_stats]

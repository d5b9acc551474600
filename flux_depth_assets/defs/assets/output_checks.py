"""Checks that measure the depth and normal maps themselves (`pipeline.output_checks`).

One multi-check reads each sampled depth map once and reports four results; one check reads the
normal maps. Partitioned by catalog like their assets. No `from __future__ import annotations`:
Dagster needs the real `context` class at decoration time.
"""

import warnings
from collections.abc import Iterator

import dagster as dg

from flux_depth_assets.defs.assets.depth import depth_maps
from flux_depth_assets.defs.assets.derived.assets import normal_maps
from flux_depth_assets.defs.constants import CATALOG_PARTITIONS
from flux_depth_assets.defs.resources import ComputeResource, StorageResource
from flux_depth_assets.pipeline import output_checks as oc
from flux_depth_assets.pipeline.declarative_tests import CheckOutcome

DEPTH_CHECKS = {
    "depth_readable": (
        "Every sampled map decodes at its source's size, has valid pixels and is "
        "not flat (catches wrong size, all-invalid, constant maps)."
    ),
    "edges_agree": (
        f"Depth edges sit on image edges: median edge lift ≥ {oc.MIN_EDGE_LIFT} "
        "(noise or an unrelated map gives ~1)."
    ),
    "not_vertical_prior": (
        "The map is more than the vertical prior: row means explain < "
        f"{oc.MAX_VERTICAL_PRIOR_SHARE:.1%} of its variance (median)."
    ),
    "near_at_bottom": (
        "Larger = nearer holds: the bottom third is nearer than the top third on "
        "the median image (an inverted convention fails)."
    ),
}


def _result(asset: str, name: str, outcome: CheckOutcome, catalog: str) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        asset_key=asset,
        check_name=name,
        passed=outcome.passed,
        description=outcome.description,
        metadata={"catalog": catalog, **outcome.metadata},
    )


with warnings.catch_warnings():  # partitioned asset checks are a Dagster preview feature
    warnings.simplefilter("ignore", dg.PreviewWarning)

    @dg.multi_asset_check(
        specs=[
            dg.AssetCheckSpec(
                name,
                asset=depth_maps,
                partitions_def=CATALOG_PARTITIONS,
                description=f"{text} Up to {oc.SAMPLE} images.",
            )
            for name, text in DEPTH_CHECKS.items()
        ],
        can_subset=True,
        name="depth_maps__measures",
        description="Measures of the depth maps themselves, on a sample of the catalog.",
    )
    def depth_map_measures(
        context: dg.AssetCheckExecutionContext, storage: StorageResource, compute: ComputeResource
    ) -> Iterator[dg.AssetCheckResult]:
        catalog = context.partition_key
        sample = oc.measure_depth_maps(storage.get(), catalog, compute.pool())
        selected = {k.name for k in context.selected_asset_check_keys}
        for name, fn in (
            ("depth_readable", oc.depth_readable),
            ("edges_agree", oc.edges_agree),
            ("not_vertical_prior", oc.not_vertical_prior),
            ("near_at_bottom", oc.near_at_bottom),
        ):
            if name in selected:
                yield _result("depth_maps", name, fn(sample), catalog)

    @dg.asset_check(
        asset=normal_maps,
        name="normals_smooth",
        partitions_def=CATALOG_PARTITIONS,
        description=(
            "Normals are not dominated by texture noise: the median angle "
            "between a normal and its 5×5 neighbourhood's mean is ≤ "
            f"{oc.MAX_ROUGHNESS_DEG:g}° (up to {oc.SAMPLE} images)."
        ),
    )
    def normal_maps_smooth(
        context: dg.AssetCheckExecutionContext, storage: StorageResource, compute: ComputeResource
    ) -> dg.AssetCheckResult:
        store = storage.get()
        rows = store.partition_dicts("normal_maps", context.partition_key) or []
        outcome = oc.normals_smooth(store, context.partition_key, rows, compute.pool())
        return _result("normal_maps", "normals_smooth", outcome, context.partition_key)


OUTPUT_CHECKS: list = [depth_map_measures, normal_maps_smooth]

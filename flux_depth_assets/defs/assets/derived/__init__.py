"""Depth-derived assets: `normal_maps`, `parallax_sprites`, `depth_stats`, and their asset checks.

A thin Dagster layer over plain modules: the math in `depth.normals`, `depth.sprites` and
`depth.stats`; inputs, cache rule and per-image run in `pipeline.derived_run`; what each asset
makes and where in `pipeline.derived_specs`. Here: `assets` (the three asset definitions) and
`checks` (their partitioned checks).
"""

from flux_depth_assets.defs.assets.derived.assets import (
    DERIVED_ASSETS,
    depth_stats,
    normal_maps,
    parallax_sprites,
)
from flux_depth_assets.defs.assets.derived.checks import (
    DERIVED_CHECKS,
    check_complete,
    check_recomposition,
    check_unit_normals,
)
from flux_depth_assets.pipeline.derived_run import NORMALS_ASSET, SPRITES_ASSET, STATS_ASSET

__all__ = [
    "DERIVED_ASSETS",
    "DERIVED_CHECKS",
    "NORMALS_ASSET",
    "SPRITES_ASSET",
    "STATS_ASSET",
    "check_complete",
    "check_recomposition",
    "check_unit_normals",
    "depth_stats",
    "normal_maps",
    "parallax_sprites",
]

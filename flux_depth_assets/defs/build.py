"""Assemble the Definitions from config: one place that lists every asset, check, job and sensor."""

from __future__ import annotations

import dagster as dg

from flux_depth_assets.defs.assets.catalog import source_images
from flux_depth_assets.defs.assets.depth import depth_maps
from flux_depth_assets.defs.assets.derived import DERIVED_ASSETS, DERIVED_CHECKS
from flux_depth_assets.defs.assets.renders import depth_renders
from flux_depth_assets.defs.assets.summary import catalog_summary
from flux_depth_assets.defs.resources import default_resources
from flux_depth_assets.defs.sensors import catalog_registry_sensor

PARTITIONED_ASSETS = [source_images, depth_maps, depth_renders, *DERIVED_ASSETS]
# Not partitioned, so never in catalog_job: runs by automation after depth_maps/depth_stats update.
UNPARTITIONED_ASSETS = [catalog_summary]

catalog_job = dg.define_asset_job(
    name="catalog_job",
    selection=dg.AssetSelection.assets(*PARTITIONED_ASSETS),
    description="Every per-catalog asset for one `catalog` partition.",
    executor_def=dg.in_process_executor,
)


def build_definitions(resources: dict | None = None) -> dg.Definitions:
    return dg.Definitions(
        assets=[*PARTITIONED_ASSETS, *UNPARTITIONED_ASSETS],
        asset_checks=DERIVED_CHECKS,
        jobs=[catalog_job],
        sensors=[catalog_registry_sensor],
        resources={**default_resources(), **(resources or {})},
    )

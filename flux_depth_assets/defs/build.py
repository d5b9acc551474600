"""Assemble the Definitions from config: one place that lists every asset, check, job and sensor."""

from __future__ import annotations

import dagster as dg

from flux_depth_assets.defs.assets.catalog import source_images
from flux_depth_assets.defs.assets.depth import depth_maps
from flux_depth_assets.defs.assets.derived import DERIVED_ASSETS, DERIVED_CHECKS
from flux_depth_assets.defs.assets.gallery import catalog_gallery
from flux_depth_assets.defs.assets.output_checks import OUTPUT_CHECKS
from flux_depth_assets.defs.assets.renders import depth_renders
from flux_depth_assets.defs.assets.summary import catalog_summary
from flux_depth_assets.defs.declarative_checks import build_declarative_checks
from flux_depth_assets.defs.resources import CatalogsResource, default_resources
from flux_depth_assets.defs.schedules import build_schedules
from flux_depth_assets.defs.sensors import catalog_registry_sensor
from flux_depth_assets.defs.upload_sensors import build_upload_sensors
from flux_depth_assets.defs.yaml_attributes import with_yaml_attributes

PARTITIONED_ASSETS = [source_images, depth_maps, depth_renders, *DERIVED_ASSETS, catalog_gallery]
# Not partitioned, so never in catalog_job: runs by automation after depth_maps/depth_stats update.
UNPARTITIONED_ASSETS = [catalog_summary]

catalog_job = dg.define_asset_job(
    name="catalog_job",
    selection=dg.AssetSelection.assets(*PARTITIONED_ASSETS),
    description="Every per-catalog asset for one `catalog` partition.",
    executor_def=dg.in_process_executor,
    # The run queue limits runs per catalog on Dagster's own `dagster/partition` tag, which every
    # partitioned run carries (UI, sensors, schedules, job and asset-graph backfills).
)


def build_definitions(resources: dict | None = None) -> dg.Definitions:
    resources = {**default_resources(), **(resources or {})}
    # Per-catalog sensors, schedules and YAML tests come from the YAML (local files only: no
    # network at load time; a config error names its file and line and stops the load).
    catalogs_resource = resources["catalogs"]
    project = catalogs_resource.load() if isinstance(catalogs_resource, CatalogsResource) else None
    catalogs = list(project.catalogs.values()) if project else []
    assets = with_yaml_attributes([*PARTITIONED_ASSETS, *UNPARTITIONED_ASSETS], project)
    checks = [*DERIVED_CHECKS, *OUTPUT_CHECKS, *build_declarative_checks(catalogs)]
    job_assets = [k for a in PARTITIONED_ASSETS for k in a.keys]
    check_keys = [k for c in [*assets, *checks] for k in c.check_keys if k.asset_key in job_assets]
    return dg.Definitions(
        assets=assets,
        asset_checks=checks,
        jobs=[catalog_job],
        sensors=[catalog_registry_sensor, *build_upload_sensors(catalogs, catalog_job)],
        schedules=build_schedules(catalogs, catalog_job, job_assets, check_keys),
        resources=resources,
    )

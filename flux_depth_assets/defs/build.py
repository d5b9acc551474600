"""Assemble the Definitions from config: one place that lists every asset, check, job and sensor."""

from __future__ import annotations

import dagster as dg

from flux_depth_assets.defs.assets.catalog import source_images
from flux_depth_assets.defs.assets.depth import depth_maps
from flux_depth_assets.defs.assets.derived import DERIVED_ASSETS, DERIVED_CHECKS
from flux_depth_assets.defs.assets.gallery import catalog_gallery
from flux_depth_assets.defs.assets.renders import depth_renders
from flux_depth_assets.defs.assets.summary import catalog_summary
from flux_depth_assets.defs.constants import CATALOG_PARTITIONS, CATALOG_TAG
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
    # Every run of the job (UI, sensors, schedules, job backfills) carries the catalog tag that
    # the run queue's per-catalog concurrency limit keys on (docs/sensors_and_s3.md).
    config=dg.PartitionedConfig(
        partitions_def=CATALOG_PARTITIONS,
        run_config_for_partition_key_fn=lambda _key: {},
        tags_for_partition_key_fn=lambda key: {CATALOG_TAG: key},
    ),
)


def build_definitions(resources: dict | None = None) -> dg.Definitions:
    resources = {**default_resources(), **(resources or {})}
    # Per-catalog sensors, schedules and YAML tests come from the YAML (local files only: no
    # network at load time; a config error names its file and line and stops the load).
    catalogs_resource = resources["catalogs"]
    project = catalogs_resource.load() if isinstance(catalogs_resource, CatalogsResource) else None
    catalogs = list(project.catalogs.values()) if project else []
    assets = with_yaml_attributes([*PARTITIONED_ASSETS, *UNPARTITIONED_ASSETS], project)
    return dg.Definitions(
        assets=assets,
        asset_checks=[*DERIVED_CHECKS, *build_declarative_checks(catalogs)],
        jobs=[catalog_job],
        sensors=[catalog_registry_sensor, *build_upload_sensors(catalogs, catalog_job)],
        schedules=build_schedules(catalogs, catalog_job),
        resources=resources,
    )

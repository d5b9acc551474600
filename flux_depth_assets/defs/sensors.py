"""Keeps the `catalog` dynamic partitions in step with the YAML catalogs."""

import dagster as dg

from flux_depth_assets.config import ConfigError
from flux_depth_assets.defs.constants import CATALOG_PARTITION_NAME, CATALOG_PARTITIONS
from flux_depth_assets.defs.resources import CatalogsResource


@dg.sensor(
    name="catalog_registry_sensor",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Adds a `catalog` partition for every catalog declared in dbt_like_configs/. "
    "Catalogs removed from the YAML keep their partition and data (reported, not deleted).",
)
def catalog_registry_sensor(
    context: dg.SensorEvaluationContext, catalogs: CatalogsResource
) -> "dg.SensorResult | dg.SkipReason":
    try:
        declared = set(catalogs.load().catalogs)
    except ConfigError as exc:
        return dg.SkipReason(f"config invalid, partitions left unchanged: {exc}")
    existing = set(context.instance.get_dynamic_partitions(CATALOG_PARTITION_NAME))
    new = sorted(declared - existing)
    orphaned = sorted(existing - declared)
    if orphaned:
        context.log.warning(
            f"catalog partitions no longer in the YAML (kept, with their data): "
            f"{', '.join(orphaned)}"
        )
    if not new:
        return dg.SkipReason(
            f"all {len(declared)} declared catalog(s) already have partitions"
            + (f"; {len(orphaned)} orphaned partition(s) kept" if orphaned else "")
        )
    return dg.SensorResult(dynamic_partitions_requests=[CATALOG_PARTITIONS.build_add_request(new)])

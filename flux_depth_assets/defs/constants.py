"""Names shared by every Dagster definition: partitions, groups, tags (owners come from the YAML)."""

from __future__ import annotations

import dagster as dg

CATALOG_PARTITION_NAME = "catalog"
CATALOG_PARTITIONS = dg.DynamicPartitionsDefinition(name=CATALOG_PARTITION_NAME)

INGEST_GROUP = "ingest"
DEPTH_GROUP = "depth"
DERIVED_GROUP = "derived"
ANALYTICS_GROUP = "analytics"

HOSTED_API_POOL = "flux_depth_hosted_api"
TRIGGER_TAG = "flux_depth/trigger"  # what started a run: schedule, upload_sensor, ...

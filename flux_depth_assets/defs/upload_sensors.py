"""`<catalog>__upload_sensor`: request a run of a catalog's partition when its uploads change.

One sensor per catalog that declares `upload_sensor:` in its YAML. Each tick lists the source,
compares it with a small JSON cursor and either requests one run of `catalog_job` for the
catalog's partition or returns a `SkipReason` that says why not. The listing, the cursor and the
decision are plain code in `pipeline/upload_watch.py`; this module is the Dagster wiring.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import dagster as dg

from flux_depth_assets.config import ConfigError
from flux_depth_assets.config.models import CatalogConfig, UploadSensorConfig
from flux_depth_assets.defs.constants import (
    CATALOG_PARTITION_NAME,
    CATALOG_PARTITIONS,
    TRIGGER_TAG,
)
from flux_depth_assets.defs.resources import CatalogsResource
from flux_depth_assets.defs.yaml_attributes import catalog_tags
from flux_depth_assets.pipeline.upload_watch import UploadCursor, evaluate_tick, list_fingerprints

NEW_OBJECTS_TAG = "flux_depth/new_objects"


def upload_sensor_name(catalog: str) -> str:
    return f"{catalog}__upload_sensor"


def build_upload_sensor(
    catalog: CatalogConfig, job: Any, clock: Callable[[], float] = time.time
) -> dg.SensorDefinition:
    """The sensor for one catalog; its settings are re-read from the YAML on every tick."""
    name = catalog.name
    declared = catalog.upload_sensor or UploadSensorConfig()

    @dg.sensor(
        name=upload_sensor_name(name),
        job=job,
        minimum_interval_seconds=declared.minimum_interval_seconds,
        default_status=(
            dg.DefaultSensorStatus.RUNNING if declared.enabled else dg.DefaultSensorStatus.STOPPED
        ),
        description=(
            f"Watches catalog {name!r}'s {catalog.source.type} source and requests a run of its "
            f"partition when objects are added, changed or deleted, once uploads have settled "
            f"({declared.settle_seconds:g} s). {catalog.description}"
        ).strip(),
        tags=catalog_tags(catalog, {}),
        owners=catalog.owners or None,
    )
    def _upload_sensor(context: dg.SensorEvaluationContext, catalogs: CatalogsResource):
        try:
            config = catalogs.load().catalogs.get(name)
        except ConfigError as exc:
            return dg.SensorResult(
                skip_reason=dg.SkipReason(f"config invalid, nothing requested: {exc}")
            )
        if config is None:
            return dg.SensorResult(
                skip_reason=dg.SkipReason(f"catalog {name!r} is no longer declared in the YAML")
            )
        settings = config.upload_sensor or UploadSensorConfig()
        started = time.perf_counter()
        fingerprints = list_fingerprints(config.source)  # SourceError fails the tick, visibly
        prev = UploadCursor.from_json(context.cursor)
        if context.cursor and prev is None:
            context.log.warning(f"{name}: unreadable upload cursor reset (treated as a first tick)")
        decision = evaluate_tick(name, fingerprints, prev, settings, clock())
        context.log.info(
            f"{name}: {decision.total:,} objects listed in {time.perf_counter() - started:.2f} s; "
            f"{decision.settled:,} settled, {decision.settling:,} settling, {decision.new:,} new"
            + (", other changes" if decision.other_changes else "")
        )
        cursor = decision.cursor.to_json()
        if decision.run_key is None:
            return dg.SensorResult(skip_reason=dg.SkipReason(decision.skip_reason), cursor=cursor)
        partition_requests = []
        if not context.instance.has_dynamic_partition(CATALOG_PARTITION_NAME, name):
            partition_requests.append(CATALOG_PARTITIONS.build_add_request([name]))
        run = dg.RunRequest(
            run_key=decision.run_key,
            partition_key=name,
            tags=catalog_tags(
                config, {TRIGGER_TAG: "upload_sensor", NEW_OBJECTS_TAG: str(decision.new)}
            ),
        )
        return dg.SensorResult(
            run_requests=[run], cursor=cursor, dynamic_partitions_requests=partition_requests
        )

    return _upload_sensor


def build_upload_sensors(catalogs: Iterable[CatalogConfig], job: Any) -> list[dg.SensorDefinition]:
    """A sensor for every catalog that declares `upload_sensor:` (enabled or not)."""
    return [build_upload_sensor(c, job) for c in catalogs if c.upload_sensor is not None]

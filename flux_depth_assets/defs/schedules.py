"""`<catalog>__schedule`: refresh a catalog on the cron its YAML declares (`schedule: "0 3 * * *"`).

A catalog may have a schedule, an upload sensor, both, or neither. Each tick requests one run of
`catalog_job` for the catalog's partition; the run pays only for images it does not have (every
provider call is cached), so a schedule over an unchanged catalog costs a listing and a scan.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import dagster as dg

from flux_depth_assets.config.models import CatalogConfig
from flux_depth_assets.defs.constants import CATALOG_PARTITION_NAME, TRIGGER_TAG
from flux_depth_assets.defs.declarative_checks import check_selection
from flux_depth_assets.defs.yaml_attributes import catalog_tags


def schedule_name(catalog: str) -> str:
    return f"{catalog}__schedule"


def build_schedule(
    catalog: CatalogConfig,
    job: Any,
    assets: Iterable[dg.AssetKey] = (),
    check_keys: Iterable[dg.AssetCheckKey] = (),
) -> dg.ScheduleDefinition:
    """`assets`/`check_keys`: the job's; each run selects them minus the tests not declared."""
    name = catalog.name
    asset_keys = sorted(assets, key=lambda k: k.to_user_string()) or None
    checks = sorted(check_selection(check_keys, catalog), key=lambda k: k.to_user_string())
    assert catalog.schedule is not None  # built only for catalogs that declare one

    @dg.schedule(
        name=schedule_name(name),
        cron_schedule=catalog.schedule,
        execution_timezone=catalog.schedule_timezone,
        job=job,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"Refreshes catalog {name!r} on `{catalog.schedule}` ({catalog.schedule_timezone}). "
        f"{catalog.description}".strip(),
        tags=catalog_tags(catalog, {}),
        owners=catalog.owners or None,
    )
    def _catalog_schedule(context: dg.ScheduleEvaluationContext):
        if not context.instance.has_dynamic_partition(CATALOG_PARTITION_NAME, name):
            return dg.SkipReason(
                f"catalog {name!r} has no `catalog` partition yet "
                "(catalog_registry_sensor adds it from the YAML)"
            )
        when = context.scheduled_execution_time
        stamp = when.isoformat() if when else "manual"
        return dg.RunRequest(
            run_key=f"schedule:{name}:{stamp}",  # one run per scheduled time, even if retried
            partition_key=name,
            # only the checks this catalog declares (none planned, so none "skipped")
            asset_selection=asset_keys,
            asset_check_keys=checks if asset_keys else None,
            # the run queue's per-catalog limit keys on dagster/partition, set by partition_key
            tags=catalog_tags(catalog, {TRIGGER_TAG: "schedule"}),
        )

    return _catalog_schedule


def build_schedules(
    catalogs: Iterable[CatalogConfig],
    job: Any,
    assets: Iterable[dg.AssetKey] = (),
    check_keys: Iterable[dg.AssetCheckKey] = (),
) -> list[dg.ScheduleDefinition]:
    asset_keys, keys = list(assets), list(check_keys)
    return [build_schedule(c, job, asset_keys, keys) for c in catalogs if c.schedule]

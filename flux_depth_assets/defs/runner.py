"""Run a catalog's assets in-process on a Dagster instance (the CLI's and tests' entry point)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import sqlalchemy.exc

from flux_depth_assets.config import load_project
from flux_depth_assets.defs.build import PARTITIONED_ASSETS, build_definitions
from flux_depth_assets.defs.constants import CATALOG_PARTITION_NAME, CATALOG_TAG
from flux_depth_assets.defs.resources import CatalogsResource
from flux_depth_assets.defs.yaml_attributes import catalog_tags


@dataclass
class RunOutcome:
    success: bool
    run_id: str
    error: str | None = None
    materialized: dict[str, dict] = field(default_factory=dict)  # asset → metadata values
    paths: dict[str, list[str]] = field(default_factory=dict)    # asset → path-typed metadata
    checks: list[tuple[str, bool, str]] = field(default_factory=list)  # (asset:check, passed, severity)


def get_instance() -> dg.DagsterInstance:
    """`$DAGSTER_HOME`'s instance when set (runs show up in the UI), else an ephemeral one."""
    if not os.environ.get("DAGSTER_HOME"):
        return dg.DagsterInstance.ephemeral()
    try:
        return dg.DagsterInstance.get()
    except sqlalchemy.exc.IntegrityError:  # another process initialised a fresh DAGSTER_HOME
        return dg.DagsterInstance.get()    # at the same instant: its schema is there now


def asset_names() -> list[str]:
    return [a.key.to_user_string() for a in PARTITIONED_ASSETS]


def materialize_catalog(catalog: str, assets: list[str] | None = None,
                        config_dir: str | Path | None = None,
                        instance: dg.DagsterInstance | None = None,
                        resources: dict | None = None, log_level: str = "INFO") -> RunOutcome:
    project = load_project(config_dir)  # fail fast on bad config, before touching the instance
    declared = project.catalog(catalog)
    known = asset_names()
    unknown = [a for a in assets or [] if a not in known]
    if unknown:
        raise KeyError(f"unknown asset(s) {', '.join(unknown)}; known: {', '.join(known)}")
    instance = instance or get_instance()
    if not instance.has_dynamic_partition(CATALOG_PARTITION_NAME, catalog):
        try:
            instance.add_dynamic_partitions(CATALOG_PARTITION_NAME, [catalog])
        except Exception:  # another process registered it first (sqlite IntegrityError)
            if not instance.has_dynamic_partition(CATALOG_PARTITION_NAME, catalog):
                raise
    overrides = {"catalogs": CatalogsResource(config_dir=str(project.config_dir)), **(resources or {})}
    defs = build_definitions(overrides)
    job = defs.resolve_job_def("catalog_job")
    result = job.execute_in_process(
        partition_key=catalog, instance=instance, raise_on_error=False,
        asset_selection=[dg.AssetKey(a) for a in assets] if assets else None,
        run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
        tags=catalog_tags(declared, {CATALOG_TAG: catalog}),
    )
    outcome = RunOutcome(success=result.success, run_id=result.run_id)
    for ev in result.get_asset_materialization_events():
        name = ev.materialization.asset_key.to_user_string()
        metadata = ev.materialization.metadata
        outcome.materialized[name] = {k: v.value for k, v in metadata.items()}
        outcome.paths[name] = [v.value for v in metadata.values()
                               if isinstance(v, dg.PathMetadataValue)]
    for check in result.get_asset_check_evaluations():
        outcome.checks.append((f"{check.asset_key.to_user_string()}:{check.check_name}",
                               check.passed, check.severity.value))
    if not result.success:
        outcome.error = _first_failure(result)
    return outcome


def _first_failure(result) -> str:
    for ev in result.all_events:
        if ev.is_step_failure:
            data = ev.step_failure_data
            if data.user_failure_data and data.user_failure_data.description:
                return f"{ev.step_key}: {data.user_failure_data.description}"
            if data.error:
                error = data.error
                while error.cause is not None:  # the user's exception, not Dagster's wrapper
                    error = error.cause
                return f"{ev.step_key}: {error.message.strip().splitlines()[0]}"
    return "run failed (see the run's logs)"

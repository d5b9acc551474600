"""Run a catalog's assets in-process on a Dagster instance (the CLI's and tests' entry point)."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg

from flux_depth_assets.config import ConfigErrors
from flux_depth_assets.config.preflight import preflight
from flux_depth_assets.defs.assets.summary import ASSET as SUMMARY_ASSET
from flux_depth_assets.defs.build import PARTITIONED_ASSETS, UNPARTITIONED_ASSETS, build_definitions
from flux_depth_assets.defs.constants import CATALOG_PARTITION_NAME
from flux_depth_assets.defs.declarative_checks import check_selection
from flux_depth_assets.defs.resources import CatalogsResource
from flux_depth_assets.defs.yaml_attributes import catalog_tags

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class RunOutcome:
    success: bool
    run_id: str
    error: str | None = None
    materialized: dict[str, dict] = field(default_factory=dict)  # asset → metadata values
    paths: dict[str, list[str]] = field(default_factory=dict)  # asset → path-typed metadata
    checks: list[tuple[str, bool, str]] = field(
        default_factory=list
    )  # (asset:check, passed, severity)
    run_ids: list[str] = field(default_factory=list)  # every run made (catalog_summary: its own)


def instance_home(project_root: Path | None = None) -> Path:
    """`$DAGSTER_HOME`, else the project's `.dagster_home` (the instance `make dev` serves).

    Created when missing, with `deploy/local/dagster.yaml` as `make install` copies it, so a CLI
    run lands in the same instance the UI shows (never a throw-away one).
    """
    env = os.environ.get("DAGSTER_HOME")
    home = Path(env) if env else (project_root or REPO_ROOT) / ".dagster_home"
    config = home / "dagster.yaml"
    # a DAGSTER_HOME someone made without dagster.yaml means Dagster's defaults: left alone
    if not config.exists() and not (env and home.exists()):
        home.mkdir(parents=True, exist_ok=True)
        template = REPO_ROOT / "deploy" / "local" / "dagster.yaml"
        config.write_text(
            template.read_text() if template.exists() else "telemetry:\n  enabled: false\n"
        )
    return home


def get_instance(project_root: Path | None = None) -> dg.DagsterInstance:
    """The persistent instance at `instance_home()`: runs show up in `make dev`'s UI."""
    home = instance_home(project_root)
    # Two CLI processes on a fresh home would both create its SQLite schema and one would die
    # with a raw IntegrityError/OperationalError: whoever opens the instance first holds this lock.
    with open(home / ".instance.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return dg.DagsterInstance.from_config(str(home))
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def asset_names() -> list[str]:
    return [a.key.to_user_string() for a in (*PARTITIONED_ASSETS, *UNPARTITIONED_ASSETS)]


def materialize_catalog(
    catalog: str | None,
    assets: list[str] | None = None,
    config_dir: str | Path | None = None,
    instance: dg.DagsterInstance | None = None,
    resources: dict | None = None,
    log_level: str = "INFO",
    on_start: Callable[[dg.DagsterInstance], None] | None = None,
) -> RunOutcome:
    """Validate (config + the catalog's source), then run the catalog's assets in-process.

    Raises `ConfigErrors` (every problem at once) before anything is written, `KeyError` for an
    unknown catalog or asset. `catalog_summary` (not partitioned) runs after the per-catalog
    assets, in its own run; it is the only asset that needs no `catalog`.
    """
    known = asset_names()
    unknown = [a for a in assets or [] if a not in known]
    if unknown:
        raise KeyError(f"unknown asset(s) {', '.join(unknown)}; known: {', '.join(known)}")
    summary = SUMMARY_ASSET in (assets or [])
    per_catalog = [a for a in assets or [] if a != SUMMARY_ASSET]
    if catalog is None and (per_catalog or not summary):
        raise KeyError("--catalog is required (only catalog_summary runs without one)")
    project, errors = preflight(config_dir, [catalog] if catalog else [])
    if errors or project is None:
        raise ConfigErrors(errors)  # the same list `flux-depth validate` prints
    if catalog is not None:
        project.catalog(catalog)
    instance = instance or get_instance(project.root)
    if on_start is not None:
        on_start(instance)
    overrides = {
        "catalogs": CatalogsResource(config_dir=str(project.config_dir)),
        **(resources or {}),
    }
    defs = build_definitions(overrides)
    outcome = RunOutcome(success=True, run_id="")
    if catalog is not None and (per_catalog or not summary):
        if not instance.has_dynamic_partition(CATALOG_PARTITION_NAME, catalog):
            try:
                instance.add_dynamic_partitions(CATALOG_PARTITION_NAME, [catalog])
            except Exception:  # another process registered it first (sqlite IntegrityError)
                if not instance.has_dynamic_partition(CATALOG_PARTITION_NAME, catalog):
                    raise
        job = defs.resolve_job_def("catalog_job")
        selected = {dg.AssetKey(a) for a in per_catalog} or {
            k for a in PARTITIONED_ASSETS for k in a.keys
        }
        checks = {
            k
            for k in check_selection(
                job.asset_layer.asset_graph.asset_check_keys, project.catalog(catalog)
            )
            if k.asset_key in selected
        }
        # only the checks this catalog declares are planned: no "skipped" noise for the others
        result = job.get_subset(
            asset_selection=selected, asset_check_selection=checks
        ).execute_in_process(
            partition_key=catalog,
            instance=instance,
            raise_on_error=False,
            run_config=_log_config(log_level),
            tags=catalog_tags(project.catalog(catalog), {}),
        )
        _collect(outcome, result)
        if not outcome.success:
            return outcome
    if summary:
        result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
            instance=instance,
            raise_on_error=False,
            run_config=_log_config(log_level),
            asset_selection=[dg.AssetKey(SUMMARY_ASSET)],
        )
        _collect(outcome, result)
    return outcome


def _log_config(log_level: str) -> dict:
    return {"loggers": {"console": {"config": {"log_level": log_level}}}}


def _collect(outcome: RunOutcome, result: Any) -> None:
    """Add one run's materializations, paths and checks to the outcome."""
    outcome.run_ids.append(result.run_id)
    outcome.run_id = outcome.run_id or result.run_id
    outcome.success = outcome.success and result.success
    for ev in result.get_asset_materialization_events():
        name = ev.materialization.asset_key.to_user_string()
        metadata = ev.materialization.metadata
        outcome.materialized[name] = {k: v.value for k, v in metadata.items()}
        outcome.paths[name] = [
            v.value for v in metadata.values() if isinstance(v, dg.PathMetadataValue)
        ]
    for check in result.get_asset_check_evaluations():
        outcome.checks.append(
            (
                f"{check.asset_key.to_user_string()}:{check.check_name}",
                check.passed,
                check.severity.value,
            )
        )
    if not result.success:
        outcome.run_id = result.run_id
        outcome.error = _first_failure(result)


def _first_failure(result) -> str:
    """One line: a failed gate's own description, else the user's exception, not Dagster's."""
    for check in result.get_asset_check_evaluations():
        if not check.passed and check.blocking and check.severity == dg.AssetCheckSeverity.ERROR:
            return f"{check.asset_key.to_user_string()} {check.check_name}: {check.description}"
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

"""The common start and end of every per-catalog asset: the partition it works on, then table,
lineage, metadata and the failure gate.

An asset writes its table and reports it as materialized, with a blocking `failure_ratio` check
computed from the same rows (`pipeline.gate`). When the ratio passes the catalog's threshold the
check fails with ERROR severity: Dagster keeps the materialization (the table is written, and
says which rows failed), fails the step, and skips every downstream asset of the run. A later
run of a downstream asset re-evaluates the upstream gate on the stored table before starting
(`require_upstream_gates`), and declarative automation waits for blocking checks to pass.
"""

import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import dagster as dg
import pyarrow as pa

from flux_depth_assets.config import Project
from flux_depth_assets.config.models import CatalogConfig
from flux_depth_assets.defs.constants import CATALOG_PARTITIONS
from flux_depth_assets.defs.lineage import record_materialization
from flux_depth_assets.defs.metadata import counts_metadata
from flux_depth_assets.defs.resources import CatalogsResource, StorageResource
from flux_depth_assets.pipeline.contact_sheet import contact_sheet_markdown
from flux_depth_assets.pipeline.gate import GATE_CHECK, GateOutcome, evaluate_gate
from flux_depth_assets.storage.store import Storage


@dataclass(frozen=True)
class Partition:
    """What a per-catalog asset run works on: the project, the partition's catalog, the store,
    and when the run started (its lineage row's `started_at`)."""

    started_at: datetime
    project: Project
    catalog: CatalogConfig
    store: Storage


def open_partition(
    context: dg.AssetExecutionContext, catalogs: CatalogsResource, storage: StorageResource
) -> Partition:
    started_at = datetime.now(UTC)
    project = catalogs.load()
    return Partition(started_at, project, project.catalog(context.partition_key), storage.get())


def gate_spec(asset: str) -> dg.AssetCheckSpec:
    """The blocking `failure_ratio` check every per-catalog asset declares (`check_specs=`)."""
    with warnings.catch_warnings():  # partitioned check specs are a Dagster "preview" feature
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return dg.AssetCheckSpec(
            GATE_CHECK,
            asset=asset,
            blocking=True,
            partitions_def=CATALOG_PARTITIONS,
            description=(
                "Failed (or rejected) rows / attempted rows of this materialization are at "
                "most the catalog's `max_failure_ratio`. Blocking: when it fails, the "
                "table is kept (it lists the reasons) and downstream assets do not run."
            ),
        )


def gate_result(asset: str, outcome: GateOutcome) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        asset_key=asset,
        check_name=GATE_CHECK,
        passed=outcome.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=outcome.description,
        metadata=outcome.metadata(),
    )


def require_upstream_gates(store: Storage, catalog: CatalogConfig, upstream: Iterable[str]) -> None:
    """Refuse to start when an upstream table of this catalog is over its failure threshold."""
    for asset in upstream:
        rows = store.partition_dicts(asset, catalog.name)
        if rows is None:
            continue  # the asset's own "missing upstream table" error says it better
        outcome = evaluate_gate(
            rows,
            asset=asset,
            catalog=catalog.name,
            threshold=catalog.max_failure_ratio,
            where=store.uri(Storage.table_rel(asset, catalog.name)),
        )
        if not outcome.passed:
            raise dg.Failure(
                description=f"upstream {asset} failed its {GATE_CHECK} gate: {outcome.description}"
            )


def finish_asset(
    context: dg.AssetExecutionContext,
    store: Storage,
    catalog: CatalogConfig,
    asset: str,
    *,
    table: pa.Table,
    rows: list[dict[str, Any]],
    counts: Mapping[str, int],
    seconds: float,
    started_at: datetime,
    config_hash: str,
    problems: Iterable[str] = (),
    calls: Iterable[Mapping[str, Any]] | None = None,
    metadata: Mapping[str, dg.MetadataValue] | None = None,
    contact_sheet: bool = False,
) -> dg.MaterializeResult:
    """Write `table`, log the first problems, record lineage, return metadata + the gate.

    `contact_sheet`: embed a few source | depth | normals | parallax thumbnails (Markdown).
    """
    table_rel = store.write_partition(asset, catalog.name, table)
    for line in list(problems)[:20]:
        context.log.warning(line)
    gate = evaluate_gate(
        rows,
        asset=asset,
        catalog=catalog.name,
        threshold=catalog.max_failure_ratio,
        where=store.uri(table_rel),
    )
    lineage = record_materialization(
        store,
        context,
        counts=counts,
        seconds=seconds,
        started_at=started_at,
        calls=calls,
        status="succeeded" if gate.passed else "failed",
        config_hash=config_hash,
    )
    if not gate.passed:
        context.log.error(gate.description)
    cost = float(lineage["cost_usd"].value or 0.0)  # type: ignore[arg-type]
    meta: dict[str, dg.MetadataValue] = {
        **counts_metadata(dict(counts), seconds, len(rows)),
        "cost_usd": lineage.pop("cost_usd"),  # the number Dagster sums over runs ...
        "cost": dg.MetadataValue.text(f"${cost:,.2f} USD"),  # ... and what a person reads
        **lineage,
        "table": dg.MetadataValue.path(store.uri(table_rel)),
        **(metadata or {}),
    }
    if contact_sheet:
        try:
            sheet = contact_sheet_markdown(store, catalog.name)
        except Exception as exc:  # noqa: BLE001 - a picture never fails the asset
            context.log.warning(f"contact sheet not drawn: {type(exc).__name__}: {exc}")
            sheet = None
        if sheet:
            meta["contact_sheet"] = dg.MetadataValue.md(sheet)
    return dg.MaterializeResult(metadata=meta, check_results=[gate_result(asset, gate)])

"""The guard around every paid provider run: never pay twice, and record exactly what was paid.

`paid_run(...)` wraps the part of `provider_run.run_provider_asset` that may pay:

1. the catalog's lease (`storage.lease`): one paid run per catalog at a time, whatever started it;
   a second run waits (bounded) or refuses with one line, before anything is paid;
2. `probe()`: the cache can be written (the provider probes its own journal), before any call;
3. per chunk of predictions, in this order: `resolve_costs` (a prediction met in the journal
   costs nothing again unless no run recorded it, i.e. the run that paid it crashed), `record`
   (the chunk's calls written to the lineage tables, BEFORE caching), the caller caches the
   results, `settle` (the provider drops journal entries of durable results), `check` (the
   provider stopped creating, or the lease was lost: fail with one line, re-running is safe).

A kill at any instant leaves either a journal entry (the next run resumes it and looks its
prediction id up in the lineage tables) or a cached result whose cost is already recorded.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import pyarrow.compute as pc
import pyarrow.dataset as ds

from flux_depth_assets.lineage import queries
from flux_depth_assets.lineage.writer import (
    calls_from_rows,
    materialization_row,
    utc_day,
    write_rows,
)
from flux_depth_assets.providers.base import DepthPrediction, DepthProvider
from flux_depth_assets.storage.lease import CatalogLease, LeaseBusy
from flux_depth_assets.storage.store import Storage

log = logging.getLogger(__name__)
RERUN_SAFE = "re-running is safe: paid results are journaled or cached and are not paid again"


class PaidRunError(RuntimeError):
    """A paid run refused to start or stopped early; the message is one line for the user."""


def recorded_prediction_ids(storage: Storage, ids: Iterable[str]) -> set[str]:
    """Which of these prediction ids already have a paid row in the `provider_calls` table."""
    wanted = sorted(set(ids))
    if not wanted:
        return set()
    data = queries.dataset(storage, "provider_calls")
    if data is None:
        return set()
    table = data.to_table(
        columns=["prediction_id", "cost_usd"],
        filter=ds.field("prediction_id").isin(wanted) & (ds.field("cost_usd") > 0),
    )
    return set(pc.unique(table["prediction_id"]).to_pylist()) - {None} if table.num_rows else set()


class PaidRun:
    """One guarded paid run of one asset on one catalog (see the module docstring)."""

    def __init__(
        self,
        storage: Storage,
        catalog: str,
        asset: str,
        provider: DepthProvider,
        *,
        run_id: str,
        started_at: datetime,
        images: int,
    ):
        self.storage, self.catalog, self.asset, self.provider = storage, catalog, asset, provider
        self.run_id = run_id
        self.started_at = started_at
        self.images = images
        self.lease: CatalogLease | None = None

    def probe(self, rel_dir: str) -> None:
        problem = self.storage.unwritable(rel_dir)
        if problem:
            raise PaidRunError(
                f"{problem}; results could not be kept, so nothing was sent. Fix the storage root "
                "and run again"
            )

    def resolve_costs(self, preds: list[DepthPrediction]) -> list[DepthPrediction]:
        """Add the cost of journaled predictions that no run recorded (their run crashed)."""
        journaled: dict[str, float] = {}
        for p in preds:
            journaled.update(p.extra.get("journaled_predictions") or {})
        if not journaled:
            return preds
        recorded = recorded_prediction_ids(self.storage, journaled)
        for p in preds:
            unrecorded = {
                pid: cost
                for pid, cost in (p.extra.get("journaled_predictions") or {}).items()
                if pid not in recorded
            }
            if unrecorded:
                p.cost_usd = round(float(p.cost_usd or 0.0) + sum(unrecorded.values()), 6)
                p.extra["recorded_for_crashed_run"] = sorted(unrecorded)
                p.extra["cost_reported"] = True
        return preds

    def record(self, rows: Iterable[dict[str, Any]]) -> None:
        """This run's calls so far into the lineage tables (replaced by the asset's final write;
        a run that dies keeps these, with a `failed` materialization row)."""
        rows = list(rows)
        calls = calls_from_rows(
            rows, run_id=self.run_id, asset=self.asset, default_time=self.started_at
        )
        day = utc_day(self.started_at)
        write = functools.partial(
            write_rows,
            self.storage,
            catalog=self.catalog,
            day=day,
            run_id=self.run_id,
            asset=self.asset,
        )
        try:
            write("provider_calls", rows=calls)
            counts = {
                "images": self.images,
                "new": sum(r["status"] == "succeeded" for r in rows),
                "cached": sum(r["status"] == "cached" for r in rows),
                "failed": sum(r["status"] == "failed" for r in rows),
                "skipped_budget": sum(r["status"] == "skipped_budget" for r in rows),
            }
            paid = [c for c in calls if not c["cached"] and c["status"] != "skipped_budget"]
            row = materialization_row(
                run_id=self.run_id,
                asset=self.asset,
                counts=counts,
                cost_usd=sum(c["cost_usd"] for c in calls),
                seconds=0.0,
                started_at=self.started_at,
                finished_at=datetime.now(UTC),
                provider_calls=len(paid),
                status="failed",
            )
            write("materializations", rows=[row])
        except Exception as exc:  # noqa: BLE001 - the journal still holds every paid id
            raise PaidRunError(
                f"the cost of this run could not be recorded in the lineage tables "
                f"({type(exc).__name__}: {exc}); stopped. {RERUN_SAFE}, and the next run "
                "records what this one paid"
            ) from None

    def settle(self, cache_keys: list[str]) -> None:
        try:
            self.provider.settle(cache_keys)
        except Exception as exc:  # noqa: BLE001 - a stale entry is resumed at no cost next time
            log.warning("could not clear settled journal entries: %s", exc)

    def check(self, store_errors: list[str]) -> None:
        """Fail with one line when the provider stopped, results could not be stored, or the
        lease was lost; else return."""
        reason = self.provider.stop_reason()
        if reason is None and store_errors:
            reason = (
                f"{len(store_errors)} paid result(s) could not be stored "
                f"(first: {store_errors[0]}); they stay journaled"
            )
        if reason is None and self.lease is not None and self.lease.lost:
            reason = self.lease.lost
        if reason:
            raise PaidRunError(f"{reason}; stopped. {RERUN_SAFE}")


@contextlib.contextmanager
def paid_run(
    storage: Storage,
    catalog: str,
    asset: str,
    provider: DepthProvider,
    *,
    run_id: str,
    started_at: datetime | None,
    images: int,
    log: Callable[[str], None],
) -> Iterator[PaidRun]:
    """The guard for one asset's provider run; holds the catalog's lease when the provider
    charges (`price_usd > 0`)."""
    guard = PaidRun(
        storage,
        catalog,
        asset,
        provider,
        run_id=run_id,
        started_at=started_at or datetime.now(UTC),
        images=images,
    )
    provider.bind_storage(storage, run_id)
    if provider.price_usd > 0:
        lease = CatalogLease(storage, catalog, run_id=run_id, on_wait=log)
        try:
            lease.acquire()
        except LeaseBusy as exc:
            raise PaidRunError(str(exc)) from None
        except OSError as exc:
            raise PaidRunError(
                f"the catalog's lease at {storage.uri(lease.directory)} cannot be written "
                f"({type(exc).__name__}: {exc}); the storage root is not writable, so nothing "
                "was sent. Fix it and run again"
            ) from None
        guard.lease = lease
    try:
        yield guard
    finally:
        if guard.lease is not None:
            guard.lease.release()

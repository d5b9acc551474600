"""The logic behind a catalog's YAML `tests:` (the asset checks built in defs/declarative_checks.py).

Pure functions over the Parquet tables the assets write; no Dagster here. Each test reads the
catalog's snapshot table and returns a `CheckOutcome` (passed, a one-line description and figures).
Tables are read defensively: a missing table or column is a failed test that says what is missing,
never an exception, because a check that crashes tells the reader less than one that fails.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flux_depth_assets.config.models import (
    DeclaredTest,
    DepthRangeTest,
    MaxRejectedRatioTest,
    MinImagesTest,
    ValidDepthRatioTest,
)
from flux_depth_assets.pipeline.derived_run import OK, STATS_ASSET
from flux_depth_assets.pipeline.scan import ASSET as SOURCES_ASSET
from flux_depth_assets.storage.store import Storage

# Which table (= asset) each test reads; the asset check is attached to that asset.
TEST_ASSETS: dict[str, str] = {
    "valid_depth_ratio": STATS_ASSET,
    "depth_range": STATS_ASSET,
    "max_rejected_ratio": SOURCES_ASSET,
    "min_images": SOURCES_ASSET,
}
WORST_SHOWN = 5
VALID_COLUMN = "valid_fraction"  # share of valid depth pixels per image (storage.schemas)


@dataclass
class CheckOutcome:
    passed: bool
    description: str
    metadata: dict[str, Any] = field(default_factory=dict)


def _rows(storage: Storage, asset: str, catalog: str) -> tuple[list[dict] | None, str]:
    rel = Storage.table_rel(asset, catalog)
    try:
        table = storage.read_partition(asset, catalog)
    except Exception as exc:  # noqa: BLE001 - unreadable file: report it as the test's failure
        return None, f"cannot read {storage.uri(rel)}: {type(exc).__name__}: {exc}"
    if table is None:
        return (
            None,
            f"no {asset} table for catalog {catalog!r} at {storage.uri(rel)} (materialize {asset} first)",
        )
    return table.to_pylist(), ""


def _number(v: Any) -> float | None:
    if v is None or isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def _succeeded(rows: list[dict]) -> list[dict]:
    """Rows of images with statistics (failed and skipped images have none)."""
    return [r for r in rows if r.get("status") in OK]


def _missing(rows: list[dict], columns: tuple[str, ...]) -> str:
    """Why the test fails when the table lacks a column it reads; empty when it has them all."""
    absent = [c for c in columns if rows and c not in rows[0]]
    if not absent:
        return ""
    return f"{STATS_ASSET} has no {'/'.join(absent)} column (columns: {', '.join(rows[0])})"


def _per_image(
    values: list[tuple[dict, float]], threshold: float, aggregate: str, what: str, test: str
) -> CheckOutcome:
    if not values:
        return CheckOutcome(False, f"{test}: no image has a {what} value to test", {"images": 0})
    vals = [v for _, v in values]
    mean = sum(vals) / len(vals)
    failing = sorted(((v, r) for r, v in values if v < threshold), key=lambda t: t[0])
    meta: dict[str, Any] = {
        "images": len(vals),
        "threshold": threshold,
        "aggregate": aggregate,
        "mean": round(mean, 4),
        "min": round(min(vals), 4),
        "images_below": len(failing),
    }
    if failing:
        meta["worst"] = ", ".join(f"{r.get('image_id')}={v:.3f}" for v, r in failing[:WORST_SHOWN])
    if aggregate == "mean":
        passed = mean >= threshold
        desc = f"mean {what} {mean:.3f} {'≥' if passed else '<'} {threshold:g}"
    else:
        passed = not failing
        desc = (
            f"all {len(vals)} images have {what} ≥ {threshold:g}"
            if passed
            else f"{len(failing)} of {len(vals)} images have {what} < {threshold:g}"
        )
    return CheckOutcome(passed, f"{test}: {desc}", meta)


def valid_depth_ratio(storage: Storage, catalog: str, args: ValidDepthRatioTest) -> CheckOutcome:
    rows, problem = _rows(storage, STATS_ASSET, catalog)
    if rows is None or (problem := _missing(rows, (VALID_COLUMN,))):
        return CheckOutcome(False, f"valid_depth_ratio: {problem}")
    values = [(r, v) for r in _succeeded(rows) if (v := _number(r.get(VALID_COLUMN))) is not None]
    return _per_image(values, args.min, args.aggregate, VALID_COLUMN, "valid_depth_ratio")


def depth_range(storage: Storage, catalog: str, args: DepthRangeTest) -> CheckOutcome:
    rows, problem = _rows(storage, STATS_ASSET, catalog)
    if rows is None or (problem := _missing(rows, ("p1", "p99"))):
        return CheckOutcome(False, f"depth_range: {problem}")
    values = []
    for r in _succeeded(rows):
        lo, hi = _number(r.get("p1")), _number(r.get("p99"))
        if lo is not None and hi is not None:
            values.append((r, hi - lo))
    return _per_image(values, args.p99_minus_p1_min, args.aggregate, "p99 - p1", "depth_range")


def max_rejected_ratio(storage: Storage, catalog: str, args: MaxRejectedRatioTest) -> CheckOutcome:
    rows, problem = _rows(storage, SOURCES_ASSET, catalog)
    if rows is None:
        return CheckOutcome(False, f"max_rejected_ratio: {problem}")
    files = len(rows)
    rejected = [r for r in rows if r.get("status") == "rejected"]
    ratio = len(rejected) / files if files else 0.0
    meta: dict[str, Any] = {
        "files": files,
        "rejected": len(rejected),
        "rejected_ratio": round(ratio, 4),
        "threshold": args.max,
    }
    reasons: dict[str, int] = {}
    for r in rejected:
        reason = str(r.get("reason") or "unknown").split(":")[0][:80]
        reasons[reason] = reasons.get(reason, 0) + 1
    if reasons:
        meta["top_reasons"] = "; ".join(
            f"{k} ({v})" for k, v in sorted(reasons.items(), key=lambda kv: -kv[1])[:WORST_SHOWN]
        )
    passed = ratio <= args.max
    return CheckOutcome(
        passed,
        f"max_rejected_ratio: {len(rejected)} of {files} files rejected "
        f"({ratio:.1%}) {'≤' if passed else '>'} {args.max:.1%}",
        meta,
    )


def min_images(storage: Storage, catalog: str, args: MinImagesTest) -> CheckOutcome:
    rows, problem = _rows(storage, SOURCES_ASSET, catalog)
    if rows is None:
        return CheckOutcome(False, f"min_images: {problem}")
    accepted = sum(r.get("status") == "accepted" for r in rows)
    passed = accepted >= args.min
    return CheckOutcome(
        passed,
        f"min_images: {accepted} accepted images {'≥' if passed else '<'} {args.min}",
        {"accepted": accepted, "threshold": args.min},
    )


_RUNNERS: dict[str, Callable[[Storage, str, Any], CheckOutcome]] = {
    "valid_depth_ratio": valid_depth_ratio,
    "depth_range": depth_range,
    "max_rejected_ratio": max_rejected_ratio,
    "min_images": min_images,
}


def run_test(test: DeclaredTest, storage: Storage, catalog: str) -> CheckOutcome:
    return _RUNNERS[test.name](storage, catalog, test.args)

"""`estimate`, `costs`, `compact`: what a run would cost, what runs did cost, tidy the lineage tables."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from datetime import date, datetime
from typing import Any

from flux_depth_assets.config import ConfigError, load_project


def register(sub: argparse._SubParsersAction) -> None:
    e = sub.add_parser(
        "estimate", help="pending images and their cost for a catalog, calling no provider"
    )
    e.add_argument("--catalog", required=True)
    e.add_argument(
        "--config-dir",
        help="config directory (default: $FLUX_DEPTH_CONFIG_DIR or dbt_like_configs/)",
    )
    e.add_argument("--root", help="storage root (default: $FLUX_DEPTH_HOME)")
    e.add_argument(
        "--scan",
        action="store_true",
        help="list and validate the source in memory (writes nothing) instead of "
        "trusting the last source_images table",
    )
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.set_defaults(func=_estimate)

    c = sub.add_parser("costs", help="spend by catalog, asset and UTC day, from the lineage tables")
    c.add_argument("--catalog")
    c.add_argument("--since", type=_date, help="first UTC day to include (YYYY-MM-DD)")
    c.add_argument("--until", type=_date, help="last UTC day to include (YYYY-MM-DD)")
    c.add_argument("--root", help="storage root (default: $FLUX_DEPTH_HOME)")
    c.add_argument("--format", choices=["table", "csv", "json"], default="table")
    c.add_argument(
        "--by-host",
        action="store_true",
        help="spend per catalog and host (the `host` column; the provider for rows "
        "without one: cache hits, local models, files older than it)",
    )
    c.add_argument(
        "--uncertain",
        action="store_true",
        help="list create attempts that were sent without an answer (the host may have "
        "charged them) instead of the spend table",
    )
    c.set_defaults(func=_costs)

    k = sub.add_parser(
        "compact", help="merge the lineage tables' small files (no row lost or duplicated)"
    )
    k.add_argument("--catalog")
    k.add_argument(
        "--table", choices=["provider_calls", "materializations"], help="one table (default: both)"
    )
    k.add_argument(
        "--include-today",
        action="store_true",
        help="also compact the current UTC day (runs may still be writing there)",
    )
    k.add_argument(
        "--dry-run", action="store_true", help="report what would be merged, change nothing"
    )
    k.add_argument("--root", help="storage root (default: $FLUX_DEPTH_HOME)")
    k.set_defaults(func=_compact)


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def _fail(message: str, code: int = 1) -> int:
    print(f"flux-depth: error: {message}", file=sys.stderr)
    return code


def _store(root: str | None):
    from flux_depth_assets.defs.resources import StorageResource  # Dagster import only when used

    return StorageResource(root=root).get()


# --------------------------------------------------------------------------- estimate


def _estimate(args: argparse.Namespace) -> int:
    from flux_depth_assets.defs.resources import DepthProviderResource
    from flux_depth_assets.lineage.estimate import Estimate, estimate_catalog
    from flux_depth_assets.sources import SourceError

    try:
        project = load_project(args.config_dir)
        catalog = project.catalog(args.catalog)
    except ConfigError as exc:
        return _fail(str(exc), 2)
    except KeyError as exc:
        return _fail(exc.args[0], 2)
    resource = DepthProviderResource()
    plans = [("depth_maps", "depth", "depth")]
    if getattr(catalog.provider, "mode", "depth") == "render":
        plans.append(("depth_renders", "render", "render"))
    estimates: list[Estimate] = []
    try:
        store = _store(args.root)
        for asset, purpose, kind in plans:
            # The provider the asset would use, built for its price and cache key only.
            provider = resource.for_catalog(catalog, purpose=purpose)
            estimates.append(
                estimate_catalog(
                    catalog,
                    provider,
                    store,
                    scan=args.scan,
                    asset=asset,
                    cache_kind=kind,
                    same_images_as=estimates[0] if estimates else None,
                )
            )
    except SourceError as exc:
        return _fail(f"catalog {catalog.name!r}: {exc}")
    total = sum(e.cost_usd for e in estimates)
    if args.json:
        print(
            json.dumps(
                {
                    "catalog": catalog.name,
                    "total_cost_usd": total,
                    "assets": {e.asset: e.as_dict() for e in estimates},
                },
                indent=2,
                default=str,
            )
        )
        return 0
    print(f"catalog {catalog.name}")
    print(f"  images from: {estimates[0].basis}")
    for note in estimates[0].notes:
        print(f"  note: {note}")
    for est in estimates:
        print(
            f"  {est.asset}: provider {est.provider}/{est.model} at ${est.price_usd:.4f} per call: "
            f"images {est.images}, cached {est.cached}, pending {est.pending} "
            f"→ estimated cost ${est.cost_usd:.2f}"
        )
        if est.unscanned_files or est.removed_files:
            print(
                f"    since that scan: {est.unscanned_files} new or changed file(s) not validated "
                f"(up to ${est.unscanned_cost_usd:.2f} more), {est.removed_files} removed"
            )
        budget = (
            "none"
            if est.budget_usd is None
            else f"${est.budget_usd:.2f} (on_budget: {est.on_budget})"
        )
        print(f"    budget_usd_per_run {budget}: {est.verdict}")
    if len(estimates) > 1:
        print(f"  total estimated cost ${total:.2f}")
    print("  no provider was called")
    return 0


# --------------------------------------------------------------------------- costs


def _printed_without_table(
    rows: list[dict[str, Any]], columns: list[str], fmt: str, empty: str
) -> bool:
    """Print `rows` as JSON or CSV when `fmt` asks for it, or `empty` when there are none; False
    when the human table is still to print."""
    if fmt == "json":
        print(json.dumps(rows, indent=2, default=str))
        return True
    if fmt == "csv":
        w = csv.DictWriter(sys.stdout, fieldnames=columns)
        w.writeheader()
        w.writerows(rows)
        return True
    if not rows:
        print(empty)
        return True
    return False


def _provider_calls(args: argparse.Namespace, columns: list[str]) -> Any:
    """The `provider_calls` rows of the catalog and days the command asks for (`columns` only)."""
    from flux_depth_assets.lineage.queries import read

    return read(
        _store(args.root), "provider_calls", args.catalog, args.since, args.until, columns=columns
    )


UNCERTAIN_COLUMNS = [
    "date",
    "catalog",
    "asset",
    "run_id",
    "image_id",
    "uncertain_attempts",
    "uncertain_cost_usd",
]


def _uncertain(args: argparse.Namespace) -> int:
    """Creates that may have been charged without the run learning their prediction id."""
    import pyarrow.compute as pc

    table = _provider_calls(args, UNCERTAIN_COLUMNS)
    table = table.filter(pc.fill_null(pc.greater(table["uncertain_attempts"], 0), False))
    rows = table.sort_by([("date", "ascending"), ("run_id", "ascending")]).to_pylist()
    if _printed_without_table(
        rows, UNCERTAIN_COLUMNS, args.format, "no uncertain create attempts recorded"
    ):
        return 0
    for r in rows:
        print("  ".join(_cell(r[c]) for c in UNCERTAIN_COLUMNS))
    total = sum(r["uncertain_cost_usd"] or 0.0 for r in rows)
    print(
        f"{sum(r['uncertain_attempts'] for r in rows)} uncertain attempt(s), up to "
        f"${total:,.2f} more than the recorded cost (compare with the host's bill)"
    )
    return 0


HOST_COLUMNS = ["catalog", "host", "calls", "paid_calls", "cached", "failed", "cost_usd"]


def _by_host(args: argparse.Namespace) -> int:
    """Spend per catalog and host, from the `provider_calls` rows (see `calls_by_host`)."""
    from flux_depth_assets.lineage.queries import calls_by_host

    table = _provider_calls(args, ["catalog", "host", "provider", "status", "cached", "cost_usd"])
    rows = calls_by_host(table).to_pylist()
    if _printed_without_table(rows, HOST_COLUMNS, args.format, "no provider calls recorded"):
        return 0
    print("  ".join(HOST_COLUMNS))
    for r in rows:
        print("  ".join(_cell(r[c]) for c in HOST_COLUMNS))
    return 0


def _costs(args: argparse.Namespace) -> int:
    from flux_depth_assets.lineage.queries import COST_COLUMNS, costs

    if args.uncertain:
        return _uncertain(args)
    if args.by_host:
        return _by_host(args)
    table = costs(_store(args.root), catalog=args.catalog, since=args.since, until=args.until)
    rows = table.to_pylist()
    empty = (
        "no materializations recorded"
        + (f" for catalog {args.catalog!r}" if args.catalog else "")
        + (f" since {args.since}" if args.since else "")
    )
    if _printed_without_table(rows, COST_COLUMNS, args.format, empty):
        return 0
    cols = [
        "date",
        "catalog",
        "asset",
        "runs",
        "images_new",
        "images_cached",
        "images_failed",
        "provider_calls",
        "cost_usd",
    ]
    total = {
        "date": "total",
        "catalog": "",
        "asset": "",
        **{c: sum(r[c] or 0 for r in rows) for c in cols[3:-1]},
        "cost_usd": float(sum(r["cost_usd"] or 0.0 for r in rows)),
    }
    cells = [[_cell(r[c]) for c in cols] for r in rows + [total]]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    line = "  ".join(
        c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(cols, widths))
    )
    print(line)
    print("-" * len(line))
    for n, row in enumerate(cells):
        if n == len(cells) - 1:
            print("-" * len(line))
        print(
            "  ".join(
                v.ljust(w) if i < 3 else v.rjust(w) for i, (v, w) in enumerate(zip(row, widths))
            )
        )
    return 0


def _cell(v) -> str:
    if isinstance(v, float):
        return f"${v:,.2f}"
    if isinstance(v, (date, datetime)):
        return v.isoformat()
    return "" if v is None else str(v)


# --------------------------------------------------------------------------- compact


def _compact(args: argparse.Namespace) -> int:
    from flux_depth_assets.lineage.compact import compact

    reports = compact(
        _store(args.root),
        tables=[args.table] if args.table else None,
        catalog=args.catalog,
        include_today=args.include_today,
        dry_run=args.dry_run,
    )
    done = 0
    for r in reports:
        if r.skipped:
            print(f"{r.partition}: {r.files_before} file(s), skipped ({r.skipped})")
            continue
        done += 1
        verb = "would merge" if args.dry_run else "merged"
        extra = (
            f", removed {len(r.leftovers_removed)} leftover(s) of an interrupted compaction"
            if r.leftovers_removed
            else ""
        )
        extra += f", dropped {r.superseded_rows} superseded row(s)" if r.superseded_rows else ""
        print(f"{r.partition}: {verb} {r.files_before} file(s) → {r.rows} row(s){extra}")
    print(
        f"{done} partition(s) {'to compact' if args.dry_run else 'compacted'}, "
        f"{len(reports) - done} left as they are"
    )
    return 0

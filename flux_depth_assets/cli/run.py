"""`materialize`, `catalogs`, `validate`: run and inspect catalogs from the shell."""

from __future__ import annotations

import argparse
import sys

from flux_depth_assets.config import ConfigError, ConfigErrors, load_project

#: where `make dev` serves the UI
UI_URL = "http://127.0.0.1:3000"


def register(sub: argparse._SubParsersAction) -> None:
    m = sub.add_parser(
        "materialize",
        help="validate, then run a catalog's assets in-process on "
        "the UI's instance ($DAGSTER_HOME or .dagster_home)",
    )
    m.add_argument(
        "--catalog",
        help="catalog name (a `catalog` partition); required unless "
        "--assets is only catalog_summary",
    )
    m.add_argument(
        "--assets",
        help="comma-separated asset names (default: every per-catalog "
        "asset; catalog_summary runs after them when listed)",
    )
    m.add_argument(
        "--config-dir",
        help="config directory (default: $FLUX_DEPTH_CONFIG_DIR or dbt_like_configs/)",
    )
    m.add_argument("--quiet", action="store_true", help="only warnings and the summary")
    m.set_defaults(func=_materialize)

    c = sub.add_parser("catalogs", help="list declared catalogs")
    c.add_argument("--config-dir")
    c.set_defaults(func=_catalogs)

    v = sub.add_parser(
        "validate",
        help="check dbt_like_configs/ and every catalog's source "
        "without running anything (all errors at once)",
    )
    v.add_argument("--config-dir")
    v.set_defaults(func=_validate)


def _fail(message: str, code: int = 1) -> int:
    print(f"flux-depth: error: {message}", file=sys.stderr)
    return code


def _print_errors(errors: list[ConfigError]) -> int:
    print(
        f"flux-depth: error: {len(errors)} problem(s) in the config; nothing was run:",
        file=sys.stderr,
    )
    for err in errors:
        print(f"  {err}", file=sys.stderr)
    return 2


def _materialize(args: argparse.Namespace) -> int:
    from flux_depth_assets.defs.runner import materialize_catalog  # dagster import only when needed

    assets = [a.strip() for a in args.assets.split(",") if a.strip()] if args.assets else None

    def started(instance) -> None:
        print(f"instance: {instance.root_directory} (the UI of `make dev` shows these runs)")

    try:
        outcome = materialize_catalog(
            args.catalog,
            assets=assets,
            config_dir=args.config_dir,
            log_level="WARNING" if args.quiet else "INFO",
            on_start=started,
        )
    except ConfigErrors as exc:
        return _print_errors(exc.errors)
    except ConfigError as exc:
        return _fail(str(exc), 2)
    except KeyError as exc:
        return _fail(exc.args[0] if exc.args else str(exc), 2)
    for asset, meta in outcome.materialized.items():
        counts = ", ".join(
            f"{k}={meta[k]}" for k in ("images", "new", "cached", "rejected", "failed") if k in meta
        )
        cost = f", cost ${meta['cost_usd']:.2f}" if "cost_usd" in meta else ""
        print(f"{asset:18s} {counts}{cost}")
        if meta.get("note"):
            print(f"{'':18s} ({meta['note']})")
        for path in outcome.paths.get(asset, []):
            if "/tables/lineage/" not in path:
                print(f"{'':18s} → {path}")
    if outcome.checks:
        failed = [(n, sev) for n, ok, sev in outcome.checks if not ok]
        print(
            f"checks             {len(outcome.checks) - len(failed)}/{len(outcome.checks)} passed"
            + "".join(f"\n{'':18s} ✗ {n} ({sev.lower()})" for n, sev in failed)
        )
    for run_id in outcome.run_ids:
        print(f"run {run_id}: {UI_URL}/runs/{run_id} (while `make dev` runs)")
    if not outcome.success:
        return _fail(f"run {outcome.run_id} failed: {outcome.error}")
    print(f"run {outcome.run_id} succeeded")
    return 0


def _catalogs(args: argparse.Namespace) -> int:
    try:
        project = load_project(args.config_dir)
    except ConfigError as exc:
        return _fail(str(exc), 2)
    print(f"{'catalog':16s} {'provider':10s} {'source':12s} location")
    for name, cat in sorted(project.catalogs.items()):
        loc = (
            getattr(cat.source, "path", None)
            or f"s3://{getattr(cat.source, 'bucket', '')}/{getattr(cat.source, 'prefix', '')}"
        )
        print(f"{name:16s} {cat.provider.name:10s} {cat.source.type:12s} {loc}")
    return 0


def _validate(args: argparse.Namespace) -> int:
    from flux_depth_assets.config.preflight import preflight

    project, errors = preflight(args.config_dir)
    if errors or project is None:
        return _print_errors(errors)
    print(
        f"OK: {len(project.catalogs)} catalog(s) in {project.config_dir}, sources readable: "
        f"{', '.join(sorted(project.catalogs)) or '(none)'}"
    )
    return 0

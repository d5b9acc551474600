"""`materialize`, `catalogs`, `validate`: run and inspect catalogs from the shell."""

from __future__ import annotations

import argparse
import sys

from flux_depth_assets.config import ConfigError, load_project


def register(sub: argparse._SubParsersAction) -> None:
    m = sub.add_parser("materialize", help="run a catalog's assets in-process")
    m.add_argument("--catalog", required=True, help="catalog name (a `catalog` partition)")
    m.add_argument("--assets", help="comma-separated asset names (default: every per-catalog asset)")
    m.add_argument("--config-dir", help="config directory (default: $FLUX_DEPTH_CONFIG_DIR or dbt_like_configs/)")
    m.add_argument("--quiet", action="store_true", help="only warnings and the summary")
    m.set_defaults(func=_materialize)

    c = sub.add_parser("catalogs", help="list declared catalogs")
    c.add_argument("--config-dir")
    c.set_defaults(func=_catalogs)

    v = sub.add_parser("validate", help="check dbt_like_configs/ without running anything")
    v.add_argument("--config-dir")
    v.set_defaults(func=_validate)


def _fail(message: str, code: int = 1) -> int:
    print(f"flux-depth: error: {message}", file=sys.stderr)
    return code


def _materialize(args: argparse.Namespace) -> int:
    from flux_depth_assets.defs.runner import materialize_catalog  # dagster import only when needed
    assets = [a.strip() for a in args.assets.split(",") if a.strip()] if args.assets else None
    try:
        outcome = materialize_catalog(args.catalog, assets=assets, config_dir=args.config_dir,
                                      log_level="WARNING" if args.quiet else "INFO")
    except ConfigError as exc:
        return _fail(str(exc), 2)
    except KeyError as exc:
        return _fail(exc.args[0] if exc.args else str(exc), 2)
    for asset, meta in outcome.materialized.items():
        counts = ", ".join(f"{k}={meta[k]}" for k in ("images", "new", "cached", "rejected", "failed")
                           if k in meta)
        cost = f", cost ${meta['cost_usd']:.2f}" if "cost_usd" in meta else ""
        print(f"{asset:18s} {counts}{cost}")
        if meta.get("note"):
            print(f"{'':18s} ({meta['note']})")
        for path in outcome.paths.get(asset, []):
            if "/tables/lineage/" not in path:
                print(f"{'':18s} → {path}")
    if outcome.checks:
        failed = [(n, sev) for n, ok, sev in outcome.checks if not ok]
        print(f"checks             {len(outcome.checks) - len(failed)}/{len(outcome.checks)} passed"
              + "".join(f"\n{'':18s} ✗ {n} ({sev.lower()})" for n, sev in failed))
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
        loc = getattr(cat.source, "path", None) or f"s3://{getattr(cat.source, 'bucket', '')}/{getattr(cat.source, 'prefix', '')}"
        print(f"{name:16s} {cat.provider.name:10s} {cat.source.type:12s} {loc}")
    return 0


def _validate(args: argparse.Namespace) -> int:
    try:
        project = load_project(args.config_dir)
        for name in project.catalogs:
            project.settings_for(name)
    except ConfigError as exc:
        return _fail(str(exc), 2)
    print(f"OK: {len(project.catalogs)} catalog(s) in {project.config_dir}: "
          f"{', '.join(sorted(project.catalogs)) or '(none)'}")
    return 0

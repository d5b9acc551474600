"""`flux-depth`: the command line. Each module under `cli/` registers its own sub-commands."""

from __future__ import annotations

import argparse
import importlib
import sys

from flux_depth_assets.cli import fakeapi

# Modules with a `register(subparsers)` function; each adds its sub-commands.
COMMAND_MODULES = [
    "flux_depth_assets.cli.run",
    "flux_depth_assets.cli.fakeapi",
    "flux_depth_assets.cli.lineage",
    "flux_depth_assets.cli.dev",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flux-depth",
        description="Run and inspect flux_depth_assets catalogs: depth maps and depth-derived assets.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == [fakeapi.COMMAND]:  # its own parser: options pass through untouched
        return fakeapi.run(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""`flux-depth fake-api`: the loopback server speaking the Eachlabs protocol."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fake-api", help="run a loopback server speaking the Eachlabs protocol",
                       add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from flux_depth_assets.fakeapi import main  # imported only when used
    return int(main(args.rest) or 0)

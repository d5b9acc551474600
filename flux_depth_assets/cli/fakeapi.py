"""`flux-depth fake-api`: the loopback server speaking the Eachlabs protocol.

The server has its own argument parser; `flux-depth` hands it everything after `fake-api`
untouched (see `cli.main`), and lists the command here only so `--help` shows it.
"""

from __future__ import annotations

import argparse

COMMAND = "fake-api"


def register(sub: argparse._SubParsersAction) -> None:
    sub.add_parser(
        COMMAND,
        help="run a loopback server speaking the Eachlabs protocol "
        "(`flux-depth fake-api --help` for its options)",
        add_help=False,
    )


def run(argv: list[str]) -> int:
    from flux_depth_assets.fakeapi import main  # imported only when used

    return int(main(argv) or 0)

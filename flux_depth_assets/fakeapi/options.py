"""Command-line options for the fake host's dialect and its per-host faults (each `dest` is the
`FakeApiConfig` field it sets)."""

from __future__ import annotations

import argparse


def add_dialect_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("host dialect and faults")
    g.add_argument(
        "--dialect",
        choices=("eachlabs", "replicate", "bfl"),
        default="eachlabs",
        help="the host protocol to speak (default eachlabs)",
    )
    g.add_argument(
        "--retired-model",
        dest="retired_models",
        action="append",
        default=[],
        metavar="MODEL",
        help="answer creates for MODEL with 404 model not found (repeatable)",
    )
    g.add_argument(
        "--credit",
        dest="credit_usd",
        type=float,
        default=None,
        metavar="USD",
        help="account credit; creates beyond it answer 402 (default unlimited)",
    )
    g.add_argument(
        "--creates-per-window",
        type=int,
        default=None,
        metavar="N",
        help="accepted creates per --window seconds, then 429 (Replicate: 600)",
    )
    g.add_argument(
        "--window",
        dest="window_s",
        type=float,
        default=60.0,
        help="window for --creates-per-window",
    )
    g.add_argument(
        "--max-active",
        type=int,
        default=None,
        metavar="N",
        help="predictions running at once, then 429 (BFL: 24)",
    )
    g.add_argument(
        "--moderation-ratio",
        type=float,
        default=0.0,
        help="share of predictions ending moderated (replicate, bfl)",
    )
    g.add_argument(
        "--output-ttl",
        dest="output_ttl_s",
        type=float,
        default=None,
        metavar="S",
        help="output URLs stop working S seconds after success (bfl default 600)",
    )

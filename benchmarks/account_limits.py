"""Per-account limits across processes, measured at the loopback host.

Two (or more) processes share one storage root and one host account; each creates predictions
through an `AccountGate` as fast as it is allowed. The fake host records every accepted create
on its own clock; this prints, per cap, the most creates the host saw in any window (must be at
most the cap), the achieved rate against the cap, and the host's 429 count (must be 0).

    .venv/bin/python benchmarks/account_limits.py            # --procs 2 --creates 24
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from flux_depth_assets.fakeapi import running_fake_api  # noqa: E402
from flux_depth_assets.fakeapi.faults import max_in_window  # noqa: E402


def run(host: str, procs: int, creates: int, cap: int, window: float) -> dict[str, float]:
    with (
        tempfile.TemporaryDirectory() as root,
        running_fake_api(dialect=host, latency_s=0.05) as server,
    ):
        opts = {
            "host": host,
            "base_url": server.base_url,
            "root": root,
            "per_window": cap,
            "window_s": window,
            "n": creates // procs,
        }
        children = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tests.account_child",
                    json.dumps({**opts, "shade": 50 * i}),
                ],
                cwd=REPO,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for i in range(procs)
        ]
        for c in children:
            assert c.stdout is not None
            c.stdout.readline()
        for c in children:
            assert c.stdin is not None
            c.stdin.write("go\n")
            c.stdin.flush()
        for c in children:
            c.communicate(timeout=600)
        stats = server.stats()
    times = stats["create_times"]
    span = max(times) - min(times) if len(times) > 1 else 0.0
    # the ideal: `cap` at once, then `cap` more every window
    ideal = (len(times) / cap - 1) * window if len(times) > cap else 0.0
    return {
        "creates": len(times),
        "max_in_window": max_in_window(times, window),
        "span_s": span,
        "ideal_span_s": ideal,
        "rate_vs_cap": (ideal / span) if span else 1.0,
        "http_429": stats["status_counts"].get("429", 0),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--procs", type=int, default=2)
    p.add_argument("--creates", type=int, default=24)
    p.add_argument("--host", default="replicate", choices=("eachlabs", "replicate", "bfl"))
    args = p.parse_args()
    print(f"{args.procs} processes, {args.creates} creates, host dialect {args.host}")
    print(
        "| cap / window | creates | max in any window | span s | ideal span s | rate/cap | 429s |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    bad = 0
    for cap, window in ((3, 1.0), (6, 2.0), (12, 2.0)):
        t0 = time.monotonic()
        r = run(args.host, args.procs, args.creates, cap, window)
        bad += r["max_in_window"] > cap or r["http_429"] > 0
        print(
            f"| {cap} / {window:g} s | {r['creates']} | {r['max_in_window']} | "
            f"{r['span_s']:.2f} | {r['ideal_span_s']:.2f} | {r['rate_vs_cap']:.0%} | "
            f"{r['http_429']} |  ({time.monotonic() - t0:.0f} s)"
        )
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())

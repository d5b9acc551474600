"""Account limits held across two concurrent processes, measured at the loopback host."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from flux_depth_assets.fakeapi import running_fake_api
from flux_depth_assets.fakeapi.faults import max_in_window

REPO = Path(__file__).resolve().parents[1]
CHILDREN = {"": "tests.account_child", "p": "tests.provider_child"}  # option "module" picks


def run_children(options: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Start the children, wait until both are ready, release them together, collect reports."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", CHILDREN[o.get("module", "")], json.dumps(o)],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for o in options
    ]
    try:
        for p in procs:
            assert p.stdout is not None and json.loads(p.stdout.readline())["ready"]
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        reports = []
        for p in procs:
            out, _ = p.communicate(timeout=120)
            assert p.returncode == 0
            reports.append(json.loads(out.strip().splitlines()[-1]))
        return reports
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


@pytest.mark.parametrize("host", ["replicate", "eachlabs"])
def test_creates_per_window_hold_across_two_processes(tmp_path, host):
    cap, window = 3, 1.5
    with running_fake_api(dialect=host, latency_s=0.05) as server:
        common = {
            "host": host,
            "base_url": server.base_url,
            "root": str(tmp_path / "root"),
            "per_window": cap,
            "window_s": window,
            "n": 6,
        }
        reports = run_children([{**common, "shade": 0}, {**common, "shade": 100}])
        stats = server.stats()
    assert sum(r["created"] for r in reports) == 12 == stats["creates"]
    assert all(r["refused"] == [] for r in reports)
    assert max_in_window(stats["create_times"], window) <= cap  # the server's own clock
    assert stats["status_counts"].get("429", 0) == 0


def test_in_flight_cap_holds_across_two_processes(tmp_path):
    with running_fake_api(dialect="bfl", latency_s=0.3) as server:
        common = {
            "host": "bfl",
            "base_url": server.base_url,
            "root": str(tmp_path / "root"),
            "max_in_flight": 2,
            "n": 4,
        }
        reports = run_children([{**common, "shade": 0}, {**common, "shade": 100}])
        stats = server.stats()
    assert sum(r["created"] for r in reports) == 8 == stats["creates"]
    assert stats["max_active_predictions"] <= 2


def test_out_of_credit_stops_both_processes_after_the_first_answers(tmp_path):
    with running_fake_api(dialect="replicate", latency_s=0.05, credit_usd=0.15) as server:
        common = {
            "host": "replicate",
            "base_url": server.base_url,
            "root": str(tmp_path / "root"),
            "n": 20,
            "workers": 1,
        }
        reports = run_children([{**common, "shade": 0}, {**common, "shade": 100}])
        stats = server.stats()
    assert stats["creates"] == 3
    # at most one 402 per process (each may have asked before the other's flag), not 37
    assert 1 <= stats["out_of_credit"] <= 2
    assert all(r["stopped"] for r in reports)

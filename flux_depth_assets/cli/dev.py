"""`flux-depth dev`: `dagster dev` that stops on Ctrl-C / SIGTERM within seconds (`make dev`).

Started from make (a non-interactive shell), `dagster dev` inherits SIGINT ignored and maps
SIGTERM onto it, so it ignored both for over a minute, and a SIGKILL orphaned its webserver,
daemon and code server. Here it runs in its own session with default signal handling; this
process forwards SIGINT/SIGTERM/SIGHUP to it as one SIGTERM (it then shuts its children down,
~3 s when the machine is idle) and kills the whole group if that has not happened after
`STOP_TIMEOUT_S` (on a busy machine the code server alone took 9 s to wind down).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType

STOP_TIMEOUT_S = 6.0  # then SIGKILL: by then the daemon has shut down (its state is written)


def register(sub: argparse._SubParsersAction) -> None:
    d = sub.add_parser(
        "dev",
        help="open the Dagster UI (dagster dev) on the project's instance; "
        "Ctrl-C stops it and everything it started",
    )
    d.add_argument("-w", "--workspace", default="workspace.yaml")
    d.add_argument("--host", default="127.0.0.1")
    d.add_argument("-p", "--port", type=int, default=3000)
    d.set_defaults(func=_dev)


def _dagster_executable() -> str:
    beside = Path(sys.executable).with_name("dagster")
    return str(beside) if beside.exists() else (shutil.which("dagster") or "dagster")


def run_dev(argv: list[str], env: dict[str, str] | None = None) -> int:
    """Run `dagster dev <argv>` until it exits or this process is asked to stop."""
    stopping = threading.Event()
    child: list[subprocess.Popen[bytes]] = []

    def forward(signum: int, _frame: FrameType | None) -> None:
        if not stopping.is_set():
            stopping.set()
            print(
                f"flux-depth dev: stopping dagster dev (signal {signum})",
                file=sys.stderr,
                flush=True,
            )
            if child:
                _signal_group(child[0], signal.SIGTERM)

    # An ignored SIGINT/SIGTERM (a background shell job's) would survive exec; a Python handler
    # becomes SIG_DFL there. Set ours (the forwarders) before starting the child.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, forward)
    proc = subprocess.Popen([_dagster_executable(), "dev", *argv], start_new_session=True, env=env)
    child.append(proc)
    if stopping.is_set():  # asked to stop while it was starting
        _signal_group(proc, signal.SIGTERM)
    deadline: float | None = None
    while True:
        try:
            code = proc.wait(timeout=0.5)
            break
        except subprocess.TimeoutExpired:
            if stopping.is_set():
                deadline = deadline or time.monotonic() + STOP_TIMEOUT_S
                if time.monotonic() > deadline:  # asked to stop and it did not: the whole group
                    _kill_group(proc)
    _kill_group(proc)  # children that outlived their parent (none when it shut down cleanly)
    return 0 if stopping.is_set() else code


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)  # every process stops its own part at once
    except ProcessLookupError:
        pass


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _dev(args: argparse.Namespace) -> int:
    from flux_depth_assets.defs.runner import instance_home

    env = dict(os.environ)
    env["DAGSTER_HOME"] = str(instance_home())
    print(f"instance: {env['DAGSTER_HOME']}; UI on http://{args.host}:{args.port}", flush=True)
    return run_dev(["-w", args.workspace, "-h", args.host, "-p", str(args.port)], env=env)

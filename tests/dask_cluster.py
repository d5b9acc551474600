"""A real Dask deployment on loopback: one `dask scheduler` and N `dask worker` processes.

Used by the distributed-engine tests and by `benchmarks/pipeline_throughput.py --engine dask`.
Readiness is waited on with bounded waits (the scheduler file appears; the scheduler reports N
workers), never with sleeps; `stop_cluster` terminates what `start_cluster` started, and kills
what does not stop in time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

READY_TIMEOUT_S = 90.0


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "dask", *args]


def start_cluster(
    n_workers: int = 2, env: dict[str, str] | None = None
) -> tuple[str, list[subprocess.Popen]]:
    """(scheduler address, processes): scheduler on 127.0.0.1 (free port), single-threaded
    workers, no dashboards. Workers run with `env` added to this process's environment."""
    from distributed import Client

    folder = Path(tempfile.mkdtemp(prefix="flux_dask_"))
    sched_file = folder / "scheduler.json"
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}

    def spawn(args: list[str], log_name: str) -> subprocess.Popen:
        with open(folder / log_name, "wb") as log:  # the child keeps its own descriptor
            return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=log, env=full_env)

    procs = [
        spawn(
            _cli(
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--no-dashboard",
                "--scheduler-file",
                str(sched_file),
            ),
            "scheduler.log",
        )
    ]
    try:
        address = _wait_for_file(sched_file, procs[0])
        for k in range(n_workers):
            procs.append(
                spawn(
                    _cli(
                        "worker",
                        address,
                        "--nthreads",
                        "1",
                        "--nworkers",
                        "1",
                        "--no-dashboard",
                        "--local-directory",
                        str(folder / f"w{k}"),
                        "--name",
                        f"w{k}",
                    ),
                    f"worker{k}.log",
                )
            )
        with Client(address, timeout="30s") as client:
            client.wait_for_workers(n_workers, timeout=READY_TIMEOUT_S)
    except BaseException:
        stop_cluster(procs)
        raise
    return address, procs


def _wait_for_file(path: Path, proc: subprocess.Popen) -> str:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"dask scheduler exited with {proc.returncode}")
        try:
            return str(json.loads(path.read_text())["address"])
        except (OSError, ValueError, KeyError):
            time.sleep(0.05)  # polling a file the scheduler writes once it listens
    raise TimeoutError(f"dask scheduler not ready after {READY_TIMEOUT_S:.0f}s")


def stop_cluster(procs: list[subprocess.Popen]) -> None:
    for p in reversed(procs):  # workers first, then the scheduler
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=10)

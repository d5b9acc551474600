"""`make dev` (`flux-depth dev`) stops on SIGTERM, with everything it started, as make runs it.

Make runs recipes from a non-interactive shell: in the background SIGINT arrives ignored, which
made plain `dagster dev` ignore SIGTERM too. The test starts `flux-depth dev` that way, waits
until the UI answers, sends one SIGTERM and expects the wrapper, dagster dev, its webserver,
daemon and code server all gone, and the port free.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import (
    REPO,
    DagsterDev,
    _free_port,
    _port_is_free,
    _wait_until_ready,
    _write_instance_yaml,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def _descendants(pid: int) -> set[int]:
    out: set[int] = set()
    todo = [pid]
    while todo:
        p = todo.pop()
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                kids = [int(k) for k in (task / "children").read_text().split()]
            except OSError:
                continue
            for k in kids:
                if k not in out:
                    out.add(k)
                    todo.append(k)
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_flux_depth_dev_stops_everything_on_one_sigterm(tmp_path):
    home = tmp_path / "dagster_home"
    _write_instance_yaml(home)
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "EACHLABS_"))}
    env.update(DAGSTER_HOME=str(home), FLUX_DEPTH_HOME=str(tmp_path / "fh"), PYTHONUNBUFFERED="1")
    log_path = tmp_path / "dev.log"
    cli = Path(sys.executable).with_name("flux-depth")

    # SIGINT ignored (it survives exec), as a non-interactive shell's `&` leaves it
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [
                    str(cli),
                    "dev",
                    "-w",
                    str(REPO / "workspace.yaml"),
                    "--host",
                    "127.0.0.1",
                    "-p",
                    str(port),
                ],
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
    finally:
        signal.signal(signal.SIGINT, previous)
    dev = DagsterDev(
        url=f"http://127.0.0.1:{port}",
        dagster_home=home,
        flux_depth_home=tmp_path / "fh",
        log_path=log_path,
        process=proc,
    )
    try:
        _wait_until_ready(dev)
        started = _descendants(proc.pid)
        assert len(started) >= 3, started  # dagster dev, webserver, daemon (+ code server)
        stopping = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
        print(f"flux-depth dev stopped in {time.monotonic() - stopping:.1f}s")
        assert code == 0, dev.log_tail()
        left = [p for p in started if _alive(p)]
        assert left == [], (left, dev.log_tail())
        assert _port_is_free(port)
    finally:
        if proc.poll() is None:
            proc.kill()
        for p in _descendants(proc.pid):
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass

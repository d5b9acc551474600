"""Fixtures for the browser tests: a real `dagster dev` in its own process group, and Chromium.

`dagster dev` maps SIGTERM to whatever SIGINT does; started from a non-interactive shell in the
background it inherits SIGINT ignored, so SIGTERM is ignored too and a SIGKILL orphans the
webserver, daemon and code server, which keep the port. Here it runs in a new session (its own
process group) with SIGINT's default restored, is stopped with SIGTERM to the leader (it then
shuts its children down, ~3 s), and the whole group is killed only if that does not happen.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("FLUX_DEPTH_CHROMIUM", "/usr/bin/chromium")
# The flags that work on these machines: as root (no sandbox), no GPU, and no background
# networking (the closed network refuses Chromium's own connections, many at a time).
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
READY_TIMEOUT_S = 120
STOP_TIMEOUT_S = 30

WORKSPACE_QUERY = """
{ workspaceOrError { __typename
    ... on Workspace { locationEntries { name loadStatus
        locationOrLoadError { __typename ... on PythonError { message } } } } } }
"""


def _require(message: str) -> None:
    """Skip, or fail where CI asked for the browser test to really run."""
    if os.environ.get("FLUX_DEPTH_REQUIRE_BROWSER") == "1":
        pytest.fail(message)
    pytest.skip(message)


@dataclass
class DagsterDev:
    url: str
    dagster_home: Path
    flux_depth_home: Path
    log_path: Path
    process: subprocess.Popen

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(
            f"{self.url}/graphql", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


LAPTOP_PROFILE = REPO / "deploy" / "local" / "dagster.yaml"


def _write_instance_yaml(dagster_home: Path) -> None:
    """The instance `make dev` uses (run queue, one run per catalog, hosted-API pool, telemetry
    off), without the first-visit tips; SQLite storage in the temp home."""
    dagster_home.mkdir(parents=True, exist_ok=True)
    profile = (
        LAPTOP_PROFILE.read_text()
        if LAPTOP_PROFILE.exists()
        else ("telemetry:\n  enabled: false\nconcurrency:\n  pools:\n    default_limit: 2\n")
    )
    (dagster_home / "dagster.yaml").write_text(profile + "\nnux:\n  enabled: false\n")


def _add_demo_partition(dagster_home: Path) -> None:
    """The registry sensor would add it on its first tick; adding it here makes the test
    independent of the daemon's timing."""
    import dagster as dg

    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        instance.add_dynamic_partitions("catalog", ["demo"])


def _wait_until_ready(dev: DagsterDev) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    last = "no answer yet"
    while time.monotonic() < deadline:
        if dev.process.poll() is not None:
            raise RuntimeError(
                f"dagster dev exited with {dev.process.returncode}:\n{dev.log_tail()}"
            )
        try:
            entries = dev.graphql(WORKSPACE_QUERY)["data"]["workspaceOrError"]["locationEntries"]
            states = {e["name"]: (e["loadStatus"], e["locationOrLoadError"]) for e in entries}
            status, location = states.get("flux_depth_assets", (None, None))
            if status == "LOADED" and location and location["__typename"] == "RepositoryLocation":
                return
            if status == "LOADED" and location:
                raise RuntimeError(f"code location failed to load: {location.get('message')}")
            last = f"location status {status}"
        except (urllib.error.URLError, ConnectionError, OSError, KeyError, TypeError) as exc:
            last = repr(exc)
        time.sleep(0.5)
    raise RuntimeError(
        f"dagster dev not ready after {READY_TIMEOUT_S}s ({last}):\n{dev.log_tail()}"
    )


def stop_process_group(process: subprocess.Popen, timeout: float = STOP_TIMEOUT_S) -> list[str]:
    """SIGTERM the leader, wait; then SIGTERM/SIGKILL the group. Returns what had to be forced."""
    forced: list[str] = []
    pgid = process.pid  # start_new_session=True: the leader's pid is the group id
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            forced.append("leader ignored SIGTERM")
    for sig, wait_s in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)
        else:
            forced.append(f"group still alive, sent {sig.name}")
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                pass
            continue
        break
    if process.poll() is None:
        process.wait(timeout=5)
    return forced


@contextmanager
def run_dagster_dev(base: Path, add_demo_partition: bool = True):
    dagster_home = base / "dagster_home"
    flux_depth_home = base / "flux_depth_home"
    _write_instance_yaml(dagster_home)
    if add_demo_partition:
        _add_demo_partition(dagster_home)
    port = _free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("EACHLABS_", "FLUX_DEPTH_CONFIG_DIR", "DAGSTER_"))
    }
    env.update(
        DAGSTER_HOME=str(dagster_home), FLUX_DEPTH_HOME=str(flux_depth_home), PYTHONUNBUFFERED="1"
    )
    log_path = base / "dagster_dev.log"
    dagster = Path(sys.executable).with_name("dagster")
    command = [
        str(dagster),
        "dev",
        "-w",
        str(REPO / "workspace.yaml"),
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
    ]
    # A Python-level handler becomes SIG_DFL across exec, where an inherited SIG_IGN would stay
    # (and make dagster dev ignore SIGTERM as well).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                command,
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
    finally:
        signal.signal(signal.SIGINT, previous)
    dev = DagsterDev(
        url=f"http://127.0.0.1:{port}",
        dagster_home=dagster_home,
        flux_depth_home=flux_depth_home,
        log_path=log_path,
        process=process,
    )
    started = time.monotonic()
    try:
        _wait_until_ready(dev)
        print(
            f"dagster dev ready at {dev.url} after {time.monotonic() - started:.1f}s "
            f"(log: {log_path})"
        )
        yield dev
    finally:
        stopping = time.monotonic()
        forced = stop_process_group(process)
        print(
            f"dagster dev stopped in {time.monotonic() - stopping:.1f}s"
            + (f" ({'; '.join(forced)})" if forced else " (clean SIGTERM)")
        )
        assert _port_is_free(port), f"port {port} still answers after stopping dagster dev"


@pytest.fixture
def dagster_dev(tmp_path):
    with run_dagster_dev(tmp_path) as dev:
        yield dev


@pytest.fixture
def dagster_dev_sensor_only(tmp_path):
    """dagster dev with no partition added: catalog_registry_sensor must add it."""
    with run_dagster_dev(tmp_path, add_demo_partition=False) as dev:
        yield dev


@pytest.fixture
def browser():
    """Per test: Playwright's sync API runs an asyncio loop on this thread while it is open, and
    any later test calling asyncio.run() in the same session would fail if it stayed open."""
    if not Path(CHROMIUM).exists():
        _require(f"Chromium not found at {CHROMIUM} (apt-get install -y chromium chromium-driver)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _require("playwright is not installed (pip install -e '.[dev]')")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser, tmp_path, request):
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    yield page
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        path = tmp_path / "screenshots" / "failure.png"
        path.parent.mkdir(exist_ok=True)
        page.screenshot(path=str(path), full_page=True)
        print(f"failure screenshot: {path}")
    context.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)

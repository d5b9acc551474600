"""`flux-depth` sub-commands that start processes."""

from __future__ import annotations

import socket
import subprocess
import time

import httpx
import pytest

from tests.conftest import REPO


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_fake_api_command_takes_its_options_and_serves_the_protocol():
    port = free_port()
    proc = subprocess.Popen([str(REPO / ".venv/bin/flux-depth"), "fake-api", "--port", str(port),
                             "--latency", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                stats = httpx.get(f"http://127.0.0.1:{port}/stats", timeout=1).json()
                break
            except httpx.HTTPError:
                assert proc.poll() is None, proc.stderr.read()
                time.sleep(0.2)
        else:
            pytest.fail("fake-api did not answer on its --port")
        assert stats["creates"] == 0
        answer = httpx.post(f"http://127.0.0.1:{port}/v1/prediction/", json={"model": "flux-depth-pro"})
        assert answer.status_code == 401  # the key header is required, as on the host
    finally:
        proc.terminate()
        proc.wait(timeout=10)

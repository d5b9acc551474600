"""`flux-depth` sub-commands that start processes."""

from __future__ import annotations

import subprocess

import httpx
import pytest

from flux_depth_assets.fakeapi.runner import _read_ready_line
from tests.commands import console_script, subprocess_env


@pytest.mark.slow
def test_fake_api_command_takes_its_options_and_serves_the_protocol():
    # --port 0: the OS picks a free port; the ready line says which (no polling, no port race)
    proc = subprocess.Popen(
        [console_script("flux-depth"), "fake-api", "--port", "0", "--latency", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=subprocess_env(),
    )
    try:
        url = _read_ready_line(proc, timeout_s=60)
        stats = httpx.get(f"{url}/stats", timeout=10).json()
        assert stats["creates"] == 0
        answer = httpx.post(f"{url}/v1/prediction/", json={"model": "flux-depth-pro"}, timeout=10)
        assert answer.status_code == 401  # the key header is required, as on the host
    finally:
        proc.terminate()
        proc.wait(timeout=10)

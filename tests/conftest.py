"""Shared fixtures: hermetic storage roots, the repo's demo catalog, and the optional ../shared data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ["tests.moto_s3"]  # the `moto_endpoint` and `s3_env` fixtures

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("FLUX_DEPTH_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path, monkeypatch):
    """Every test writes under its own tmp dir and never sees a developer's real key or home."""
    monkeypatch.setenv("FLUX_DEPTH_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("EACHLABS_API_KEY", raising=False)
    monkeypatch.delenv("EACHLABS_BASE_URL", raising=False)
    monkeypatch.delenv("FLUX_DEPTH_CONFIG_DIR", raising=False)


@pytest.fixture
def demo_dir() -> Path:
    return REPO / "examples" / "demo_catalog"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """`../shared/data` (photos and ground-truth scenes); skips when it is not beside the repo."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA} (set FLUX_DEPTH_SHARED_DATA)")
    return SHARED_DATA

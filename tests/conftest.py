"""Shared fixtures: hermetic storage roots, the repo's demo catalog, and the optional ../shared data."""

from __future__ import annotations

import os
import shutil
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


@pytest.fixture(scope="session")
def shop_run(tmp_path_factory) -> Path:
    """The storage root of one finished run (every asset, every check passing) of the `shop`
    catalog over 3 demo photos; tests take a copy (`shop_store`) before changing anything."""
    import dagster as dg

    from flux_depth_assets.defs.runner import materialize_catalog
    from tests.catalogs import shop_catalog

    base = tmp_path_factory.mktemp("shop_run")
    demo = sorted((REPO / "examples" / "demo_catalog").iterdir())
    cfg = shop_catalog(base, {p.name: p.read_bytes() for p in demo[:3]})
    mp = pytest.MonkeyPatch()
    mp.setenv("FLUX_DEPTH_HOME", str(base / "home"))
    try:
        outcome = materialize_catalog(
            "shop", config_dir=cfg, instance=dg.DagsterInstance.ephemeral(), log_level="WARNING"
        )
    finally:
        mp.undo()
    assert outcome.success, outcome.error
    assert all(ok for _, ok, _ in outcome.checks), [c for c in outcome.checks if not c[1]]
    return base / "home"


@pytest.fixture
def shop_store(shop_run, tmp_path):
    """A private copy of `shop_run`'s storage root."""
    from flux_depth_assets.storage.store import Storage

    shutil.copytree(shop_run, tmp_path / "copy")
    return Storage(str(tmp_path / "copy"))

"""The shared cache keeps what was paid for; the free `local` estimator's maps stay out of it (a
4 MB float32 file per 1 MP image, to save a ~50 ms recompute), unless a price is set for it."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from flux_depth_assets.defs.resources import ComputeResource, StorageResource
from flux_depth_assets.defs.runner import materialize_catalog
from flux_depth_assets.storage.store import Storage
from tests import images
from tests.catalogs import shop_catalog


def _depth_run(tmp_path: Path, extra: str, workers: int) -> Storage:
    files = {f"p{i}.jpg": images.encode(images.photo(120, 90, seed=i), "JPEG") for i in range(3)}
    cfg = shop_catalog(tmp_path, files, extra)
    out = materialize_catalog(
        "shop",
        assets=["source_images", "depth_maps"],
        config_dir=cfg,
        resources={
            "storage": StorageResource(root=str(tmp_path / "home")),
            "compute": ComputeResource(workers=workers, min_pool_tasks=1),
        },
        instance=dg.DagsterInstance.ephemeral(),
        log_level="WARNING",
    )
    assert out.success, out.error
    store = Storage(str(tmp_path / "home"))
    rows = store.partition_dicts("depth_maps", "shop") or []
    assert [r["status"] for r in rows] == ["succeeded"] * 3
    return store


def _cached(store: Storage) -> list[str]:
    return sorted(rel for rel in store.files_under("cache/depth") if rel.endswith(".npy"))


@pytest.mark.parametrize("workers", [1, 2])
def test_the_free_estimator_writes_no_cache_entries(tmp_path, workers):
    store = _depth_run(tmp_path, "", workers)
    assert _cached(store) == []


def test_a_priced_local_estimator_keeps_every_result(tmp_path):
    extra = "    provider: {name: local, price_usd: 0.01}\n"
    store = _depth_run(tmp_path, extra, workers=2)
    assert len(_cached(store)) == 3

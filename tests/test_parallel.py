"""The work pool: order, bounded in-flight work, and the same outputs on 1 worker, on every local
core, and on a real Dask deployment (scheduler + 2 worker processes over loopback TCP)."""

from __future__ import annotations

import ctypes
import hashlib
import os
import resource
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest

from flux_depth_assets.defs.resources import ComputeResource, StorageResource
from flux_depth_assets.defs.runner import materialize_catalog
from flux_depth_assets.pipeline.parallel import PoolConfig, _chunked, map_ordered
from tests import images
from tests.catalogs import shop_catalog

ASSETS = ["source_images", "depth_maps", "normal_maps", "parallax_sprites", "depth_stats"]
#: columns that differ between any two runs: clocks and ids of the run
VOLATILE = {
    "scanned_at",
    "materialized_at",
    "started_at",
    "finished_at",
    "seconds",
    "run_id",
    "latency_s",
}


def test_results_come_back_in_task_order_from_a_process_pool():
    config = PoolConfig(workers=2, chunk_size=3, min_tasks=1)
    assert list(map_ordered(abs, range(-40, 0), total=40, config=config)) == list(range(40, 0, -1))


def test_tasks_are_pulled_only_as_fast_as_results_are_taken():
    """Memory stays flat: the pool never reads the whole task list ahead of its consumer."""
    pulled = 0

    def tasks():
        nonlocal pulled
        for i in range(1000):
            pulled += 1
            yield -i

    config = PoolConfig(workers=2, chunk_size=4, in_flight_per_worker=2, min_tasks=1)
    results = map_ordered(abs, tasks(), total=1000, config=config)
    first = next(results)
    assert first == 0
    # 2 workers × 2 chunks × 4 tasks in flight, plus the chunk being assembled
    assert pulled <= 2 * 2 * 4 + 4
    results.close()


def test_the_last_chunks_are_small_so_the_workers_finish_together():
    chunks = list(_chunked(iter(range(200)), 8, 200, 2))
    assert [t for c in chunks for t in c] == list(range(200))  # every task once, in order
    sizes = [len(c) for c in chunks]
    assert sizes[0] == 8
    assert sizes[-4:] == [1, 1, 1, 1]  # each of 2 workers' last 2 chunks: one task
    assert sizes == sorted(sizes, reverse=True)


def test_few_tasks_or_one_worker_run_in_this_process():
    seen: list[int] = []
    fn = seen.append  # not picklable: would fail on a pool, so this proves it ran here
    list(map_ordered(fn, range(5), total=5, config=PoolConfig(workers=4, min_tasks=16)))
    list(map_ordered(fn, range(40), total=40, config=PoolConfig(workers=1, min_tasks=1)))
    assert seen == list(range(5)) + list(range(40))


def worker_pid(_task: object) -> int:
    return os.getpid()


def test_a_map_of_four_images_goes_to_the_pool_by_default():
    """A re-run with a handful of new uploads uses every core (below 16 it ran on one)."""
    pids = list(map_ordered(worker_pid, range(4), total=4, config=PoolConfig(workers=2)))
    assert os.getpid() not in pids
    three = list(map_ordered(worker_pid, range(3), total=3, config=PoolConfig(workers=2)))
    assert set(three) == {os.getpid()}


def environment_variable(name: str) -> str | None:
    return os.environ.get(name)


def test_pool_workers_see_the_callers_environment_as_it_is_now(monkeypatch):
    """Workers fork from a server started with the first pool: a variable set after that (a
    credential, say) must still reach them."""
    config = PoolConfig(workers=2, chunk_size=1, min_tasks=1)
    list(map_ordered(abs, range(4), total=4, config=config))  # the server runs from here on
    monkeypatch.setenv("FLUX_DEPTH_TEST_LATE", "set after the server started")
    monkeypatch.delenv("FLUX_DEPTH_HOME")  # and one removed since
    names = ["FLUX_DEPTH_TEST_LATE", "FLUX_DEPTH_HOME"] * 2
    seen = list(map_ordered(environment_variable, names, total=4, config=config))
    assert seen == ["set after the server started", None] * 2


def test_progress_is_reported_in_the_callers_process_about_every_5_percent():
    calls: list[tuple[int, int]] = []
    config = PoolConfig(workers=2, chunk_size=5, min_tasks=1)
    list(
        map_ordered(
            abs, range(400), total=400, config=config, progress=lambda d, t: calls.append((d, t))
        )
    )
    assert calls[-1] == (400, 400)
    assert [d for d, _ in calls] == list(range(20, 401, 20))  # 20 lines, not one per task


def native_threads(_task: object) -> tuple[int, int]:
    """(OpenCV threads, largest BLAS/OpenMP pool) where a task runs."""
    import cv2
    from threadpoolctl import threadpool_info

    return cv2.getNumThreads(), max((p["num_threads"] for p in threadpool_info()), default=1)


@pytest.mark.parametrize("workers", [1, 2])
def test_native_libraries_run_one_thread_per_worker_and_are_restored(workers):
    before = native_threads(None)
    config = PoolConfig(workers=workers, chunk_size=1, min_tasks=1)
    seen = set(map_ordered(native_threads, range(4), total=4, config=config))
    assert seen == {(1, 1)}
    assert native_threads(None) == before  # this process's own settings are back


def faults_of_a_second_image(_task: object = None) -> int:
    """Minor page faults of allocating and filling an image-sized working set (ten 4 MB arrays)
    where the same set was just allocated and freed: ~0 when the process keeps freed memory."""
    import numpy as np

    def image() -> None:
        arrays = [np.ones((1024, 1024), np.float32) for _ in range(10)]
        del arrays

    image()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    image()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def _glibc() -> bool:
    return hasattr(ctypes.CDLL(None), "mallopt")


_PROBE = """
from tests.test_parallel import faults_of_a_second_image as f
from flux_depth_assets.pipeline.parallel import PoolConfig, map_ordered

def on(workers):
    config = PoolConfig(workers=workers, chunk_size=1, min_tasks=1)
    return max(map_ordered(f, range(2), total=2, config=config))

if __name__ == "__main__":
    print(f(), on(1), on(2))  # plain first: the in-process run then changes this process
"""


@pytest.mark.skipif(not _glibc(), reason="not glibc: the allocator is left as it is")
def test_per_image_work_reuses_the_previous_images_memory():
    """In a fresh interpreter: as it starts (the check's bad case), then as per-image work in
    that process (workers=1) and on a pool of 2."""
    out = subprocess.run(
        [sys.executable, "-c", _PROBE],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    plain, one, pool = map(int, out.stdout.split())
    assert plain > 2000  # 40 MB of fresh pages: the probe sees what the setting removes
    assert one < 256
    assert pool < 256


# --------------------------------------------------------------------------- whole runs


def _catalog(tmp_path: Path, n: int = 12) -> Path:
    files = {
        f"p{i}.jpg": images.encode(images.photo(160, 120, seed=i), "JPEG", quality=90)
        for i in range(n)
    }
    files["broken.jpg"] = images.truncated_jpeg()
    files["dup.jpg"] = files["p0.jpg"]
    return shop_catalog(tmp_path, files)


def _run(cfg: Path, home: Path, compute: ComputeResource) -> None:
    out = materialize_catalog(
        "shop",
        config_dir=cfg,
        instance=dg.DagsterInstance.ephemeral(),
        resources={"storage": StorageResource(root=str(home)), "compute": compute},
    )
    assert out.success, out.error
    assert set(ASSETS) <= set(out.materialized)


def _snapshot(home: Path) -> tuple[dict[str, list[dict]], dict[str, str]]:
    """Tables without volatile columns, and every output file's sha256 (by relative path)."""
    tables = {}
    for asset in ASSETS:
        t = pq.read_table(home / "tables" / asset / "catalog=shop" / "part-0.parquet")
        tables[asset] = t.drop_columns([c for c in t.column_names if c in VOLATILE]).to_pylist()
    files = {
        str(p.relative_to(home)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((home / "catalogs").rglob("*"))
        if p.is_file()
    }
    return tables, files


@pytest.fixture(scope="module")
def serial_snapshot(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serial")
    cfg = _catalog(tmp)
    _run(cfg, tmp / "home", ComputeResource(workers=1))
    return cfg, _snapshot(tmp / "home")


def test_all_local_cores_give_the_same_tables_and_files_as_one_worker(tmp_path, serial_snapshot):
    cfg, (tables, files) = serial_snapshot
    _run(cfg, tmp_path / "home", ComputeResource(workers=2, chunk_size=2, min_pool_tasks=1))
    got_tables, got_files = _snapshot(tmp_path / "home")
    assert got_files == files
    assert got_tables == tables
    statuses = [r["status"] for r in tables["source_images"]]
    assert statuses.count("accepted") == 12 and "rejected" in statuses and "duplicate" in statuses


@pytest.fixture(scope="module")
def dask_cluster():
    pytest.importorskip("distributed")
    from tests.dask_cluster import start_cluster, stop_cluster

    address, procs = start_cluster(2)
    try:
        yield address, procs
    finally:
        stop_cluster(procs)


def test_a_dask_cluster_gives_the_same_tables_and_files_as_one_worker(
    tmp_path, serial_snapshot, dask_cluster
):
    address, procs = dask_cluster
    cfg, (tables, files) = serial_snapshot
    _run(cfg, tmp_path / "home", ComputeResource(dask_scheduler=address, chunk_size=2))
    got_tables, got_files = _snapshot(tmp_path / "home")
    assert got_files == files
    assert got_tables == tables
    assert all(p.poll() is None for p in procs)  # the deployment is still up: it did the work


def test_the_dask_scheduler_comes_from_the_environment(
    monkeypatch, tmp_path, serial_snapshot, dask_cluster
):
    address, _ = dask_cluster
    monkeypatch.setenv("FLUX_DEPTH_DASK_SCHEDULER", address)
    assert ComputeResource().pool().dask_scheduler == address
    cfg, (tables, _files) = serial_snapshot
    _run(cfg, tmp_path / "home", ComputeResource(chunk_size=4))
    assert _snapshot(tmp_path / "home")[0] == tables


def test_an_unreachable_scheduler_fails_the_run_with_its_address(tmp_path, serial_snapshot):
    pytest.importorskip("distributed")
    cfg, _ = serial_snapshot
    out = materialize_catalog(
        "shop",
        config_dir=cfg,
        instance=dg.DagsterInstance.ephemeral(),
        resources={
            "storage": StorageResource(root=str(tmp_path / "home")),
            "compute": ComputeResource(dask_scheduler="tcp://127.0.0.1:9"),
        },
    )
    assert not out.success
    assert "127.0.0.1:9" in (out.error or "")


def test_hosted_depth_with_a_dask_cluster_pays_each_image_once(tmp_path, dask_cluster):
    """Hosted calls stay in the run's process (journal, lease, cache in the storage root); the
    cluster makes the derived assets. Each image is paid once, and a re-run pays nothing."""
    from flux_depth_assets.defs.resources import DepthProviderResource
    from flux_depth_assets.fakeapi import running_fake_api

    address, _ = dask_cluster
    cfg = shop_catalog(
        tmp_path,
        6,
        extra="    provider: {name: eachlabs, poll_interval_s: 0.05, max_concurrency: 3}\n",
    )
    home = tmp_path / "root"
    with running_fake_api(latency_s=0.05) as server:
        for _ in range(2):
            out = materialize_catalog(
                "shop",
                config_dir=cfg,
                instance=dg.DagsterInstance.ephemeral(),
                resources={
                    "storage": StorageResource(root=str(home)),
                    "compute": ComputeResource(dask_scheduler=address, chunk_size=2),
                    "depth_provider": DepthProviderResource(
                        eachlabs_api_key="test-key-1", eachlabs_base_url=server.base_url
                    ),
                },
            )
            assert out.success, out.error
            assert server.stats()["creates"] == 6
    rows = pq.read_table(home / "tables/parallax_sprites/catalog=shop/part-0.parquet").to_pylist()
    assert len(rows) == 6 and {r["status"] for r in rows} == {"cached"}


def test_onnx_depth_on_the_pool_matches_one_worker(tmp_path):
    """`onnx` depth maps are made on pool workers (the provider rebuilt there from its config)."""
    pytest.importorskip("onnx")
    from tests.test_onnx_provider import save_model

    model = save_model(tmp_path / "red.onnx", ["batch", 3, "height", "width"], "red")
    files = {f"p{i}.jpg": images.encode(images.photo(64, 48, seed=i), "JPEG") for i in range(6)}
    cfg = shop_catalog(
        tmp_path, files, extra=f"    provider: {{name: onnx, model_path: {model}}}\n"
    )
    from flux_depth_assets.pipeline.depth_pool import _provider

    snapshots, built_here = [], []
    for name, compute in [
        ("one", ComputeResource(workers=1)),
        ("pool", ComputeResource(workers=2, chunk_size=1, min_pool_tasks=1)),
    ]:
        home = tmp_path / name
        _provider.cache_clear()
        out = materialize_catalog(
            "shop",
            assets=["source_images", "depth_maps"],
            config_dir=cfg,
            instance=dg.DagsterInstance.ephemeral(),
            resources={"storage": StorageResource(root=str(home)), "compute": compute},
        )
        assert out.success, out.error
        table = pq.read_table(home / "tables/depth_maps/catalog=shop/part-0.parquet")
        rows = table.drop_columns([c for c in table.column_names if c in VOLATILE]).to_pylist()
        assert {r["provider"] for r in rows} == {"onnx"} and len(rows) == 6
        depth = {p.name: p.read_bytes() for p in (home / "catalogs/shop/depth_maps").iterdir()}
        snapshots.append((rows, depth))
        built_here.append(_provider.cache_info().currsize)
    assert snapshots[0] == snapshots[1]
    assert built_here == [1, 0]  # the pool's provider was built in the workers, not here

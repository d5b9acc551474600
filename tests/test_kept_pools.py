"""Pools kept for a run: the next map reuses the warm workers, a map that breaks its pool does not
break the next one, and the workers stop when the run's resources are torn down."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import dagster as dg
import pytest

from flux_depth_assets.defs.resources import ComputeResource, StorageResource
from flux_depth_assets.defs.runner import materialize_catalog
from flux_depth_assets.pipeline import parallel
from flux_depth_assets.pipeline.parallel import PoolConfig, kept_pools, map_ordered
from tests import images
from tests.catalogs import shop_catalog

CONFIG = PoolConfig(workers=2, chunk_size=1, min_tasks=1)


def worker_pid(_task: object) -> int:
    return os.getpid()


def die(_task: object) -> None:
    os._exit(3)  # a worker killed mid-task (OOM killer, segfault in a native library)


def environment_variable(name: str) -> str | None:
    return os.environ.get(name)


def _pids(n: int = 8) -> set[int]:
    return set(map_ordered(worker_pid, range(n), total=n, config=CONFIG))


def _stopped(pid: int) -> bool:
    """Gone, or exited and not yet reaped by its parent (the forkserver)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in "ZX"
    except OSError:
        return True


def test_maps_in_a_kept_block_reuse_the_workers_and_the_workers_stop_with_the_block():
    with kept_pools():
        first = _pids()
        second = _pids()
        assert os.getpid() not in first
        assert first & second  # the second map ran on workers the first one started
        with kept_pools():  # a nested block (a resource inside a run) shares them
            assert _pids() & (first | second)
        assert parallel._KEPT.pools  # the nested block did not stop them
    assert not parallel._KEPT.pools
    assert all(_stopped(pid) for pid in first | second)
    assert _pids().isdisjoint(first | second)  # outside a block each map starts its own


def test_runs_in_two_threads_share_the_pools_until_the_last_one_ends():
    first_done, results = threading.Event(), {}

    def first_run() -> None:
        with kept_pools():
            results["first"] = _pids()
        first_done.set()

    with kept_pools():
        thread = threading.Thread(target=first_run)
        thread.start()
        thread.join()
        assert first_done.is_set() and parallel._KEPT.pools  # still open for this run
        assert _pids() & results["first"]  # the other run's workers, still running
    assert not parallel._KEPT.pools


def test_a_worker_that_dies_fails_its_map_and_the_next_map_gets_a_new_pool():
    with kept_pools():
        before = _pids()
        with pytest.raises(BrokenProcessPool):
            list(map_ordered(die, range(4), total=4, config=CONFIG))
        after = _pids()
    assert after and after.isdisjoint(before)


def test_kept_workers_see_the_callers_environment_as_it_is_at_each_map(monkeypatch):
    with kept_pools():
        _pids()  # the workers start before the variable is set
        monkeypatch.setenv("FLUX_DEPTH_TEST_LATE", "set after the workers started")
        names = ["FLUX_DEPTH_TEST_LATE"] * 4
        seen = set(map_ordered(environment_variable, names, total=4, config=CONFIG))
    assert seen == {"set after the workers started"}


def test_a_run_starts_one_pool_for_all_its_assets_and_checks_and_stops_it(tmp_path, monkeypatch):
    started: list[int] = []
    new_pool = parallel._new_pool

    def counting(workers: int) -> ProcessPoolExecutor:
        started.append(workers)
        return new_pool(workers)

    monkeypatch.setattr(parallel, "_new_pool", counting)
    files = {f"p{i}.jpg": images.encode(images.photo(80, 60, seed=i), "JPEG") for i in range(6)}
    out = materialize_catalog(
        "shop",
        config_dir=shop_catalog(tmp_path, files),
        instance=dg.DagsterInstance.ephemeral(),
        resources={
            "storage": StorageResource(root=str(tmp_path / "home")),
            "compute": ComputeResource(workers=2, chunk_size=1, min_pool_tasks=1),
        },
    )
    assert out.success, out.error
    assert {"source_images", "depth_maps", "parallax_sprites"} <= set(out.materialized)
    assert started == [2]  # every map of the run, assets and checks, on the first pool
    assert not parallel._KEPT.pools  # stopped with the run's resources

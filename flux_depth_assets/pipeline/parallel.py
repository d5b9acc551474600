"""One work pool for per-image CPU work: in-process, every local core, or a Dask cluster.

Callers hand over a module-level, pure function `fn(task) -> result` and the tasks; results come
back **in task order**, so a run's tables do not depend on how many workers made them
(`workers=1` and all cores give the same bytes). Memory stays flat in catalog size: tasks are
pulled from the caller's iterable only when a slot frees up, at most `max_in_flight` chunks are
queued, and each result is handed back (and can be dropped) as soon as its turn comes.

- `workers=1`, or too few tasks to be worth a pool: a plain loop in this process.
- default: a process pool over every core this process may use (forkserver children, so no
  thread of the parent, e.g. Dagster's, is duplicated half-way through a lock); inside a
  `kept_pools` block (a run's `compute` resource opens one) the pool serves every map.
- `dask_scheduler="tcp://host:8786"`: chunks go to that Dask `distributed` cluster. Workers need
  this package installed and the storage root reachable (S3, or a shared folder).

`fn` and the tasks must pickle: `fn` by reference (module-level), tasks by value (small: ids,
paths, settings; never image arrays).
"""

from __future__ import annotations

import ctypes
import functools
import multiprocessing
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")
K = TypeVar("K")

WORKERS_ENV = "FLUX_DEPTH_WORKERS"
PROGRESS_STEPS = 20  # progress lines per map (about every 5 %)
DASK_ENV = "FLUX_DEPTH_DASK_SCHEDULER"

#: modules the forkserver imports once, so each pool worker starts warm
_PRELOAD = [
    "flux_depth_assets.pipeline.scan",
    "flux_depth_assets.pipeline.depth_run",
    "flux_depth_assets.pipeline.derived_specs",
]


#: fewer tasks run in the caller's process. A pool's start-up costs ~0.75 s for the first of a
#: process (the forkserver imports the pipeline), ~0.05-0.3 s after; four images of the costlier
#: assets repay it: measured, a re-run with 10 new photos of 200 took 5.7 s instead of 6.9 s
#: (threshold 16, every asset on one core)
MIN_POOL_TASKS = 4


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, not the machine's total)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class PoolConfig:
    """How per-image work runs. The default uses every local core."""

    workers: int | None = None  # None or 0: every core; 1: in this process
    dask_scheduler: str | None = None  # e.g. tcp://scheduler:8786 → that cluster
    chunk_size: int = 8  # tasks per unit of work sent to a worker (upper bound)
    in_flight_per_worker: int = 2  # chunks queued per worker: bounds memory, keeps workers fed
    min_tasks: int = MIN_POOL_TASKS

    @classmethod
    def from_env(cls) -> PoolConfig:
        raw = os.environ.get(WORKERS_ENV, "").strip()
        return cls(
            workers=int(raw) if raw else None,
            dask_scheduler=os.environ.get(DASK_ENV, "").strip() or None,
        )

    def resolved_workers(self) -> int:
        return self.workers if self.workers and self.workers > 0 else available_cores()

    def describe(self) -> str:
        if self.dask_scheduler:
            return f"dask cluster at {self.dask_scheduler}"
        n = self.resolved_workers()
        return "in-process (1 worker)" if n == 1 else f"{n} local worker processes"


class WorkPoolUnavailable(RuntimeError):
    """The configured engine cannot be reached; nothing was computed."""


@contextmanager
def one_thread_per_worker() -> Iterator[None]:
    """Native libraries on one thread while per-image work runs: the pool already has a worker
    per core, and OpenBLAS's and OpenCV's own threads only spin against it (measured: the
    normal maps cost 160 CPU-ms per 1 MP image with their threads, 65 without, for the same
    wall time on one worker). Restored afterwards."""
    import cv2  # the depth modules load it anyway

    before = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        with _native_pools().limit(limits=1):
            yield
    finally:
        cv2.setNumThreads(before)


@functools.cache
def _native_pools() -> Any:
    """threadpoolctl's view of the loaded BLAS/OpenMP libraries, taken once per process: taking
    it walks every loaded shared library (0.6 ms), which the in-process loop paid per image per
    asset. numpy's and OpenCV's libraries are loaded before the first per-image task runs."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


#: glibc's mallopt parameters, and what per-image work sets them to: arrays up to glibc's largest
#: heap allocation (32 MB) come from the heap, and up to 64 MB of freed heap stays with the process
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
HEAP_ARRAYS_UP_TO = 32 << 20
KEEP_FREED = 64 << 20


@functools.cache
def keep_image_buffers() -> bool:
    """Let a process reuse the memory of one image's arrays for the next (glibc only; False where
    `mallopt` is missing or refuses). glibc's adaptive defaults keep at most about two large
    arrays' worth of freed heap and give the rest back to the kernel, so each image's few dozen
    4-12 MB arrays were page-faulted and zero-filled again: measured, 5-7 % of a run's CPU
    (whole job, N=200, every core), for 16-44 MB more peak memory.
    Taken once per process; it stays for the process's life (bounded by `KEEP_FREED`)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (macOS, Windows)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, HEAP_ARRAYS_UP_TO)) and bool(
        mallopt(_M_TRIM_THRESHOLD, KEEP_FREED)
    )


def _adopt_environment(env: dict[str, str]) -> None:
    """A pool worker's environment is its caller's as it is now. Workers fork from the forkserver,
    which kept the environment of when it started (credentials set since, AWS_* say, were
    missing), and a kept pool's workers outlive the map that started them."""
    if os.environ != env:
        os.environ.clear()
        os.environ.update(env)


def _run_chunk(fn: Callable[[T], R], chunk: list[T], env: dict[str, str] | None = None) -> list[R]:
    """One chunk on a worker; `env`: the caller's environment (local pools only: a Dask worker
    keeps its own)."""
    if env is not None:
        _adopt_environment(env)
    keep_image_buffers()
    with one_thread_per_worker():
        return [fn(task) for task in chunk]


def _in_process(fn: Callable[[T], R], tasks: Iterable[T]) -> Iterator[R]:
    keep_image_buffers()
    for task in tasks:  # the limit is held per task: the caller's code between runs is unaffected
        with one_thread_per_worker():
            result = fn(task)
        yield result


def _chunked(tasks: Iterable[T], size: int, total: int, workers: int) -> Iterator[list[T]]:
    """Chunks of `size` tasks, smaller toward the end (about what is left / 2 per worker), so the
    workers finish together: with chunks of 8 sprite sets, one worker sat idle for up to 1.4 s
    at the end of each asset while the other finished its last chunk."""
    left = total

    def want() -> int:
        return max(1, min(size, left // (2 * workers)))

    chunk: list[T] = []
    n = want()
    for task in tasks:
        chunk.append(task)
        if len(chunk) == n:
            yield chunk
            left -= n
            chunk = []
            n = want()
    if chunk:
        yield chunk


def _chunk_size(config: PoolConfig, total: int, workers: int) -> int:
    """Small enough that every worker gets several chunks (balance), at most `chunk_size`."""
    return max(1, min(config.chunk_size, total // (workers * 4) or 1))


def _ordered(
    submit: Callable[[list[T]], Any],
    result: Callable[[Any], list[R]],
    chunks: Iterator[list[T]],
    window: int,
) -> Iterator[R]:
    """Keep `window` chunks in flight; yield results in chunk order."""
    pending: deque[Any] = deque()
    try:
        for chunk in chunks:
            pending.append(submit(chunk))
            if len(pending) >= window:
                yield from result(pending.popleft())
        while pending:
            yield from result(pending.popleft())
    finally:  # a map abandoned half-way (its consumer failed) leaves a kept pool no work
        for future in pending:
            future.cancel()


def map_ordered(
    fn: Callable[[T], R],
    tasks: Iterable[T],
    *,
    total: int,
    config: PoolConfig | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Iterator[R]:
    """`fn(task)` for every task, results in task order, on the configured workers.

    `total` is the number of tasks (to size chunks and report progress); `progress(done, total)`
    is called in the caller's process (so it can log to the run) about every 5 % of the tasks.
    """
    config = config or PoolConfig.from_env()
    if total <= 0:
        return
    step = max(1, total // PROGRESS_STEPS)
    for done, result in enumerate(_results(fn, tasks, total, config), 1):
        yield result
        if progress and (done == total or done % step == 0):
            progress(done, total)


def map_images(
    fn: Callable[[T], R],
    tasks: Iterable[T],
    keys: Sequence[K],
    *,
    pool: PoolConfig | None,
    log: Callable[[str], None],
    label: str,
) -> Iterator[tuple[K, R]]:
    """`map_ordered` over one task per image, each result paired with its task's key (`keys` in
    task order), progress logged to the run as `<label>: done/total image(s) done`."""
    results = map_ordered(
        fn,
        tasks,
        total=len(keys),
        config=pool,
        progress=lambda done, total: log(f"{label}: {done}/{total} image(s) done"),
    )
    return zip(keys, results)


def _results(
    fn: Callable[[T], R], tasks: Iterable[T], total: int, config: PoolConfig
) -> Iterator[R]:
    if config.dask_scheduler:
        yield from _dask_map(fn, tasks, total, config)
        return
    workers = min(config.resolved_workers(), total)
    if workers <= 1 or total < config.min_tasks:
        yield from _in_process(fn, tasks)
        return
    size = _chunk_size(config, total, workers)
    with _local_pool(workers) as pool:
        env = dict(os.environ)

        def submit(chunk: list[T]) -> Future[list[R]]:
            return pool.submit(_run_chunk, fn, chunk, env)

        window = workers * config.in_flight_per_worker
        yield from _ordered(
            submit, lambda f: f.result(), _chunked(tasks, size, total, workers), window
        )


def _new_pool(workers: int) -> ProcessPoolExecutor:
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(_PRELOAD)
    return ProcessPoolExecutor(max_workers=workers, mp_context=ctx)


class _KeptPools:
    """This process's pools kept across maps (by size), while at least one `kept_pools` block
    is open in it. A forked child inherits a copy: the pid tells it the pools are not its own."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pid = 0
        self.blocks = 0
        self.pools: dict[int, ProcessPoolExecutor] = {}

    def enter(self) -> None:
        with self.lock:
            if self.pid != os.getpid():
                self.pid, self.blocks, self.pools = os.getpid(), 0, {}
            self.blocks += 1

    def leave(self) -> list[ProcessPoolExecutor]:
        """The pools to stop: all of them when the last block closes."""
        with self.lock:
            self.blocks -= 1
            if self.blocks:
                return []
            pools, self.pools = list(self.pools.values()), {}
            return pools

    def get(self, workers: int) -> ProcessPoolExecutor | None:
        """The kept pool of that size (started now, or again if a worker died and broke the
        last one), or None when no block is open here."""
        with self.lock:
            if self.pid != os.getpid() or not self.blocks:
                return None
            pool = self.pools.get(workers)
            if pool is not None and getattr(pool, "_broken", False):
                pool.shutdown(wait=False, cancel_futures=True)
                pool = None
            if pool is None:
                pool = self.pools[workers] = _new_pool(workers)
            return pool


_KEPT = _KeptPools()


@contextmanager
def kept_pools() -> Iterator[None]:
    """Within this block, local pools outlive their map: the next map of the same size reuses
    the warm workers. A pool's start-up is ~0.6 s of wall and ~1.2 CPU-s on 2 cores (the workers
    fork and import what the tasks need), which a run of five assets and four checks paid nine
    times. The pools stop when the last open block ends: a pool nobody stops hangs the exit of
    a process that ends with `os._exit` (Dagster's step processes do). Blocks open at the same
    time (nested, or runs in threads of one process) share the pools."""
    _KEPT.enter()
    try:
        yield
    finally:
        for pool in _KEPT.leave():
            pool.shutdown(wait=True, cancel_futures=True)


@contextmanager
def _local_pool(workers: int) -> Iterator[ProcessPoolExecutor]:
    """A pool of `workers` processes for one map: the kept one while a `kept_pools` block is
    open in this process, else one that stops after the map."""
    kept = _KEPT.get(workers)
    if kept is not None:
        yield kept
        return
    with _new_pool(workers) as pool:
        yield pool


def _dask_map(
    fn: Callable[[T], R], tasks: Iterable[T], total: int, config: PoolConfig
) -> Iterator[R]:
    from distributed import Client  # optional engine: imported only when configured

    try:
        client = Client(
            config.dask_scheduler,
            set_as_default=False,  # type: ignore[no-untyped-call]
            timeout="10s",
        )
    except OSError as exc:
        raise WorkPoolUnavailable(
            f"cannot reach the Dask scheduler at {config.dask_scheduler} "
            f"(FLUX_DEPTH_DASK_SCHEDULER / compute.dask_scheduler): "
            f"{type(exc).__name__}"
        ) from None
    with client:
        workers = max(1, len(client.scheduler_info().get("workers", {})))
        size = _chunk_size(config, total, workers)

        def submit(chunk: list[T]) -> Any:
            return client.submit(_run_chunk, fn, chunk, pure=False)

        window = max(2, workers * config.in_flight_per_worker)
        yield from _ordered(
            submit, lambda f: f.result(), _chunked(tasks, size, total, workers), window
        )

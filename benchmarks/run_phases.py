"""Where the two cores go during one run of the whole job: per phase of the run, its wall time,
the run process's CPU, the CPU of the whole process tree (pool workers included) and the cores
busy (tree CPU over wall).

A phase ends at each step start, materialization and check result of the run's event log, so a
stretch where one core idles (serial work in the run's process, a pool starting, the tail of a
map) shows as a phase whose utilisation is well under the number of cores.

    .venv/bin/python benchmarks/run_phases.py --n 200 --dir /tmp/bench_photos
    .venv/bin/python benchmarks/run_phases.py --n 200 --dir /tmp/bench_photos --workers 1

Photos and config are those of `pipeline_throughput.py` (the same `--dir` reuses its photos).
"""

from __future__ import annotations

import argparse
import bisect
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.pipeline_throughput import (
    _cpu_s,
    _resources,
    _tree,
    ensure_photos,
    write_config,
)

#: the events that end a phase
BOUNDARIES = ("STEP_START", "ASSET_MATERIALIZATION", "ASSET_CHECK_EVALUATION", "STEP_SUCCESS")


class CpuTimeline:
    """(perf_counter, run process CPU, tree CPU) every 0.1 s; a process's CPU stays counted
    after it ends (its last sample)."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float, float]] = []
        self._last: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        me = os.getpid()
        while True:
            for pid in _tree(me):
                self._last[pid] = max(self._last.get(pid, 0.0), _cpu_s(pid))
            self.samples.append((time.perf_counter(), self._last[me], sum(self._last.values())))
            if self._stop.wait(0.1):
                return

    def __enter__(self) -> CpuTimeline:  # noqa: PYI034 - a plain class, never subclassed
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def between(self, t0: float, t1: float) -> tuple[float, float]:
        """(run process CPU, tree CPU) spent between two perf_counter times."""
        times = [s[0] for s in self.samples]
        i = min(bisect.bisect_left(times, t0), len(times) - 1)
        j = min(bisect.bisect_left(times, t1), len(times) - 1)
        return self.samples[j][1] - self.samples[i][1], self.samples[j][2] - self.samples[i][2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--workers", type=int, default=None, help="work-pool size (default: all)")
    ap.add_argument("--dir", help="photos are kept here between invocations")
    ap.add_argument(
        "--home", help="storage root to run on as it is (a re-run); default: a new one in --dir"
    )
    args = ap.parse_args()

    import dagster as dg

    from flux_depth_assets.defs.runner import materialize_catalog

    work = Path(args.dir or tempfile.mkdtemp(prefix="flux_bench_"))
    photos = work / "photos" / f"n{args.n}"
    ensure_photos(photos, args.n)
    home, cfg = Path(args.home or work / "phases_home"), work / "cfg"
    if not args.home:
        shutil.rmtree(home, ignore_errors=True)
    write_config(cfg, photos)
    instance = dg.DagsterInstance.ephemeral()
    print(
        f"machine: {platform.machine()} cores={os.cpu_count()} python "
        f"{platform.python_version()}; workers={args.workers or 'all'}; N={args.n}"
    )
    print(f"command: {' '.join(sys.argv)}\n")

    with CpuTimeline() as timeline:
        t0, wall0 = time.perf_counter(), time.time()
        out = materialize_catalog(
            "bench",
            config_dir=cfg,
            instance=instance,
            resources=_resources(home, args.workers, None),
            log_level="WARNING",
        )
        t_end = time.perf_counter()
    if not out.success:
        raise SystemExit(f"run failed: {out.error}")

    ends = [
        (t0 + e.timestamp - wall0, f"{e.dagster_event.event_type_value} {e.step_key or ''}")
        for e in (r.event_log_entry for r in instance.get_records_for_run(out.run_id).records)
        if e.dagster_event and e.dagster_event.event_type_value in BOUNDARIES
    ] + [(t_end, "end of run")]
    print(f"{'from s':>7}{'to s':>8}{'wall s':>8}{'run CPU':>9}{'tree CPU':>10}{'cores':>7}  until")
    start = t0
    for t, what in ends:
        if t - start >= 0.05:
            run_cpu, tree_cpu = timeline.between(start, t)
            print(
                f"{start - t0:7.2f}{t - t0:8.2f}{t - start:8.2f}{run_cpu:9.2f}{tree_cpu:10.2f}"
                f"{tree_cpu / (t - start):7.2f}  {what}"
            )
        start = max(start, t)
    run_cpu, tree_cpu = timeline.between(t0, t_end)
    wall = t_end - t0
    print(
        f"\nwhole run: {wall:.2f} s wall, run process {run_cpu:.2f} CPU-s, "
        f"tree {tree_cpu:.2f} CPU-s ({tree_cpu / args.n:.3f} per image), "
        f"{tree_cpu / wall:.2f} cores busy"
    )


if __name__ == "__main__":
    main()

"""Throughput of the whole pipeline with the `local` provider, through the real Dagster runner.

Generates N distinct ~1 MP photos from the shipped demo photos (random crop, scale, flip, colour
jitter; deterministic per index), declares a catalog over them in a throw-away config, and
materializes every asset through `materialize_catalog` (the runner `flux-depth materialize` uses),
one asset per run so each asset's CPU is measured on its own. Then the unchanged re-run and the
+K re-run (K new photos) of the whole job.

Printed per asset: ms of wall time per image, images/s, CPU-seconds per image (user+sys of this
process and of its reaped children, plus Dask worker processes when `--engine dask`), CPU
utilisation (CPU over wall; 2.0 = both cores busy), peak memory of the process tree: summed PSS
(shared pages counted once: what the tree holds), summed RSS (an upper bound that counts the
pages the forked pool workers share once per process) and the biggest single process's RSS.

    .venv/bin/python benchmarks/pipeline_throughput.py --n 200               # all cores
    .venv/bin/python benchmarks/pipeline_throughput.py --n 200 --workers 1
    .venv/bin/python benchmarks/pipeline_throughput.py --n 200 --engine dask  # 2 local workers
    .venv/bin/python benchmarks/pipeline_throughput.py --big                 # + the 62 MP PNG
    .venv/bin/python benchmarks/pipeline_throughput.py --workers 1 --busy-neighbour
    .venv/bin/python benchmarks/pipeline_throughput.py --one-run   # the job as users run it

CPU-seconds per image is the robust figure on a shared machine; wall time is noisy.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "examples" / "demo_catalog"
ASSETS = [
    "source_images",
    "depth_maps",
    "normal_maps",
    "parallax_sprites",
    "depth_stats",
    "catalog_gallery",
]
TARGET_PIXELS = 1_000_000


# --------------------------------------------------------------------------- photos


def _demo_photos() -> list[Image.Image]:
    out = []
    for p in sorted(DEMO.iterdir()):
        if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp"):
            with Image.open(p) as im:
                out.append(ImageOps.exif_transpose(im).convert("RGB"))
    return out


def make_photo(bases: list[Image.Image], index: int) -> Image.Image:
    """A distinct ~1 MP photo: crop, scale to ~1 MP, maybe flip, colour jitter (seeded by index)."""
    rng = np.random.default_rng(index)
    base = bases[index % len(bases)]
    w, h = base.size
    frac = rng.uniform(0.6, 1.0)
    cw, ch = max(32, int(w * frac)), max(32, int(h * frac))
    x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    im = base.crop((x, y, x + cw, y + ch))
    scale = (TARGET_PIXELS / (cw * ch)) ** 0.5
    im = im.resize((max(16, round(cw * scale)), max(16, round(ch * scale))), Image.BILINEAR)
    if rng.random() < 0.5:
        im = ImageOps.mirror(im)
    im = ImageEnhance.Color(im).enhance(rng.uniform(0.7, 1.3))
    im = ImageEnhance.Brightness(im).enhance(rng.uniform(0.85, 1.15))
    im = ImageEnhance.Contrast(im).enhance(rng.uniform(0.85, 1.15))
    return im


def ensure_photos(folder: Path, n: int, start: int = 0) -> None:
    """Photos `p<start>.jpg` … `p<start+n-1>.jpg` (kept between runs: generation is not measured)."""
    folder.mkdir(parents=True, exist_ok=True)
    bases = None
    for i in range(start, start + n):
        path = folder / f"p{i:06d}.jpg"
        if path.exists():
            continue
        bases = bases or _demo_photos()
        make_photo(bases, i).save(path, format="JPEG", quality=90)


def make_bilevel_png(path: Path, side: int = 7900) -> None:
    """The 62 MP bilevel PNG of the issue (a few KB on disk, 62 MP decoded)."""
    if path.exists():
        return
    im = Image.new("1", (side, side), 0)
    im.paste(1, (side // 4, side // 4, 3 * side // 4, 3 * side // 4))
    im.save(path, format="PNG", optimize=True)


def write_config(cfg: Path, photos: Path) -> None:
    (cfg / "catalogs").mkdir(parents=True, exist_ok=True)
    (cfg / "catalogs" / "bench.yml").write_text(
        textwrap.dedent(f"""
        catalogs:
          - name: bench
            source: {{type: local_dir, path: {photos}}}
            provider: {{name: local}}
            max_failure_ratio: 0.5
    """)
    )


# --------------------------------------------------------------------------- measuring


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                out += [int(c) for c in fh.read().split()]
    except OSError:
        pass
    return out


def _tree(pid: int) -> list[int]:
    seen, todo = [], [pid]
    while todo:
        p = todo.pop()
        seen.append(p)
        todo += _children(p)
    return seen


def _proc_kb(pid: int, file: str, field: str) -> int:
    """A `field:  N kB` line of /proc/<pid>/<file> (0 when the process is gone)."""
    try:
        with open(f"/proc/{pid}/{file}") as fh:
            for line in fh:
                if line.startswith(field):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _rss_kb(pid: int) -> int:
    return _proc_kb(pid, "status", "VmRSS:")


def _pss_kb(pid: int) -> int:
    """Proportional set size: pages shared between the pool's forked workers counted once."""
    return _proc_kb(pid, "smaps_rollup", "Pss:")


def _cpu_s(pid: int) -> float:
    """user+sys CPU seconds of a live process (from /proc)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return 0.0


#: sampling period of RSS and CPU, and ticks between PSS samples. The meter shares the machine
#: with what it measures: at 20 ms / 0.2 s it took 0.09 of a core (mostly smaps_rollup's page-table
#: walks), which the pool's two workers paid for; at 0.1 s / 0.5 s it takes 0.03.
TICK_S = 0.1
PSS_EVERY = 5


class Meter:
    """Wall, CPU and sampled memory of this process tree (+ extra pids, e.g. Dask workers).

    Memory: the peak of the tree's summed PSS (what the tree really holds: the workers forked
    from one server share its pages, which a sum of RSS counts once per process), sampled every
    0.5 s; the sum of RSS (an upper bound) and the largest single RSS, every 0.1 s.

    CPU = this process's rusage + what every descendant used while it was seen: descendants are
    sampled every 0.1 s (pool workers are grandchildren, under the forkserver, so RUSAGE_CHILDREN
    alone would miss them); at most one sampling interval per short-lived process is lost. The
    sampling thread's own CPU (reading /proc, ~0.03 of a core) is left out: not the pipeline's.
    """

    def __init__(self, extra_pids: list[int] | None = None, exclude: list[int] | None = None):
        self.extra = extra_pids or []
        self.exclude = set(exclude or [])
        self.peak_tree_kb = 0
        self.peak_one_kb = 0
        self.peak_pss_kb = 0
        self._ticks = 0
        self._first: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self._stop = threading.Event()
        self.meter_cpu = 0.0

    def _pids(self) -> list[int]:
        mine = _tree(os.getpid())[1:] + [q for p in self.extra for q in _tree(p)]
        # Dask processes started here are in both lists; the busy neighbour is not measured
        return [p for p in dict.fromkeys(mine) if p not in self.exclude]

    def _sample(self, initial: bool = False) -> None:
        pids = self._pids()
        sizes = [_rss_kb(p) for p in [os.getpid(), *pids]]
        self.peak_tree_kb = max(self.peak_tree_kb, sum(sizes))
        self.peak_one_kb = max([self.peak_one_kb, *sizes])
        if initial or self._ticks % PSS_EVERY == 0:  # smaps_rollup walks page tables
            self.peak_pss_kb = max(self.peak_pss_kb, sum(_pss_kb(p) for p in [os.getpid(), *pids]))
        self._ticks += 1
        for p in pids:
            cpu = _cpu_s(p)
            if p not in self._first:
                self._first[p] = cpu if initial else 0.0
            self._last[p] = max(self._last.get(p, 0.0), cpu)

    def _loop(self) -> None:
        while not self._stop.wait(TICK_S):
            self._sample()
        self.meter_cpu = time.thread_time()  # this thread's own sampling: not the pipeline's

    @staticmethod
    def _self_cpu() -> float:
        s = resource.getrusage(resource.RUSAGE_SELF)
        return s.ru_utime + s.ru_stime

    def __enter__(self) -> Meter:  # noqa: PYI034 - a plain class, never subclassed
        self._sample(initial=True)
        self.cpu0, self.t0 = self._self_cpu(), time.perf_counter()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._sample()
        self._stop.set()
        self._thread.join()
        self.wall = time.perf_counter() - self.t0
        self.cpu = (
            self._self_cpu()
            - self.cpu0
            - self.meter_cpu
            + sum(self._last[p] - self._first[p] for p in self._last)
        )


# --------------------------------------------------------------------------- dask


def start_dask(workers: int) -> tuple[str, list[subprocess.Popen]]:
    """A `dask scheduler` and `workers` single-threaded `dask worker` processes on loopback."""
    from tests.dask_cluster import start_cluster  # the same helper the tests use

    return start_cluster(workers)


# --------------------------------------------------------------------------- neighbour

#: what a second pool worker does to the memory system: 1 MP float32 arrays streamed through it
_NEIGHBOUR = """
import numpy as np
a = np.random.rand(1024, 1024).astype(np.float32)
while True:
    np.sqrt(a * a + 1.0).sum()
"""


def start_neighbour() -> subprocess.Popen:
    """A process keeping the other core busy with array passes, as a second worker would. With
    `--workers 1` the run then shows what one worker's images cost when both cores work: the
    most a second core can give is 2 / (that cost / the cost with the other core idle)."""
    return subprocess.Popen([sys.executable, "-c", _NEIGHBOUR])


# --------------------------------------------------------------------------- main


def _resources(home: Path, workers: int | None, scheduler: str | None) -> dict[str, object]:
    from flux_depth_assets.defs.resources import StorageResource

    resources: dict[str, object] = {"storage": StorageResource(root=str(home))}
    try:
        from flux_depth_assets.defs.resources import ComputeResource
    except ImportError:  # a checkout from before the work pool: measured as it is ("before")
        return resources
    resources["compute"] = ComputeResource(workers=workers, dask_scheduler=scheduler)
    return resources


def run(args: argparse.Namespace) -> None:
    from flux_depth_assets.defs.runner import materialize_catalog

    work = Path(args.dir or tempfile.mkdtemp(prefix="flux_bench_"))
    photos = work / "photos" / f"n{args.n}"
    t0 = time.perf_counter()
    ensure_photos(photos, args.n)
    if args.big:
        make_bilevel_png(photos / "bilevel_7900.png")
    print(f"photos ready in {time.perf_counter() - t0:.1f}s: {photos}", flush=True)
    home = work / "home"
    if home.exists() and not args.keep_home:
        shutil.rmtree(home)
    cfg = work / "cfg"
    write_config(cfg, photos)
    procs: list[subprocess.Popen] = []
    scheduler = None
    if args.engine == "dask":
        scheduler, procs = start_dask(args.dask_workers)
    resources = _resources(home, args.workers, scheduler)
    extra = [p.pid for p in procs]
    neighbour = start_neighbour() if args.busy_neighbour else None
    exclude = [neighbour.pid] if neighbour else []
    n_images = sum(1 for _ in photos.iterdir())

    print(
        f"\nmachine: {platform.machine()} {platform.processor() or ''} cores={os.cpu_count()} "
        f"python {platform.python_version()}; engine={args.engine} workers={args.workers or 'all'}"
        f"; N={n_images}{'; the other core kept busy' if neighbour else ''}"
    )
    print(f"command: {' '.join(sys.argv)}\n")
    head = (
        f"{'step':<22}{'wall s':>8}{'ms/img':>9}{'img/s':>8}{'CPU s/img':>11}{'CPU util':>10}"
        f"{'tree PSS MB':>13}{'tree RSS MB':>13}{'max proc MB':>13}"
    )
    print(head)
    print("-" * len(head))

    def line(name: str, m: Meter, n: int) -> None:
        n = max(n, 1)
        print(
            f"{name:<22}{m.wall:>8.2f}{1000 * m.wall / n:>9.1f}{n / m.wall:>8.1f}"
            f"{m.cpu / n:>11.3f}{m.cpu / m.wall:>10.2f}{m.peak_pss_kb / 1024:>13.0f}"
            f"{m.peak_tree_kb / 1024:>13.0f}"
            f"{m.peak_one_kb / 1024:>13.0f}",
            flush=True,
        )

    def materialize(assets: list[str] | None) -> None:
        out = materialize_catalog(
            "bench", assets=assets, config_dir=cfg, resources=resources, log_level="WARNING"
        )
        if not out.success:
            raise SystemExit(f"run failed: {out.error}")

    try:
        total = Meter(extra, exclude)
        with total:
            if args.one_run:  # what `flux-depth materialize` does: the whole job, one run
                materialize(None)
            else:
                for asset in ASSETS:
                    with Meter(extra, exclude) as m:
                        materialize([asset])
                    line(asset, m, n_images)
        line("whole job, one run" if args.one_run else "all assets (cold)", total, n_images)
        if args.rerun:
            with Meter(extra, exclude) as m:
                materialize(None)
            line("unchanged re-run", m, n_images)
        if args.add:
            ensure_photos(photos, args.add, start=10_000_000)
            with Meter(extra, exclude) as m:
                materialize(None)
            line(f"+{args.add} re-run (total)", m, args.add)
            for p in photos.glob("p1000*.jpg"):
                p.unlink()
    finally:
        for p in [*procs, *([neighbour] if neighbour else [])]:
            p.terminate()
        for p in [*procs, *([neighbour] if neighbour else [])]:
            p.wait(timeout=30)
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200, help="number of ~1 MP photos")
    ap.add_argument("--workers", type=int, default=None, help="work-pool size (default: all cores)")
    ap.add_argument("--engine", choices=["local", "dask"], default="local")
    ap.add_argument("--dask-workers", type=int, default=2)
    ap.add_argument("--big", action="store_true", help="add the 62 MP bilevel PNG to the catalog")
    ap.add_argument("--no-rerun", dest="rerun", action="store_false")
    ap.add_argument("--add", type=int, default=10, help="new photos for the incremental re-run")
    ap.add_argument("--dir", help="keep photos here between invocations (default: a temp dir)")
    ap.add_argument("--keep-home", action="store_true", help="do not wipe the storage root first")
    ap.add_argument(
        "--one-run",
        action="store_true",
        help="the cold job as one run (checks included), not one run per asset",
    )
    ap.add_argument(
        "--busy-neighbour",
        action="store_true",
        help="keep another core busy with array passes (not measured): with --workers 1, what "
        "an image costs one worker when both cores work",
    )
    run(ap.parse_args())


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()

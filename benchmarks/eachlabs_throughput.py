"""Throughput of the eachlabs provider against the loopback server running in another process.

    .venv/bin/python benchmarks/eachlabs_throughput.py            # 1,000 images, 2 s, 64 at once
    .venv/bin/python benchmarks/eachlabs_throughput.py --images 200 --readme benchmarks/README.md
    # realistic: 4 MP inputs, 15-19 s per prediction; compare with a fixed poll schedule
    .venv/bin/python benchmarks/eachlabs_throughput.py --images 72 --concurrency 24 --side 2000 \
        --latency 15 --jitter 4 --poll-interval 2 [--schedule fixed --first-poll 15]

Reports wall time against the ideal (N × latency / concurrency), client CPU per prediction
(user + system time of this process, all threads, during `predict_many` only) and peak memory
(max RSS). Targets: ≥ 90 % of ideal throughput, ≤ 2 ms CPU per prediction.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import re
import resource
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from flux_depth_assets.config.models import EachlabsProviderConfig  # noqa: E402
from flux_depth_assets.fakeapi import fake_api_process  # noqa: E402
from flux_depth_assets.providers.base import ProviderInput  # noqa: E402
from flux_depth_assets.providers.eachlabs import EachlabsProvider  # noqa: E402
from flux_depth_assets.providers.eachlabs import provider as eachlabs_provider  # noqa: E402
from flux_depth_assets.providers.eachlabs.pacing import PollScheduler  # noqa: E402
from flux_depth_assets.storage.store import Storage  # noqa: E402

SECTION = "## Hosted API throughput"
NOTES = """\
Across runs on this shared 2-core VM (2026-11-25): throughput 93–95 % of ideal with
`poll_interval_s` 0.1 s (90–92 % with 0.25 s): **target met**. What is left is the first wave, polled
before any run time is known, and first polls landing up to one interval after the host finished.

Client CPU: 2.6–5.2 ms per prediction (user 2.3–2.7 ms; kernel 0.8–2.4 ms, which swings with other
work on the machine): **the 2 ms target is not met**. Where it goes: ~3.4 HTTP requests per
prediction (create, ~1.4 polls, download; 3 is the protocol's minimum) at ~0.55 ms of CPU each in
httpx/httpcore on this CPU (measured alone: 0.55 ms per GET with uvloop and `sniffio` installed,
0.75 ms without `sniffio`); the journal's two atomic file writes and one delete, 0.35–0.6 ms;
JPEG encode, PNG decode and thread hops, ~0.3 ms. With the journal in memory a run still took
2.2–2.4 ms, so ≤ 2 ms would need a lighter HTTP stack than httpx, not more tuning here.

Fixed on the way: httpcore's pool does work quadratic in its connections on every request (26 ms per
prediction with 64 connections in one pool; pools of 4 behind one client, removed again in
issue 18 with uvloop: see "Hosted client at realistic latency"); without `sniffio`,
httpcore retries a failing import on every request; polling adapts to the host's run time (from
~20 polls per prediction at a 0.1 s interval to ~1.4). Peak RSS grows ~26 MiB for 1,000 predictions.
"""


def make_items(n: int, side: int) -> list[ProviderInput]:
    """n distinct small RGB images (decoded lazily, like the pipeline's normalised images)."""
    rng = np.random.default_rng(0)
    items = []
    for i in range(n):
        base = rng.integers(0, 256, size=(side // 8, side // 8, 3), dtype=np.uint8)
        im = Image.fromarray(base, "RGB").resize((side, side), Image.Resampling.BILINEAR)
        buf = io.BytesIO()
        im.save(buf, format="PNG")
        data = buf.getvalue()
        key = f"{i:064x}"

        def load(data: bytes = data) -> Image.Image:
            with Image.open(io.BytesIO(data)) as opened:
                return opened.convert("RGB")

        items.append(
            ProviderInput(
                image_id=f"bench-{i:05d}", source_sha256=key, cache_key=key, load_image=load
            )
        )
    return items


class FixedSchedule(PollScheduler):
    """The plain alternative to the adaptive schedule: first poll after a fixed delay, then every
    interval; learns nothing."""

    def __init__(self, interval_s: float, first_s: float):
        super().__init__(interval_s)
        self.estimate_s = first_s  # "known" from the start: every prediction is planned

    def observe(self, running_until_s: float | None, done_by_s: float) -> None:
        return None


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def sys_seconds() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_stime


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{model}, {cores} cores, {platform.system()} {platform.release()}, Python {platform.python_version()}"


def run(args: argparse.Namespace) -> dict:
    items = make_items(args.images, args.side)
    if args.schedule == "fixed":
        eachlabs_provider.PollScheduler = lambda interval: FixedSchedule(  # type: ignore[misc,assignment]
            interval, args.first_poll
        )
    jitter = ["--latency-jitter", str(args.jitter)] if args.jitter else []
    with (
        fake_api_process(latency_s=args.latency, seed=0, extra_args=jitter) as server,
        tempfile.TemporaryDirectory(prefix=".tmp-eachlabs-bench-", dir=REPO) as root,
    ):
        config = EachlabsProviderConfig(
            max_concurrency=args.concurrency,
            poll_interval_s=args.poll_interval,
            timeout_s=30,
            prediction_deadline_s=max(60.0, (args.latency + args.jitter) * 10),
        )
        provider = EachlabsProvider(
            config,
            api_key="bench-key",
            base_url_override=server.base_url,
            journal_storage=Storage(root),
            progress_interval_s=10.0,
        )
        lines: list[str] = []
        load_before = os.getloadavg()[0]
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        cpu0, sys0, t0 = cpu_seconds(), sys_seconds(), time.perf_counter()
        results = provider.predict_many(items, progress=lines.append)
        wall, cpu, sys_cpu = time.perf_counter() - t0, cpu_seconds() - cpu0, sys_seconds() - sys0
        stats = server.stats()
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    ok = sum(r.status == "succeeded" for r in results)
    ideal = args.images * (args.latency + args.jitter / 2) / args.concurrency
    return {
        "images": args.images,
        "succeeded": ok,
        "latency": args.latency,
        "jitter": args.jitter,
        "schedule": args.schedule
        if args.schedule == "adaptive"
        else f"fixed, first poll at {args.first_poll:g} s",
        "concurrency": args.concurrency,
        "poll_interval": args.poll_interval,
        "side": args.side,
        "wall": wall,
        "ideal": ideal,
        "efficiency": ideal / wall,
        "cpu_ms_per_prediction": cpu / args.images * 1000,
        "cpu_total": cpu,
        "sys_ms_per_prediction": sys_cpu / args.images * 1000,
        "peak_rss_mib": peak_kib / 1024,
        "rss_before_mib": rss_before / 1024,
        "requests_per_prediction": stats["api_requests"] / args.images,
        "polls_per_prediction": stats["polls"] / args.images,
        "max_active": stats["max_active_predictions"],
        "creates": stats["creates"],
        "cost": sum(r.cost_usd for r in results),
        "last_line": lines[-1] if lines else "",
        "load": (load_before, os.getloadavg()[0]),
    }


def table(r: dict, command: str) -> str:
    rows = [
        ("machine", machine()),
        (
            "load average (1 min) before / after",
            "{:.2f} / {:.2f} (other work shares these cores)".format(*r["load"]),
        ),
        ("command", f"`{command}`"),
        ("images / succeeded", f"{r['images']} / {r['succeeded']} ({r['side']}×{r['side']} px)"),
        (
            "server latency, max_concurrency, poll_interval_s",
            (
                f"{r['latency']:g}–{r['latency'] + r['jitter']:g} s, {r['concurrency']}, "
                f"{r['poll_interval']:g} s"
            ),
        ),
        ("poll schedule", r["schedule"]),
        (
            "wall time / ideal (N × latency / concurrency)",
            f"{r['wall']:.1f} s / {r['ideal']:.1f} s",
        ),
        ("throughput vs ideal (target ≥ 90 %)", f"{r['efficiency'] * 100:.1f} %"),
        (
            "client CPU per prediction (target ≤ 2 ms)",
            (
                f"{r['cpu_ms_per_prediction']:.2f} ms, of which kernel {r['sys_ms_per_prediction']:.2f} ms "
                f"({r['cpu_total']:.1f} s total)"
            ),
        ),
        (
            "peak memory (max RSS)",
            f"{r['peak_rss_mib']:.0f} MiB ({r['rss_before_mib']:.0f} MiB before the run)",
        ),
        (
            "API requests per prediction (polls)",
            f"{r['requests_per_prediction']:.2f} ({r['polls_per_prediction']:.2f})",
        ),
        ("max predictions running on the server", str(r["max_active"])),
        ("creates / cost", f"{r['creates']} / ${r['cost']:.2f}"),
    ]
    out = ["| measure | value |", "| --- | --- |"]
    out += [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(out)


def write_section(readme: Path, body: str) -> None:
    """Replace (or append) only the "Hosted API throughput" section of the README."""
    text = readme.read_text() if readme.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.DOTALL | re.MULTILINE)
    section = f"{SECTION}\n\n{body.strip()}\n\n"
    if pattern.search(text):
        text = pattern.sub(lambda _m: section, text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    readme.write_text(text.rstrip("\n") + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--images", type=int, default=1000)
    p.add_argument("--latency", type=float, default=2.0, help="server latency, create → success")
    p.add_argument("--concurrency", type=int, default=64, help="max_concurrency")
    p.add_argument("--poll-interval", type=float, default=0.1, help="poll_interval_s")
    p.add_argument("--side", type=int, default=64, help="image side in pixels")
    p.add_argument(
        "--jitter",
        type=float,
        default=0.0,
        help="extra server latency drawn uniformly from [0, J] per prediction",
    )
    p.add_argument(
        "--schedule",
        choices=("adaptive", "fixed"),
        default="adaptive",
        help="adaptive PollScheduler, or a fixed first-poll delay then every interval",
    )
    p.add_argument(
        "--first-poll",
        type=float,
        default=0.0,
        help="first-poll delay of --schedule fixed (at least one interval)",
    )
    p.add_argument(
        "--readme",
        type=Path,
        default=None,
        help="also write the table into this README's 'Hosted API throughput' section",
    )
    args = p.parse_args(argv)
    command = "python " + " ".join(
        shlex.quote(a)
        for a in [os.path.relpath(__file__, REPO), *(argv if argv is not None else sys.argv[1:])]
    )
    result = run(args)
    text = table(result, command)
    print(text)
    print(f"\nlast progress line: {result['last_line']}")
    if args.readme:
        intro = (
            "The `eachlabs` provider against the loopback server (`flux_depth_assets.fakeapi`) "
            "in another process: wall time versus the ideal N × latency / concurrency, client "
            "CPU per prediction (this process's user + system time during `predict_many`, "
            "all threads: image encoding, HTTP, journal writes, decoding) and peak RSS."
        )
        write_section(args.readme, f"{intro}\n\n{text}\n\n{NOTES}")
    return 0 if result["succeeded"] == result["images"] else 1


if __name__ == "__main__":
    raise SystemExit(main())

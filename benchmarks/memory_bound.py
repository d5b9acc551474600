"""Why two cores do not halve a 1 MP pipeline here: ALU work vs memory streaming, 1 vs 2 processes.

Runs an in-cache Python loop and a numpy pass over a 128 MB array, first alone, then in two
processes at once, and prints each one's CPU seconds. Equal CPU means the work scales with
cores; more CPU per process with two running means they share something (on this machine, the
memory bandwidth: the image kernels are of the second kind).

    .venv/bin/python benchmarks/memory_bound.py
"""

from __future__ import annotations

import multiprocessing
import os
import platform
import time

import numpy as np


def alu(_: int) -> float:
    started, x = time.process_time(), 0
    for i in range(6_000_000):
        x += i * i % 7
    return time.process_time() - started


def stream(_: int) -> float:
    a = np.ones(32_000_000, np.float32)  # 128 MB: far beyond the caches
    started = time.process_time()
    for _ in range(20):
        a *= np.float32(1.0001)
    return time.process_time() - started


def main() -> None:
    print(
        f"machine: {platform.machine()} cores={os.cpu_count()} python {platform.python_version()}"
    )
    print("command: benchmarks/memory_bound.py\n")
    print(f"{'work':<26}{'alone, CPU s':>14}{'two at once, CPU s each':>26}")
    for name, fn in (("ALU loop (in cache)", alu), ("array pass (128 MB)", stream)):
        one = fn(0)
        with multiprocessing.get_context("fork").Pool(2) as pool:
            two = pool.map(fn, [0, 1])
        print(f"{name:<26}{one:>14.2f}{f'{two[0]:.2f}, {two[1]:.2f}':>26}")


if __name__ == "__main__":
    main()

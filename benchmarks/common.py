"""What the benchmark scripts share.

Sizes, timing a call, workers in fresh subprocesses, a process's memory, percentiles.

The benchmarks are scripts (``python benchmarks/bench_x.py``); their folder is on ``sys.path``
then, so they import this module as ``common``.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# The official demo's denoising of the point cloud: 30 neighbours within 0.03 m.
OFFICIAL_DENOISE_RADIUS = 0.03
OFFICIAL_DENOISE_MIN_NEIGHBORS = 30


def parse_size(text: str) -> tuple[int, int]:
    """Return ``'640x480'`` as (640, 480); an argparse error for anything else."""
    try:
        width, height = (int(part) for part in text.lower().split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError(f'size must look like 640x480, got {text!r}') from None
    return width, height


def time_calls(function: Callable[[], object], repeat: int,
               sync: Callable[[], object] | None = None) -> list[float]:
    """Seconds of ``repeat`` calls of ``function`` after one warm-up call.

    ``sync`` runs after each call inside the timing (``torch.cuda.synchronize`` for work that
    a GPU finishes later).
    """
    def call() -> None:
        function()
        if sync is not None:
            sync()

    call()  # warm-up: first-touch allocations, kernels, cv2 / numpy dispatch
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return times


def timed(name: str, function: Callable[[], object], repeat: int,
          sync: Callable[[], object] | None = None, width: int = 44) -> None:
    """Time ``function`` (see :func:`time_calls`) and print its median and minimum."""
    times = time_calls(function, repeat, sync)
    print(f'{name:<{width}s} median {statistics.median(times) * 1e3:8.2f} ms   '
          f'min {min(times) * 1e3:8.2f} ms')


def worker_command(script: str | Path, *args: str) -> list[str]:
    """Command line that runs ``script`` again as a worker: ``python script --worker ARGS``."""
    return [sys.executable, str(script), '--worker', *args]


def json_rows(text: str) -> list[dict[str, Any]]:
    """Return the JSON objects a worker printed, one per line (other lines are ignored)."""
    rows = []
    for line in text.splitlines():
        if line.startswith('{'):
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return rows


def rss_mib(pid: int) -> float:
    """Resident memory of a process (Linux /proc) in MiB, 0 once it is gone."""
    try:
        with open(f'/proc/{pid}/status') as status:
            for line in status:
                if line.startswith('VmRSS:'):
                    return int(line.split()[1]) / 1024.0
    except FileNotFoundError:
        pass
    return 0.0


def percentile(values: list[float], q: float) -> float:
    """Return the q-th percentile of the values by nearest rank, NaN when there are none."""
    if not values:
        return float('nan')
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100.0 * (len(ordered) - 1)))]

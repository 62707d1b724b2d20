#!/usr/bin/env python3
"""Time the loop-free cost-volume construction against a per-disparity loop.

Default size: 1/4 of a 640x480 image (160x120 features), vits channels (128 features, 12
after proj_cmb), 104 bins (max_disp 416), 8 groups. Prints min and median wall time per call.

    PYTHONPATH=. python benchmarks/bench_cost_volume.py [--width 640 --height 480 --threads 2]
"""
from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from foundation_stereo_ros.model.cost_volume import (
    build_concat_volume,
    build_gwc_volume,
    concat_volume_reference,
    gwc_volume_reference,
)


def timings(fns: list[Callable[[], torch.Tensor]], repeats: int) -> list[tuple[float, float]]:
    """Time each function; return (min, median) wall time in seconds per function.

    Calls are interleaved so that load from other processes hits all alike; min is the
    steadier figure on a shared machine.
    """
    for fn in fns:
        fn()  # warm-up
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, record in zip(fns, times):
            start = time.perf_counter()
            fn()
            record.append(time.perf_counter() - start)
    return [(min(t), statistics.median(t)) for t in times]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--width', type=int, default=640, help='image width (pixels)')
    parser.add_argument('--height', type=int, default=480, help='image height (pixels)')
    parser.add_argument('--max-disp', type=int, default=416)
    parser.add_argument('--channels', type=int, default=128, help='features_04 channels')
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--repeats', type=int, default=10)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    h, w, bins = args.height // 4, args.width // 4, args.max_disp // 4
    gen = torch.Generator().manual_seed(0)
    left = torch.randn(1, args.channels, h, w, generator=gen)
    right = torch.randn(1, args.channels, h, w, generator=gen)
    left12, right12 = left[:, :12].contiguous(), right[:, :12].contiguous()
    print(f'features {args.channels}x{h}x{w}, {bins} bins, {args.threads} threads, CPU')

    with torch.inference_mode():
        reference = gwc_volume_reference(left, right, bins, 8)
        err = (build_gwc_volume(left, right, bins, 8) - reference).abs()
        print(f'gwc max abs difference to loop: {err.max().item():.2e}')
        rows = [
            ('gwc (B,8,D,H,W)', lambda: build_gwc_volume(left, right, bins, 8),
             lambda: gwc_volume_reference(left, right, bins, 8)),
            ('concat (B,24,D,H,W)', lambda: build_concat_volume(left12, right12, bins),
             lambda: concat_volume_reference(left12, right12, bins)),
        ]
        print('min / median ms per call')
        for name, fast, slow in rows:
            (fast_min, fast_med), (slow_min, slow_med) = timings([fast, slow], args.repeats)
            print(f'{name:20s} loop-free {1e3 * fast_min:7.1f} / {1e3 * fast_med:7.1f}   '
                  f'per-disparity loop {1e3 * slow_min:7.1f} / {1e3 * slow_med:7.1f}   '
                  f'speed-up (min) x{slow_min / fast_min:.1f}')


if __name__ == '__main__':
    main()

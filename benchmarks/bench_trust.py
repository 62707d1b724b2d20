#!/usr/bin/env python3
"""Cost of each trust stage per frame: threshold, left-right check, edge filter, denoising.

Usage: python benchmarks/bench_trust.py [--sizes 640x480 1280x720] [--device cpu] [--repeat 20]
       [--threads 1 2]

Each stage is timed as the pipeline runs it, mask and drop (``trust.nan_where``), on a
generated scene's exact disparity, depth and cloud at the given size, on ``--device``; the
left-right check's figure leaves out the backend's second (mirrored) pass, which costs what
the backend costs. Prints the median and the best time in ms (CUDA synchronised) and the sum
of the threshold and the edge filter, the two that must stay cheap, and the CPU time of the
process (all threads). On the CPU each figure is measured per torch thread count
(``--threads``, default 1 and all cores): on a machine whose cores are busy with other work,
every multi-threaded op waits for a descheduled thread and costs milliseconds whatever its
size, so the one-thread row, and its CPU time, are the steadier figures there.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch
from common import OFFICIAL_DENOISE_MIN_NEIGHBORS, OFFICIAL_DENOISE_RADIUS, parse_size

from foundation_stereo_ros import geometry, trust
from foundation_stereo_ros.synthetic.scenes import make_scene

STAGES = ('confidence threshold', 'left-right check', 'edge filter', 'denoising')
# The figures of benchmarks/trust_figures.py and the official demo's denoising.
CONFIDENCE_THRESHOLD = 0.5
LEFT_RIGHT_MAX_DIFF = 1.0
EDGE_RTOL = 0.04


def _stages(width: int, height: int, device: torch.device) -> dict[str, Callable[[], object]]:
    scene = make_scene(width, height, seed=0)
    camera = scene.camera
    disparity = torch.from_numpy(scene.disparity).to(device)
    # The right view's disparity: the ray-cast right depth, as an ideal mirrored pass gives.
    right = torch.from_numpy(camera.fx * camera.baseline / scene.right_depth).float().to(device)
    depth = geometry.disparity_to_depth(disparity, camera)
    points = geometry.depth_to_points(depth, camera)
    confidence = torch.rand(disparity.shape, generator=torch.Generator().manual_seed(0))
    confidence = confidence.to(device)

    def threshold() -> object:
        return trust.nan_where(confidence < CONFIDENCE_THRESHOLD, disparity)

    def left_right() -> object:
        keep, agreement = trust.left_right_check(disparity, right, LEFT_RIGHT_MAX_DIFF)
        return trust.nan_where(~keep, disparity), agreement

    def edges() -> object:
        return trust.nan_where(trust.flying_pixel_mask(depth, EDGE_RTOL), depth)

    def denoise() -> object:
        drop = trust.radius_outlier_mask(points, OFFICIAL_DENOISE_RADIUS,
                                         OFFICIAL_DENOISE_MIN_NEIGHBORS,
                                         camera.fx, camera.fy)
        return trust.nan_where(drop[..., None], points)

    return dict(zip(STAGES, (threshold, left_right, edges, denoise)))


def measure(width: int, height: int, device: str | torch.device, repeat: int,
            stages: tuple[str, ...] = STAGES) -> list[dict[str, float | str]]:
    """Time ``stages`` at ``width`` x ``height`` on ``device``; one row per stage."""
    device = torch.device(device)
    cuda = device.type == 'cuda'
    functions = _stages(width, height, device)
    rows = []
    for name in stages:
        function = functions[name]
        function()                       # warm-up: allocations, CUDA kernels
        times, cpu_times = [], []
        # The denoising is a hundred times dearer than the rest: fewer repeats keep it short.
        for _ in range(max(1, repeat // 10) if name == 'denoising' else repeat):
            if cuda:
                torch.cuda.synchronize(device)
            start, start_cpu = time.perf_counter(), time.process_time()
            function()
            if cuda:
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - start_cpu)
        rows.append({'stage': name, 'size': f'{width}x{height}', 'device': str(device),
                     'median_ms': 1e3 * statistics.median(times), 'min_ms': 1e3 * min(times),
                     'cpu_ms': 1e3 * statistics.median(cpu_times)})
    return rows


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--sizes', nargs='+', type=parse_size,
                        default=[(640, 480), (1280, 720)])
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--repeat', type=int, default=20)
    parser.add_argument('--threads', nargs='+', type=int,
                        default=sorted({1, torch.get_num_threads()}),
                        help='torch CPU thread counts to measure with')
    args = parser.parse_args(argv)
    print(f'torch {torch.__version__}, {os.cpu_count()} cores, device {args.device}')
    print(f'{"stage":>22} {"size":>9} {"threads":>7} {"median_ms":>10} {"min_ms":>8} '
          f'{"cpu_ms":>8}')
    for threads in args.threads:
        torch.set_num_threads(threads)
        for width, height in args.sizes:
            rows = measure(width, height, args.device, args.repeat)
            for row in rows:
                print(f'{row["stage"]:>22} {row["size"]:>9} {threads:>7} '
                      f'{row["median_ms"]:10.2f} {row["min_ms"]:8.2f} {row["cpu_ms"]:8.2f}')
            cheap = {r['stage']: r for r in rows}
            both = {key: cheap['confidence threshold'][key] + cheap['edge filter'][key]
                    for key in ('median_ms', 'min_ms', 'cpu_ms')}
            print(f'{"threshold + edges":>22} {f"{width}x{height}":>9} {threads:>7} '
                  f'{both["median_ms"]:10.2f} {both["min_ms"]:8.2f} {both["cpu_ms"]:8.2f}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())

"""SGBM backend on generated scenes: runtime and accuracy against exact ground truth.

Usage: python benchmarks/bench_sgbm.py [--sizes 640x480 1280x720] [--seeds 0 1 2] [--repeat 3]

For each scene and option set prints the median wall time and CPU time (all threads) of
the pipeline on SGBM (``StereoPipeline.process``, disparity only) over ``--repeat`` runs (CPU
time is the steadier figure on a shared machine), the coverage (share of non-occluded pixels
with an estimate), bad-1px and bad-3px (shares of those estimates more than 1 / 3 px off),
the mean absolute error (px) and the share of occluded pixels that still got an estimate. Also
times scene generation.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import cv2
import numpy as np
import torch
from common import parse_size

from foundation_stereo_ros.backends.sgbm import SgbmBackend
from foundation_stereo_ros.pipeline import PipelineConfig, StereoPipeline
from foundation_stereo_ros.synthetic.scenes import StereoScene, make_scene

# name: (SGBM options, pipeline settings); 'left_right' is the pipeline's left-right check.
OPTION_SETS = {
    'default': ({}, {}),
    'left_right': ({}, {'left_right_check': True}),
    'hh4': ({'sgbm_mode': 'hh4'}, {}),
}


def num_disparities_for(scene: StereoScene) -> int:
    """Smallest multiple of 16 above the scene's largest disparity."""
    return int(np.ceil((float(scene.disparity.max()) + 1.0) / 16.0) * 16)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--sizes', nargs='+', type=parse_size,
                        default=[(640, 480), (1280, 720)])
    parser.add_argument('--seeds', nargs='+', type=int, default=[0, 1, 2])
    parser.add_argument('--noise', type=float, default=1.0, help='image noise, grey levels')
    parser.add_argument('--repeat', type=int, default=3)
    parser.add_argument('--options', nargs='+', choices=sorted(OPTION_SETS),
                        default=list(OPTION_SETS))
    args = parser.parse_args()

    print(f'cpu cores: {os.cpu_count()}, opencv {cv2.__version__} threads '
          f'{cv2.getNumThreads()}, torch {torch.__version__}')
    header = (f'{"size":>9} {"seed":>4} {"options":>10} {"ndisp":>5} {"wall_ms":>8} {"cpu_ms":>7} '
              f'{"coverage":>8} {"bad1":>6} {"bad3":>6} {"mae_px":>6} {"occ_est":>7}')
    totals: dict[tuple, list[dict[str, float]]] = {}
    print(header)
    for width, height in args.sizes:
        for seed in args.seeds:
            start, start_cpu = time.perf_counter(), time.process_time()
            scene = make_scene(width, height, seed=seed, noise=args.noise)
            scene_ms = (time.perf_counter() - start) * 1e3
            scene_cpu_ms = (time.process_time() - start_cpu) * 1e3
            ndisp = num_disparities_for(scene)
            for key in args.options:
                sgbm_options, pipeline_settings = OPTION_SETS[key]
                pipeline = StereoPipeline(SgbmBackend(num_disparities=ndisp, **sgbm_options),
                                          PipelineConfig(**pipeline_settings))

                def run(pipeline: StereoPipeline = pipeline,
                        scene: StereoScene = scene) -> np.ndarray:
                    return pipeline.process(scene.left, scene.right, scene.camera,
                                            want_depth=False, want_points=False).disparity

                run()  # warm-up (thread pool, allocations)
                walls, cpus = [], []
                for _ in range(args.repeat):
                    start, start_cpu = time.perf_counter(), time.process_time()
                    disparity = run()
                    walls.append(time.perf_counter() - start)
                    cpus.append(time.process_time() - start_cpu)
                figures = scene.score(disparity)
                figures['wall_ms'] = statistics.median(walls) * 1e3
                figures['cpu_ms'] = statistics.median(cpus) * 1e3
                totals.setdefault((width, height, key), []).append(figures)
                print(f'{width:>4}x{height:<4} {seed:>4} {key:>10} {ndisp:>5} '
                      f'{figures["wall_ms"]:8.1f} {figures["cpu_ms"]:7.1f} '
                      f'{figures["coverage"]:8.4f} '
                      f'{figures["bad1"]:6.4f} {figures["bad3"]:6.4f} {figures["mae"]:6.3f} '
                      f'{figures["hidden_estimated"]:7.4f}')
            print(f'{"":>9} {seed:>4} scene generation: wall {scene_ms:.0f} ms, cpu '
                  f'{scene_cpu_ms:.0f} ms')
    print('\nmeans over seeds')
    print(header)
    for (width, height, key), rows in totals.items():
        mean = {name: float(np.mean([row[name] for row in rows])) for name in rows[0]}
        print(f'{width:>4}x{height:<4} {"all":>4} {key:>10} {"":>5} {mean["wall_ms"]:8.1f} '
              f'{mean["cpu_ms"]:7.1f} '
              f'{mean["coverage"]:8.4f} {mean["bad1"]:6.4f} {mean["bad3"]:6.4f} '
              f'{mean["mae"]:6.3f} {mean["hidden_estimated"]:7.4f}')


if __name__ == '__main__':
    main()

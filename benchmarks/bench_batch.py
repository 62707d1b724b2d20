#!/usr/bin/env python3
r"""Batched inference: seconds per pair through the pipeline for batch sizes 1, 2, 4...

Runs ``StereoPipeline.process_batch`` on generated scenes of one size; B = 1 is the plain
per-pair loop. Also times the onnx backend (this package's export of the same weights, the
best ONNX Runtime provider unless ``--provider``) against the PyTorch backend when ``--onnx``
is given. Weights: the seeded vits checkpoint of the tests (timing does not depend on them)
unless ``--checkpoint``. Prints min and median of ``--repeat`` timed calls after one warm-up.

    PYTHONPATH=. python benchmarks/bench_batch.py --size 240x320 --iters 8 --batch 1 2 4
    PYTHONPATH=. python benchmarks/bench_batch.py --size 240x320 --iters 8 --batch 1 --onnx

Measured 2026-12-02 on the shared 2-core development VM (load average 5 to 14 from other jobs,
so single figures vary by 2x between runs; seeded vits, CPU, seconds per pair, min of 3):

    size     iters  torch B=1      torch B=2     onnx CPU B=1  onnx CPU B=2
    96x64    2      5.0 / 24.7     3.7 / 9.5     2.9           3.2
    128x96   4      28.3           23.6          -             -

B=2 was faster than B=1 for the PyTorch backend in every run (0.38x to 0.83x) and not for
ONNX Runtime (1.08x); the onnx backend on the CPU provider was 1.7x to 8x faster than the
PyTorch backend. The batch tool's default stays 1 until a quiet machine (or a GPU) confirms.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from foundation_stereo_ros.backends import make_backend
from foundation_stereo_ros.pipeline import PipelineConfig, StereoPipeline
from foundation_stereo_ros.synthetic.scenes import make_scene

REPO_ROOT = Path(__file__).resolve().parent.parent


def time_batches(pipeline: StereoPipeline, scenes: list, batch: int, repeat: int) -> list[float]:
    """Seconds per pair of ``repeat`` runs over ``scenes`` in batches of ``batch``."""
    pairs = [(s.left, s.right) for s in scenes]
    camera = scenes[0].camera
    pipeline.process_batch(pairs[:batch], camera, want_points=False)   # warm-up
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        for i in range(0, len(pairs), batch):
            pipeline.process_batch(pairs[i:i + batch], camera, want_points=False)
        runs.append((time.perf_counter() - start) / len(pairs))
    return runs


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--size', default='240x320', help='HxW of the generated pairs')
    parser.add_argument('--iters', type=int, default=8)
    parser.add_argument('--batch', type=int, nargs='+', default=[1, 2, 4])
    parser.add_argument('--repeat', type=int, default=3)
    parser.add_argument('--device', default='auto')
    parser.add_argument('--checkpoint', default='', help='real weights (with cfg.yaml)')
    parser.add_argument('--onnx', action='store_true', help='also time the onnx backend')
    parser.add_argument('--provider', default='auto', help='onnx provider')
    args = parser.parse_args()
    height, width = (int(v) for v in args.size.split('x'))
    n_pairs = max(args.batch)
    scenes = [make_scene(width, height, seed=i) for i in range(n_pairs)]

    sys.path.insert(0, str(REPO_ROOT / 'test'))   # checkpoints.py: the seeded checkpoint recipe
    from checkpoints import write_seeded_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = args.checkpoint or str(write_seeded_checkpoint(Path(tmp) / 'vits'))
        backend = make_backend('foundation_stereo', checkpoint=checkpoint, device=args.device,
                               valid_iters=args.iters)
        pipeline = StereoPipeline(backend, PipelineConfig())
        print(f'{width}x{height}, {args.iters} iterations, {backend.describe()["vit_size"]}, '
              f'{backend.device}, torch {torch.__version__}, {torch.get_num_threads()} threads, '
              f'{n_pairs} pairs, {args.repeat} runs')
        print(f'{"backend":<28}{"batch":>6}{"min s/pair":>12}{"median":>10}{"vs B=1":>8}')
        base = None
        for batch in args.batch:
            runs = time_batches(pipeline, scenes, batch, args.repeat)
            base = base or min(runs)
            print(f'{"foundation_stereo (torch)":<28}{batch:>6}{min(runs):>12.3f}'
                  f'{statistics.median(runs):>10.3f}{min(runs) / base:>8.2f}')
        if args.onnx:
            from foundation_stereo_ros.model.onnx_export import export_onnx
            path = export_onnx(backend.model, Path(tmp) / 'model.onnx', height, width,
                               args.iters)
            onnx_backend = make_backend('onnx', model=str(path), provider=args.provider)
            onnx_pipeline = StereoPipeline(onnx_backend, PipelineConfig())
            label = f'onnx ({onnx_backend.provider.replace("ExecutionProvider", "")})'
            for batch in args.batch:
                runs = time_batches(onnx_pipeline, scenes, batch, args.repeat)
                print(f'{label:<28}{batch:>6}{min(runs):>12.3f}'
                      f'{statistics.median(runs):>10.3f}{min(runs) / base:>8.2f}')


if __name__ == '__main__':
    main()

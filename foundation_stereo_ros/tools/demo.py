r"""Offline demo: a rectified stereo pair to disparity, depth, a colour map and a point cloud.

    python -m foundation_stereo_ros.demo --left L.png --right R.png --intrinsics K.txt \
        --backend foundation_stereo --checkpoint pretrained/model_best_bp2.pth --out out/

With no --left/--right it runs on a bundled generated scene and compares with its ground truth.
Writes disparity.npy (float32 pixels, NaN invalid), depth.npy (metres, NaN invalid),
disparity.png (colour map), cloud.ply (coloured points) and, when the backend or the left-right
check gives one, confidence.npy (float32 in [0, 1]). When (almost) no pixel is left it says
which stage removed them and what to check.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from foundation_stereo_ros.interrupts import INTERRUPTED, exit_on_interrupt, quiet_main

with exit_on_interrupt(INTERRUPTED):  # Ctrl-C during the seconds of importing torch
    import numpy as np

    from foundation_stereo_ros import settings
    from foundation_stereo_ros.tools.common import (
        Notices,
        ToolError,
        add_camera_options,
        load_camera,
        load_pair,
        pipeline_from_args,
        removed_summary,
        run_command,
        write_outputs,
    )


def build_parser() -> argparse.ArgumentParser:
    """Command-line interface of the demo."""
    p = argparse.ArgumentParser(
        prog='python -m foundation_stereo_ros.demo',
        description='Disparity, depth and a point cloud from one rectified stereo pair.')
    p.add_argument('--left', type=Path, help='left rectified image (PNG/JPEG)')
    p.add_argument('--right', type=Path, help='right rectified image')
    add_camera_options(p)
    settings.add_arguments(p)
    p.add_argument('--out', type=Path, default=Path('out/demo'), help='output folder')
    return p


def run(args: argparse.Namespace) -> dict:
    """Run the demo; returns a summary (also printed)."""
    scene = None
    if args.left is None and args.right is None:
        from foundation_stereo_ros.synthetic.scenes import make_scene
        scene = make_scene(640, 480, seed=0)
        left, right, camera = scene.left, scene.right, scene.camera
        print('demo: no --left/--right given, using a generated 640x480 scene with ground truth')
    elif args.left is None or args.right is None:
        raise ToolError('give both --left and --right (or neither, for the generated scene)')
    else:
        if args.intrinsics is None and args.camera_info is None:
            raise ToolError('give the camera: --intrinsics K.txt or --camera-info L.yaml R.yaml')
        left, right = load_pair(args.left, args.right)
        camera = load_camera(args, left.shape[1], left.shape[0])

    pipeline, chosen = pipeline_from_args(args)
    start = time.perf_counter()
    result = pipeline.process(left, right, camera, want_confidence=True)
    elapsed = time.perf_counter() - start
    Notices('demo').tell(result)
    try:
        n_points = write_outputs(args.out, result, left)
    except OSError as exc:
        raise ToolError(f'cannot write the outputs to --out {args.out}: {exc}') from exc

    valid = np.isfinite(result.disparity)
    summary = {
        'backend': chosen.backend,
        'size': f'{camera.width}x{camera.height}',
        'seconds': round(elapsed, 3),
        'valid_share': round(float(valid.mean()), 4),
        'points': n_points,
        'confidence': result.confidence is not None,
        'removed': f'[{removed_summary(result)}]',
        'out': str(args.out),
    }
    if scene is not None:
        figures = scene.score(result.disparity)
        summary['coverage'] = round(figures['coverage'], 4)
        summary['bad_1px'] = round(figures['bad1'], 4)
        summary['mean_abs_err_px'] = round(figures['mae'], 3)
    print('demo: ' + ', '.join(f'{k}={v}' for k, v in summary.items()))
    return summary


@quiet_main(INTERRUPTED)
def main(argv: list[str] | None = None) -> int:
    """Console entry point."""
    return 0 if run_command(build_parser(), run, argv) is not None else 2


if __name__ == '__main__':
    sys.exit(main())

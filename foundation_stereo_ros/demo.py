r"""Offline demo: a rectified stereo pair to disparity, depth, a colour map and a point cloud.

    python -m foundation_stereo_ros.demo --left L.png --right R.png --intrinsics K.txt \
        --backend foundation_stereo --checkpoint pretrained/model_best_bp2.pth --out out/

With no --left/--right it runs on a bundled generated scene and compares with its ground truth.
Writes disparity.npy (float32 pixels, NaN invalid), depth.npy (metres, NaN invalid),
disparity.png (colour map) and cloud.ply (coloured points).
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from foundation_stereo_ros.backends import BACKENDS, make_backend
from foundation_stereo_ros.backends.onnx import PROVIDER_CHOICES
from foundation_stereo_ros.camera import CameraInfoError, StereoCamera
from foundation_stereo_ros.pipeline import PipelineConfig, StereoPipeline, StereoResult
from foundation_stereo_ros.ply import write_ply
from foundation_stereo_ros.visualize import colorize_disparity


class DemoError(RuntimeError):
    """A problem with the user's inputs, reported without a traceback."""


def build_parser() -> argparse.ArgumentParser:
    """Command-line interface of the demo."""
    p = argparse.ArgumentParser(
        prog='python -m foundation_stereo_ros.demo',
        description='Disparity, depth and a point cloud from one rectified stereo pair.')
    p.add_argument('--left', type=Path, help='left rectified image (PNG/JPEG)')
    p.add_argument('--right', type=Path, help='right rectified image')
    cam = p.add_mutually_exclusive_group()
    cam.add_argument('--intrinsics', type=Path,
                     help='K.txt: 9 numbers (row-major K), then the baseline in metres')
    cam.add_argument('--camera-info', type=Path, nargs=2, metavar=('LEFT_YAML', 'RIGHT_YAML'),
                     help='camera_calibration YAML files of the rectified left/right cameras')
    add_pipeline_arguments(p)
    p.add_argument('--out', type=Path, default=Path('out/demo'), help='output folder')
    return p


def add_pipeline_arguments(p: argparse.ArgumentParser) -> None:
    """Add the backend and pipeline options (shared by the demo, batch and sweep tools)."""
    p.add_argument('--backend', choices=tuple(BACKENDS), default='sgbm')
    p.add_argument('--checkpoint', type=Path,
                   help='model_best_bp2.pth (with its cfg.yaml in the same folder)')
    p.add_argument('--model', type=Path, help='exported .onnx file (backend onnx)')
    p.add_argument('--provider', default='auto', choices=PROVIDER_CHOICES,
                   help='ONNX Runtime provider (backend onnx); auto: TensorRT, CUDA, CPU')
    p.add_argument('--trt-cache-dir', default='',
                   help='TensorRT engine cache (backend onnx; default ~/.cache/...)')
    p.add_argument('--device', default='auto', choices=('auto', 'cuda', 'cpu'))
    p.add_argument('--precision', default='fp32', choices=('fp32', 'fp16', 'bf16'))
    p.add_argument('--valid-iters', type=int, default=32, help='GRU refinement iterations')
    p.add_argument('--hierarchical', action='store_true',
                   help='coarse-to-fine inference (better on large images)')
    p.add_argument('--scale', type=float, default=1.0,
                   help='run on the pair resized by this factor (0-1]; outputs at full size')
    p.add_argument('--z-far', type=float, default=math.inf, help='drop points beyond (m)')
    p.add_argument('--z-near', type=float, default=0.0, help='drop points nearer than (m)')
    p.add_argument('--keep-invisible', action='store_true',
                   help='keep disparities whose match falls outside the right image')


def pipeline_from_args(args: argparse.Namespace) -> StereoPipeline:
    """Build the backend and the pipeline the command line asks for (DemoError if it can't)."""
    try:
        backend = make_backend(args.backend, **backend_options(args))
        config = PipelineConfig(scale=args.scale, z_near=args.z_near, z_far=args.z_far,
                                remove_invisible=not args.keep_invisible)
    except (FileNotFoundError, ValueError) as exc:
        raise DemoError(str(exc)) from exc
    return StereoPipeline(backend, config)


def load_pair(left: Path, right: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read two images as RGB uint8, checking they exist and have the same size."""
    images = []
    for name, path in (('left', left), ('right', right)):
        if not path.is_file():
            raise DemoError(f'{name} image not found: {path}')
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise DemoError(f'{name} image could not be read (not an image?): {path}')
        images.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
    if images[0].shape != images[1].shape:
        raise DemoError(
            f'left image is {images[0].shape[1]}x{images[0].shape[0]} but right is '
            f'{images[1].shape[1]}x{images[1].shape[0]}: give a rectified pair of one size')
    return images[0], images[1]


def load_camera(args: argparse.Namespace, width: int, height: int) -> StereoCamera:
    """Load the stereo camera from --intrinsics or --camera-info."""
    try:
        if args.intrinsics is not None:
            if not args.intrinsics.is_file():
                raise DemoError(f'intrinsics file not found: {args.intrinsics}')
            return StereoCamera.from_k_file(args.intrinsics, width, height)
        for path in args.camera_info:
            if not path.is_file():
                raise DemoError(f'camera info file not found: {path}')
        return StereoCamera.from_calibration_yaml(*args.camera_info)
    except CameraInfoError as exc:
        raise DemoError(str(exc)) from exc


def backend_options(args: argparse.Namespace) -> dict:
    """Options for ``make_backend`` from the command line."""
    if args.backend == 'sgbm':
        return {}
    if args.backend == 'onnx':
        if args.model is None:
            raise DemoError('--backend onnx needs --model PATH.onnx (an exported network)')
        return {'model': str(args.model), 'provider': args.provider,
                'trt_cache_dir': args.trt_cache_dir, 'device': args.device}
    if args.checkpoint is None:
        raise DemoError(
            '--backend foundation_stereo needs --checkpoint PATH/model_best_bp2.pth (download '
            'the official weights folder, which holds cfg.yaml too), or use --backend sgbm')
    if not args.checkpoint.is_file():
        raise DemoError(f'checkpoint not found: {args.checkpoint}')
    if not (args.checkpoint.parent / 'cfg.yaml').is_file():
        raise DemoError(
            f'cfg.yaml not found next to {args.checkpoint}: copy the whole checkpoint folder '
            '(model_best_bp2.pth and its cfg.yaml), not only the .pth file')
    return {'checkpoint': str(args.checkpoint), 'device': args.device,
            'precision': args.precision, 'valid_iters': args.valid_iters,
            'hierarchical': args.hierarchical}


def write_outputs(out: Path, result: StereoResult, left: np.ndarray) -> int:
    """Write the four demo files; returns the number of points in cloud.ply."""
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / 'disparity.npy', result.disparity.astype(np.float32))
    np.save(out / 'depth.npy', result.depth.astype(np.float32))
    vis = colorize_disparity(result.disparity)
    cv2.imwrite(str(out / 'disparity.png'), cv2.cvtColor(vis, cv2.COLOR_RGB2BGR))
    return write_ply(out / 'cloud.ply', result.points, left)


def run(args: argparse.Namespace) -> dict:
    """Run the demo; returns a summary (also printed)."""
    scene = None
    if args.left is None and args.right is None:
        from foundation_stereo_ros.synthetic.scenes import make_scene
        scene = make_scene(640, 480, seed=0)
        left, right, camera = scene.left, scene.right, scene.camera
        print('demo: no --left/--right given, using a generated 640x480 scene with ground truth')
    elif args.left is None or args.right is None:
        raise DemoError('give both --left and --right (or neither, for the generated scene)')
    else:
        if args.intrinsics is None and args.camera_info is None:
            raise DemoError('give the camera: --intrinsics K.txt or --camera-info L.yaml R.yaml')
        left, right = load_pair(args.left, args.right)
        camera = load_camera(args, left.shape[1], left.shape[0])

    pipeline = pipeline_from_args(args)
    start = time.perf_counter()
    result = pipeline.process(left, right, camera)
    elapsed = time.perf_counter() - start
    n_points = write_outputs(args.out, result, left)

    valid = np.isfinite(result.disparity)
    summary = {
        'backend': args.backend,
        'size': f'{camera.width}x{camera.height}',
        'seconds': round(elapsed, 3),
        'valid_share': round(float(valid.mean()), 4),
        'points': n_points,
        'out': str(args.out),
    }
    if scene is not None:
        figures = scene.score(result.disparity)
        summary['coverage'] = round(figures['coverage'], 4)
        summary['bad_1px'] = round(figures['bad1'], 4)
        summary['mean_abs_err_px'] = round(figures['mae'], 3)
    print('demo: ' + ', '.join(f'{k}={v}' for k, v in summary.items()))
    return summary


def main(argv: list[str] | None = None) -> int:
    """Console entry point."""
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except DemoError as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())

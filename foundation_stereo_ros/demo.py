r"""Offline demo: a rectified stereo pair to disparity, depth, a colour map and a point cloud.

    python -m foundation_stereo_ros.demo --left L.png --right R.png --intrinsics K.txt \
        --backend foundation_stereo --checkpoint pretrained/model_best_bp2.pth --out out/

With no --left/--right it runs on a bundled generated scene and compares with its ground truth.
Writes disparity.npy (float32 pixels, NaN invalid), depth.npy (metres, NaN invalid),
disparity.png (colour map) and cloud.ply (coloured points).
"""
from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from foundation_stereo_ros.ros_main import exit_on_interrupt

with exit_on_interrupt(130):  # Ctrl-C during the seconds of importing torch
    import cv2
    import numpy as np

    from foundation_stereo_ros import settings
    from foundation_stereo_ros.backends import make_backend
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
    settings.add_arguments(p)
    p.add_argument('--out', type=Path, default=Path('out/demo'), help='output folder')
    return p


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


def check_checkpoint(checkpoint: str) -> None:
    """Refuse a missing checkpoint file or a missing cfg.yaml beside it, saying what to do."""
    path = Path(checkpoint)
    if not path.is_file():
        raise DemoError(f'checkpoint not found: {path}')
    if not (path.parent / 'cfg.yaml').is_file():
        raise DemoError(
            f'cfg.yaml not found next to {path}: copy the whole checkpoint folder '
            '(model_best_bp2.pth and its cfg.yaml), not only the .pth file')


def check_out(out: Path) -> None:
    """Refuse an --out that cannot become a folder, before the slow part runs."""
    blocker = next((p for p in (out, *out.parents) if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise DemoError(f'cannot write the outputs to --out {out}: {blocker} is a file; give '
                        'a folder')


def pipeline_from_args(args: argparse.Namespace, **overrides: settings.Value
                       ) -> tuple[StereoPipeline, settings.Settings]:
    """Build the pipeline the command line's settings ask for (shared with batch and sweep).

    ``overrides`` replace command-line values (the sweep's single starting values). Raises
    DemoError with what to do when the settings, checkpoint or model cannot be used.
    """
    try:
        chosen = settings.from_args(args, **overrides)
    except settings.SettingsError as exc:
        raise DemoError(str(exc)) from exc
    if chosen.backend == 'foundation_stereo':
        check_checkpoint(chosen.checkpoint)
    try:
        config = PipelineConfig(**chosen.pipeline_options())
    except ValueError as exc:
        raise DemoError(str(exc)) from exc
    try:
        backend = make_backend(chosen.backend, **chosen.backend_options())
    except Exception as exc:  # the checkpoint, model or device: the user's to fix
        what = {'foundation_stereo': '--checkpoint (a FoundationStereo .pth with its cfg.yaml '
                                     'beside it, or a Fast-FoundationStereo file), --device and '
                                     '--precision, or use --backend sgbm',
                'onnx': '--model (an exported .onnx), --provider and --device'}.get(
                    chosen.backend, 'the backend options')
        raise DemoError(f'cannot start the {chosen.backend} backend: {type(exc).__name__}: '
                        f'{exc}. Check {what}') from exc
    return StereoPipeline(backend, config), chosen


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

    check_out(args.out)
    pipeline, chosen = pipeline_from_args(args)
    start = time.perf_counter()
    result = pipeline.process(left, right, camera)
    elapsed = time.perf_counter() - start
    try:
        n_points = write_outputs(args.out, result, left)
    except OSError as exc:
        raise DemoError(f'cannot write the outputs to --out {args.out}: {exc}') from exc

    valid = np.isfinite(result.disparity)
    summary = {
        'backend': chosen.backend,
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


T = TypeVar('T')


def run_command(parser: argparse.ArgumentParser, run_args: Callable[[argparse.Namespace], T],
                argv: list[str] | None) -> T | None:
    """Parse ``argv`` and run; a DemoError is printed as ``error: ...`` and gives None.

    The offline front ends (demo, batch, sweep) share it: a user's mistake, no traceback.
    """
    args = parser.parse_args(argv)
    try:
        return run_args(args)
    except DemoError as exc:
        print(f'error: {exc}', file=sys.stderr)
        return None


def main(argv: list[str] | None = None) -> int:
    """Console entry point."""
    return 0 if run_command(build_parser(), run, argv) is not None else 2


if __name__ == '__main__':
    sys.exit(main())

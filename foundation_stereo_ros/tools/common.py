"""What the offline tools (demo, batch, sweep) share: inputs, the pipeline, output files, errors.

A tool imports this module, never another tool. A :class:`ToolError` is the user's mistake:
:func:`run_command` prints it as ``error: ...`` without a traceback.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np

from foundation_stereo_ros import settings
from foundation_stereo_ros.backends import make_backend
from foundation_stereo_ros.calibration_files import load_calibration_yaml, load_k_file
from foundation_stereo_ros.camera import StereoCamera
from foundation_stereo_ros.camera_info import CameraInfoError
from foundation_stereo_ros.pipeline import PipelineConfig, StereoPipeline, StereoResult
from foundation_stereo_ros.ply import write_ply
from foundation_stereo_ros.visualize import colorize_disparity


class ToolError(RuntimeError):
    """A problem with the user's inputs, reported without a traceback."""


def load_pair(left: Path, right: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read two images as RGB uint8, checking they exist and have the same size."""
    images = []
    for name, path in (('left', left), ('right', right)):
        if not path.is_file():
            raise ToolError(f'{name} image not found: {path}')
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise ToolError(f'{name} image could not be read (not an image?): {path}')
        images.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
    if images[0].shape != images[1].shape:
        raise ToolError(
            f'left image is {images[0].shape[1]}x{images[0].shape[0]} but right is '
            f'{images[1].shape[1]}x{images[1].shape[0]}: give a rectified pair of one size')
    return images[0], images[1]


def add_camera_options(parser: argparse.ArgumentParser,
                       intrinsics_help: str = 'K.txt: 9 numbers (row-major K), then the '
                                              'baseline in metres') -> None:
    """Add --intrinsics or --camera-info, the camera options :func:`load_camera` reads."""
    camera = parser.add_mutually_exclusive_group()
    camera.add_argument('--intrinsics', type=Path, help=intrinsics_help)
    camera.add_argument('--camera-info', type=Path, nargs=2, metavar=('LEFT_YAML', 'RIGHT_YAML'),
                        help='camera_calibration YAML files of the rectified left/right cameras')


def load_camera(args: argparse.Namespace, width: int, height: int) -> StereoCamera:
    """Load the stereo camera from --intrinsics or --camera-info."""
    try:
        if args.intrinsics is not None:
            if not args.intrinsics.is_file():
                raise ToolError(f'intrinsics file not found: {args.intrinsics}')
            return load_k_file(args.intrinsics, width, height)
        for path in args.camera_info:
            if not path.is_file():
                raise ToolError(f'camera info file not found: {path}')
        return load_calibration_yaml(*args.camera_info)
    except CameraInfoError as exc:
        raise ToolError(str(exc)) from exc


def check_checkpoint(checkpoint: str) -> None:
    """Refuse a missing checkpoint file or a missing cfg.yaml beside it, saying what to do."""
    path = Path(checkpoint)
    if not path.is_file():
        raise ToolError(f'checkpoint not found: {path}')
    if not (path.parent / 'cfg.yaml').is_file():
        raise ToolError(
            f'cfg.yaml not found next to {path}: copy the whole checkpoint folder '
            '(model_best_bp2.pth and its cfg.yaml), not only the .pth file')


def check_out(out: Path) -> None:
    """Refuse an --out that cannot become a folder, before the slow part runs."""
    blocker = next((p for p in (out, *out.parents) if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise ToolError(f'cannot write the outputs to --out {out}: {blocker} is a file; give '
                        'a folder')


def pipeline_from_args(args: argparse.Namespace, **overrides: settings.Value
                       ) -> tuple[StereoPipeline, settings.Settings]:
    """Build the pipeline the command line's settings ask for (shared with batch and sweep).

    ``overrides`` replace command-line values (the sweep's single starting values). Raises
    ToolError with what to do when the settings, checkpoint or model cannot be used.
    """
    try:
        chosen = settings.from_args(args, **overrides)
    except settings.SettingsError as exc:
        raise ToolError(str(exc)) from exc
    if chosen.backend == 'foundation_stereo':
        check_checkpoint(chosen.checkpoint)
    try:
        config = PipelineConfig(**chosen.pipeline_options())
    except ValueError as exc:
        raise ToolError(str(exc)) from exc
    try:
        backend = make_backend(chosen.backend, **chosen.backend_options())
    except Exception as exc:  # the checkpoint, model or device: the user's to fix
        what = {'foundation_stereo': '--checkpoint (a FoundationStereo .pth with its cfg.yaml '
                                     'beside it, or a Fast-FoundationStereo file), --device and '
                                     '--precision, or use --backend sgbm',
                'onnx': '--model (an exported .onnx), --provider and --device'}.get(
                    chosen.backend, 'the backend options')
        raise ToolError(f'cannot start the {chosen.backend} backend: {type(exc).__name__}: '
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


T = TypeVar('T')


def run_command(parser: argparse.ArgumentParser, run_args: Callable[[argparse.Namespace], T],
                argv: list[str] | None) -> T | None:
    """Parse ``argv`` and run; a ToolError is printed as ``error: ...`` and gives None.

    The offline front ends (demo, batch, sweep) share it: a user's mistake, no traceback.
    """
    args = parser.parse_args(argv)
    try:
        return run_args(args)
    except ToolError as exc:
        print(f'error: {exc}', file=sys.stderr)
        return None

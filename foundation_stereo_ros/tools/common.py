"""What the offline tools (demo, batch, sweep) share: inputs, the pipeline, output files, errors.

A tool imports this module, never another tool. A :class:`ToolError` is the user's mistake:
:func:`run_command` prints it as ``error: ...`` without a traceback. :func:`pipeline_from_args`
checks what every tool's command line shares (the settings, ``--out``, options without effect
on the chosen backend) before it builds the pipeline. Torch and OpenCV are imported when they
are needed, not here, so ``--help`` loads neither.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from foundation_stereo_ros import settings
from foundation_stereo_ros.calibration_files import load_calibration_yaml, load_k_file
from foundation_stereo_ros.camera import StereoCamera
from foundation_stereo_ros.camera_info import CameraInfoError

if TYPE_CHECKING:
    from foundation_stereo_ros.pipeline import StereoPipeline, StereoResult


class ToolError(RuntimeError):
    """A problem with the user's inputs, reported without a traceback."""


def load_pair(left: Path, right: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read two images as RGB uint8, checking they exist and have the same size."""
    import cv2
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


def check_out(out: Path) -> None:
    """Refuse an --out that cannot become a folder, before the slow part runs."""
    blocker = next((p for p in (out, *out.parents) if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise ToolError(f'cannot write the outputs to --out {out}: {blocker} is a file; give '
                        'a folder')


def warn_without_effect(backend: str, values: Mapping[str, settings.Value | Sequence]) -> None:
    """Say on stderr which of ``values`` (given by the user) the ``backend`` does not take."""
    for name in settings.without_effect(backend, values):
        print(f'warning: {settings.mention(name, phrasing=settings.COMMAND_LINE)} has no effect '
              f'on the {backend} backend', file=sys.stderr)


def pipeline_from_args(args: argparse.Namespace, swept: Mapping[str, Sequence] | None = None,
                       **overrides: settings.Value
                       ) -> tuple[StereoPipeline, settings.Settings]:
    """Check a tool's command line and build the pipeline its settings ask for.

    Every tool's shared arguments are checked here once: the settings, ``--out`` (it must be
    able to become a folder) and, as a warning, the options the chosen backend does not take
    (``swept``: the lists a sweep gives for settings, None where not given). ``overrides``
    replace command-line values (the sweep's single starting values). Raises ToolError with
    what to do when the settings, checkpoint or model cannot be used.
    """
    from foundation_stereo_ros.backends.startup import BackendStartError, build_backend
    from foundation_stereo_ros.pipeline import PipelineConfig, StereoPipeline

    try:
        chosen = settings.from_args(args, **overrides)
    except settings.SettingsError as exc:
        raise ToolError(str(exc)) from exc
    if getattr(args, 'out', None) is not None:
        check_out(args.out)
    given = {name: getattr(args, name) for name in chosen
             if hasattr(args, name) and name not in overrides}
    given.update({name: values for name, values in (swept or {}).items() if values is not None})
    warn_without_effect(chosen.backend, given)
    try:
        config = PipelineConfig(**chosen.pipeline_options())
    except ValueError as exc:
        raise ToolError(str(exc)) from exc
    try:
        backend = build_backend(chosen, settings.COMMAND_LINE)
    except BackendStartError as exc:
        raise ToolError(str(exc)) from exc
    return StereoPipeline(backend, config), chosen


def write_outputs(out: Path, result: StereoResult, left: np.ndarray) -> int:
    """Write the demo files (confidence.npy when there is one); returns cloud.ply's points."""
    import cv2

    from foundation_stereo_ros.ply import write_ply
    from foundation_stereo_ros.visualize import colorize_disparity

    out.mkdir(parents=True, exist_ok=True)
    np.save(out / 'disparity.npy', result.disparity.astype(np.float32))
    np.save(out / 'depth.npy', result.depth.astype(np.float32))
    if result.confidence is not None:
        np.save(out / 'confidence.npy', result.confidence.astype(np.float32))
    vis = colorize_disparity(result.disparity)
    cv2.imwrite(str(out / 'disparity.png'), cv2.cvtColor(vis, cv2.COLOR_RGB2BGR))
    return write_ply(out / 'cloud.ply', result.points, left)


class Notices:
    """Says each kind of the pipeline's notices once (no confidence, an empty output).

    Messages name the command-line options (``--z-far``), not the node's parameters.
    """

    def __init__(self, prog: str) -> None:
        """``prog``: the tool's name, the prefix of each line on stderr."""
        self.prog = prog
        self.told: set[str] = set()

    def tell(self, result: StereoResult, where: str = '') -> None:
        """Print the notices of ``result`` not said before (``where``: the pair's name)."""
        for kind, message in result.notices:
            if kind not in self.told:
                self.told.add(kind)
                prefix = f'{where}: ' if where else ''
                message = settings.option_names(message, every_word=False)
                print(f'{self.prog}: warning: {prefix}{message}', file=sys.stderr)


def removed_summary(result: StereoResult) -> str:
    """'invalid 3.1%, z_range 0.2%': the stages that removed pixels, for a summary line."""
    return ', '.join(f'{stage} {share:.1%}' for stage, share in result.removed.items()
                     if share > 0.0) or 'nothing'


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

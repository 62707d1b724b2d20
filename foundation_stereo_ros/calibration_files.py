"""Stereo cameras from calibration files: the official ``K.txt`` and camera_calibration YAML.

The offline tools take a camera from files instead of CameraInfo messages:
:func:`load_k_file` reads the FoundationStereo demo's ``K.txt`` (K and the baseline),
:func:`load_calibration_yaml` the left/right files that ``camera_calibration`` writes (read as
CameraInfo, with the same checks as the node's). Both return a
:class:`~foundation_stereo_ros.camera.StereoCamera` or raise
:class:`~foundation_stereo_ros.camera_info.CameraInfoError` saying what to fix.
"""
from __future__ import annotations

import math
import os
from collections.abc import Sequence
from types import SimpleNamespace

from foundation_stereo_ros.camera import StereoCamera
from foundation_stereo_ros.camera_info import CameraInfoError, principal_point_problem

__all__ = ['load_calibration_yaml', 'load_k_file']

_K_USAGE = ('expected line 1 = the 9 numbers of K row-major, line 2 = baseline in metres '
            '(the FoundationStereo K.txt format)')


def load_k_file(path: str | os.PathLike, width: int, height: int) -> StereoCamera:
    """Read the official FoundationStereo ``K.txt`` for ``width`` x ``height`` images.

    Line 1: the 9 numbers of K row-major; line 2: the baseline in metres. The K is used as is
    (no principal-point offset between the cameras, ``cx_right = None``); a principal point
    outside the images is refused (K of another resolution).
    """
    try:
        with open(path, encoding='utf-8') as f:
            lines = [line.strip() for line in f if line.strip()]
    except OSError as exc:
        raise CameraInfoError(f'cannot read intrinsics file {path}: {exc}') from exc
    if len(lines) < 2:
        raise CameraInfoError(f'{path}: {len(lines)} non-empty line(s); {_K_USAGE}')
    try:
        k = [float(v) for v in lines[0].split()]
        baseline_values = [float(v) for v in lines[1].split()]
    except ValueError as exc:
        raise CameraInfoError(f'{path}: not a number ({exc}); {_K_USAGE}') from exc
    if len(k) != 9 or len(baseline_values) != 1:
        raise CameraInfoError(f'{path}: line 1 has {len(k)} numbers and line 2 has '
                              f'{len(baseline_values)}; {_K_USAGE}')
    if not all(math.isfinite(v) for v in k) or k[1] != 0 or k[3] != 0 or \
            k[6:] != [0.0, 0.0, 1.0]:
        raise CameraInfoError(f'{path}: K must be finite and of the form '
                              f'[fx 0 cx 0 fy cy 0 0 1], got {k}')
    try:
        camera = StereoCamera(width=width, height=height, fx=k[0], fy=k[4], cx=k[2], cy=k[5],
                              baseline=baseline_values[0])
    except CameraInfoError as exc:
        raise CameraInfoError(f'{path}: {exc}; {_K_USAGE}') from exc
    problem = principal_point_problem('K', camera.cx, camera.cy, width, height)
    if problem:
        raise CameraInfoError(
            f'{path}: {problem}; give the images K was calibrated for, or scale the first two '
            'rows of K by the factor the images were resized by')
    return camera


def load_calibration_yaml(left_yaml: str | os.PathLike,
                          right_yaml: str | os.PathLike) -> StereoCamera:
    """Read the left/right YAML files written by ``camera_calibration`` (camera_info_manager).

    Same checks as :meth:`StereoCamera.from_camera_info`; ``frame_id`` stays empty (the files
    name the camera, not its TF frame).
    """
    return StereoCamera.from_camera_info(_read_calibration_yaml(left_yaml),
                                         _read_calibration_yaml(right_yaml))


def _read_calibration_yaml(path: str | os.PathLike) -> SimpleNamespace:
    """Read one camera_calibration YAML file as a duck-typed CameraInfo."""
    import yaml  # local: only this loader needs PyYAML

    try:
        with open(path, encoding='utf-8') as f:
            data = yaml.safe_load(f)
    except OSError as exc:
        raise CameraInfoError(f'cannot read calibration file {path}: {exc}') from exc
    except yaml.YAMLError as exc:
        raise CameraInfoError(f'{path} is not valid YAML: {exc}') from exc
    if not isinstance(data, dict):
        raise CameraInfoError(f'{path} is not a camera_calibration YAML file (no mapping)')
    missing = [key for key in ('image_width', 'image_height', 'camera_matrix',
                               'projection_matrix') if key not in data]
    if missing:
        raise CameraInfoError(f'{path} lacks {", ".join(missing)}; expected the YAML written by '
                              'camera_calibration / camera_info_manager')

    def matrix(key: str, rows: int, cols: int) -> Sequence[float]:
        entry = data[key]
        values = entry.get('data') if isinstance(entry, dict) else None
        if not isinstance(values, list) or len(values) != rows * cols:
            raise CameraInfoError(f'{path}: {key} must have rows: {rows}, cols: {cols} and '
                                  f'{rows * cols} numbers in data')
        return values

    return SimpleNamespace(
        width=data['image_width'], height=data['image_height'],
        k=matrix('camera_matrix', 3, 3), p=matrix('projection_matrix', 3, 4),
        header=SimpleNamespace(frame_id=''))

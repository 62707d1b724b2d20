"""Reading ``sensor_msgs/CameraInfo`` fields, checked: the error, the matrices, the cache key.

Messages are duck-typed (read by field name, no ROS import), so the same code reads real
messages, the camera_calibration YAML files and test stand-ins. Every check of a CameraInfo
matrix (size, numbers, finite values, focal lengths) is written here once, so the camera model
and the rectifier say the same thing about the same fault.
"""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ['CameraInfoError', 'camera_info_key', 'camera_info_matrix', 'check_focal_length',
           'which_camera_info']

FIX_CALIBRATION = 'fix the calibration file'


class CameraInfoError(ValueError):
    """A stereo calibration that cannot be used, with what is wrong and what to do."""


def which_camera_info(side: str = '') -> str:
    """Name a CameraInfo in messages: 'the left CameraInfo', or 'the CameraInfo'."""
    return f'the {side} CameraInfo' if side else 'the CameraInfo'


def camera_info_matrix(info: Any, field: str, shape: tuple[int, ...], which: str,
                       fix: str = FIX_CALIBRATION) -> np.ndarray:
    """Return CameraInfo field ``field`` (k, r, p...) as a finite float64 array of ``shape``.

    ``which`` names the CameraInfo (:func:`which_camera_info`), ``fix`` says what to do; a
    field that is not numeric, has the wrong number of values or holds NaN/inf raises
    :class:`CameraInfoError`.
    """
    values = getattr(info, field, None)
    name = field.upper()
    size = int(np.prod(shape))
    try:
        array = np.asarray(values if values is not None else (), dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise CameraInfoError(f'{which} {name} is not numeric ({exc}); {fix}') from exc
    if array.size != size:
        raise CameraInfoError(f'{which} {name} has {array.size} values, expected {size}; {fix}')
    if not np.isfinite(array).all():
        raise CameraInfoError(f'{which} {name} contains NaN or inf ({array.tolist()}); {fix}')
    return array.reshape(shape)


def check_focal_length(which: str, name: str, fx: float, fy: float, fix: str) -> None:
    """Refuse a matrix ``name`` (K or P) whose focal lengths are not positive."""
    if not (fx > 0 and fy > 0):
        raise CameraInfoError(
            f'{which} {name} has a non-positive focal length (fx={fx}, fy={fy}): the camera '
            f'is not calibrated; {fix}')


def camera_info_key(info: Any) -> tuple:
    """Every CameraInfo field that changes the geometry of its images, as a hashable tuple.

    Calibration (size, distortion model and D, K, R, P), operational settings (binning and ROI,
    REP 104) and the frame. Caches of anything derived from a CameraInfo key on this, so a
    driver that changes its binning or ROI with the same K and P is noticed.
    """
    roi = getattr(info, 'roi', None)
    header = getattr(info, 'header', None)
    return (
        int(getattr(info, 'width', 0)), int(getattr(info, 'height', 0)),
        str(getattr(info, 'distortion_model', '') or ''),
        *(_values(getattr(info, name, None)) for name in ('d', 'k', 'r', 'p')),
        int(getattr(info, 'binning_x', 0) or 0), int(getattr(info, 'binning_y', 0) or 0),
        tuple(int(getattr(roi, name, 0) or 0)
              for name in ('x_offset', 'y_offset', 'width', 'height')),
        bool(getattr(roi, 'do_rectify', False)),
        str(getattr(header, 'frame_id', '') or ''),
    )


def _values(array: Any) -> tuple[float, ...]:
    """Return a message array field (numpy, array.array, list or None) as a float tuple."""
    return tuple(np.asarray(array if array is not None else (), dtype=np.float64).ravel().tolist())


def principal_point_problem(matrix: str, cx: float, cy: float, width: int,
                            height: int) -> str | None:
    """Say why a principal point off the ``width`` x ``height`` image shows ``matrix`` is wrong.

    Off the image (pixel areas span -0.5 .. size - 0.5), the matrix belongs to another
    resolution: every depth would be off by the ratio of the focal lengths, silently.
    None when the point lies on the image.
    """
    if -0.5 <= cx <= width - 0.5 and -0.5 <= cy <= height - 0.5:
        return None
    return (f'the principal point ({cx:g}, {cy:g}) lies outside the {width}x{height} images, '
            f'so {matrix} is for another resolution (its principal point suggests about '
            f'{round(2 * cx + 1)}x{round(2 * cy + 1)})')

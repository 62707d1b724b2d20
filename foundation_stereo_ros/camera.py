"""Rectified stereo camera model: intrinsics of the left camera plus the baseline.

Everything downstream (disparity to depth, depth to points, DisparityImage ``f`` and ``t``) needs
only the rectified left projection and the baseline, so that is all :class:`StereoCamera` holds.
It is built from a pair of ``sensor_msgs/CameraInfo`` messages (duck-typed: no ROS import here),
from the official FoundationStereo ``K.txt`` file, or from ``camera_calibration`` YAML files.
"""
from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from types import SimpleNamespace
from typing import Any

import numpy as np

__all__ = ['CameraInfoError', 'StereoCamera']

# Rectified pairs share fx, fy and cy exactly in practice (one projection is written for both);
# the tolerance only absorbs float32 round trips through YAML or other serialisers.
_RECTIFIED_REL_TOL = 1e-5
_RECTIFIED_ABS_TOL = 1e-3  # pixels
_BASELINE_DISAGREE_REL = 0.01

_RECTIFY_HINT = ('publish rectified images and the rectified CameraInfo '
                 '(image_proc / stereo_image_proc rectify)')


class CameraInfoError(ValueError):
    """A stereo calibration that cannot be used, with what is wrong and what to do."""


def _warn(logger: Any, message: str) -> None:
    """Send a warning to a python logging logger or an rclpy logger (``.warn`` or ``.warning``)."""
    if logger is None:
        return
    method = getattr(logger, 'warning', None) or getattr(logger, 'warn', None)
    if method is not None:
        method(message)


def _finite_positive(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value) or value <= 0.0:
        raise CameraInfoError(f'{name} must be a finite number > 0, got {value!r}')
    return value


@dataclass(frozen=True)
class StereoCamera:
    """Rectified stereo pair: left-camera intrinsics (pixels), baseline (metres), image size.

    ``cx_right`` is the rectified right principal point; it differs from ``cx`` when the
    rectification keeps different principal points (``doffs = cx - cx_right``). Disparities in
    this package follow ``stereo_msgs/DisparityImage``: ``d = x_l - x_r - doffs`` and depth
    ``Z = fx * baseline / d``.
    """

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    baseline: float
    cx_right: float | None = None
    frame_id: str = ''

    def __post_init__(self) -> None:
        for name in ('width', 'height'):
            value = getattr(self, name)
            if isinstance(value, bool) or int(value) != value or value <= 0:
                raise CameraInfoError(f'{name} must be a positive integer, got {value!r}')
            object.__setattr__(self, name, int(value))
        for name in ('fx', 'fy', 'baseline'):
            object.__setattr__(self, name, _finite_positive(name, getattr(self, name)))
        for name in ('cx', 'cy', 'cx_right'):
            value = getattr(self, name)
            if value is None:
                continue
            if not math.isfinite(float(value)):
                raise CameraInfoError(f'{name} must be finite, got {value!r}')
            object.__setattr__(self, name, float(value))

    @property
    def K(self) -> np.ndarray:
        """Left camera matrix, (3, 3) float64."""
        return np.array([[self.fx, 0.0, self.cx],
                         [0.0, self.fy, self.cy],
                         [0.0, 0.0, 1.0]], dtype=np.float64)

    @property
    def fx_baseline(self) -> float:
        """``fx * baseline`` (pixel metres): depth = fx_baseline / disparity."""
        return self.fx * self.baseline

    @property
    def doffs(self) -> float:
        """``cx - cx_right`` in pixels (0 when the right principal point is not known)."""
        return 0.0 if self.cx_right is None else self.cx - self.cx_right

    # ------------------------------------------------------------------ constructors

    @classmethod
    def from_camera_info(cls, left: Any, right: Any, *, baseline: float | None = None,
                         logger: Any = None) -> StereoCamera:
        """Build from the rectified left/right ``sensor_msgs/CameraInfo`` pair.

        fx, fy, cx, cy come from the left projection matrix P, ``cx_right`` from the right P
        and ``baseline = (P_left[3] - P_right[3]) / fx`` (``-P_right[3] / P_right[0]`` when the
        left Tx is 0, as image_pipeline publishes it). ``binning_x/y`` and ``roi`` are applied
        the way ``image_geometry.PinholeCameraModel`` does for rectified images (ROI offset
        subtracted, then divided by the binning), so the camera matches the images received.

        When a P is all zeros (uncalibrated driver), K is used instead with a warning sent to
        ``logger`` (anything with ``.warning`` or ``.warn``); the images must then already be
        rectified and ``baseline`` must be given. An explicit ``baseline`` always wins over P.

        Raises :class:`CameraInfoError` saying what is wrong and what to do.
        """
        lw, lh = _image_size(left, 'left')
        rw, rh = _image_size(right, 'right')
        if (lw, lh) != (rw, rh):
            raise CameraInfoError(
                f'left and right CameraInfo have different image sizes ({lw}x{lh} vs {rw}x{rh});'
                f' {_RECTIFY_HINT} so that both images share one size')
        k_left = _matrix(left, 'k', 9, 'left')
        k_right = _matrix(right, 'k', 9, 'right')
        p_left = _matrix(left, 'p', 12, 'left')
        p_right = _matrix(right, 'p', 12, 'right')
        if baseline is not None:
            baseline = _finite_positive('baseline', baseline)

        if not p_left.any() or not p_right.any():
            which = ' and '.join(n for n, p in (('left', p_left), ('right', p_right))
                                 if not p.any())
            if baseline is None:
                raise CameraInfoError(
                    f'the {which} CameraInfo projection matrix P is all zeros (uncalibrated '
                    'camera), so there is no baseline; calibrate the stereo pair '
                    '(camera_calibration cameracalibrator with --approximate for two cameras) or '
                    'pass baseline= in metres together with rectified images')
            for name, k in (('left', k_left), ('right', k_right)):
                if not k.any():
                    raise CameraInfoError(
                        f'the {name} CameraInfo has both K and P all zeros (uncalibrated '
                        'camera); calibrate the cameras with camera_calibration')
            _warn(logger, f'the {which} CameraInfo P is all zeros; using K instead and assuming '
                          'the images are already rectified (set P to fix this warning)')
            fx_l, fy_l, cx_l, cy_l, tx_l = k_left[0], k_left[4], k_left[2], k_left[5], 0.0
            fx_r, fy_r, cx_r, cy_r, tx_r = k_right[0], k_right[4], k_right[2], k_right[5], 0.0
        else:
            fx_l, fy_l, cx_l, cy_l, tx_l = p_left[0], p_left[5], p_left[2], p_left[6], p_left[3]
            fx_r, fy_r, cx_r, cy_r, tx_r = (p_right[0], p_right[5], p_right[2], p_right[6],
                                            p_right[3])

        for side, fx, fy in (('left', fx_l, fy_l), ('right', fx_r, fy_r)):
            if fx <= 0 or fy <= 0:
                raise CameraInfoError(
                    f'the {side} CameraInfo has a non-positive focal length (fx={fx}, fy={fy}); '
                    'calibrate the camera and publish its rectified CameraInfo')
        for name, a, b in (('fx', fx_l, fx_r), ('fy', fy_l, fy_r), ('cy', cy_l, cy_r)):
            if not math.isclose(a, b, rel_tol=_RECTIFIED_REL_TOL, abs_tol=_RECTIFIED_ABS_TOL):
                raise CameraInfoError(
                    f'the pair is not rectified: {name} differs between the left and right '
                    f'projection matrices ({a} vs {b}); {_RECTIFY_HINT}')

        baseline_p = (tx_l - tx_r) / fx_l
        if baseline is None:
            if tx_r == 0.0 and tx_l == 0.0:
                raise CameraInfoError(
                    'the right CameraInfo P[3] (Tx = -fx * baseline) is 0, so the baseline is '
                    'missing; publish the stereo-calibrated right CameraInfo (Tx < 0) or pass '
                    'baseline= in metres')
            if baseline_p < 0.0:
                raise CameraInfoError(
                    f'the baseline from P is negative ({baseline_p:.6g} m: left P[3]={tx_l}, '
                    f'right P[3]={tx_r}); the left and right cameras look swapped: subscribe '
                    'the left topic to the camera whose Tx is 0 and the right topic to the one '
                    'whose Tx is negative')
            baseline = baseline_p
        elif baseline_p > 0.0 and abs(baseline_p - baseline) > _BASELINE_DISAGREE_REL * baseline:
            _warn(logger, f'baseline={baseline} m given explicitly overrides {baseline_p:.6g} m '
                          'from the right CameraInfo P')

        binning_x, binning_y, roi = _binning_and_roi(left)
        width, height = lw, lh
        if roi is not None:
            x_off, y_off, width, height = roi
            cx_l, cx_r, cy_l = cx_l - x_off, cx_r - x_off, cy_l - y_off
        if binning_x > 1 or binning_y > 1:
            fx_l, cx_l, cx_r = fx_l / binning_x, cx_l / binning_x, cx_r / binning_x
            fy_l, cy_l = fy_l / binning_y, cy_l / binning_y
            width, height = width // binning_x, height // binning_y
        header = getattr(left, 'header', None)
        frame_id = str(getattr(header, 'frame_id', '') or '')
        return cls(width=width, height=height, fx=fx_l, fy=fy_l, cx=cx_l, cy=cy_l,
                   baseline=baseline, cx_right=cx_r, frame_id=frame_id)

    @classmethod
    def from_k_file(cls, path: str | os.PathLike, width: int, height: int) -> StereoCamera:
        """Read the official FoundationStereo ``K.txt``.

        Line 1: the 9 numbers of K row-major; line 2: the baseline in metres. The K is used as
        is (no principal-point offset between the cameras, ``cx_right = None``).
        """
        try:
            with open(path, encoding='utf-8') as f:
                lines = [line.strip() for line in f if line.strip()]
        except OSError as exc:
            raise CameraInfoError(f'cannot read intrinsics file {path}: {exc}') from exc
        usage = ('expected line 1 = the 9 numbers of K row-major, line 2 = baseline in metres '
                 '(the FoundationStereo K.txt format)')
        if len(lines) < 2:
            raise CameraInfoError(f'{path}: {len(lines)} non-empty line(s); {usage}')
        try:
            k = [float(v) for v in lines[0].split()]
            baseline_values = [float(v) for v in lines[1].split()]
        except ValueError as exc:
            raise CameraInfoError(f'{path}: not a number ({exc}); {usage}') from exc
        if len(k) != 9 or len(baseline_values) != 1:
            raise CameraInfoError(f'{path}: line 1 has {len(k)} numbers and line 2 has '
                                  f'{len(baseline_values)}; {usage}')
        if not all(math.isfinite(v) for v in k) or k[1] != 0 or k[3] != 0 or \
                k[6:] != [0.0, 0.0, 1.0]:
            raise CameraInfoError(f'{path}: K must be finite and of the form '
                                  f'[fx 0 cx 0 fy cy 0 0 1], got {k}')
        try:
            return cls(width=width, height=height, fx=k[0], fy=k[4], cx=k[2], cy=k[5],
                       baseline=baseline_values[0])
        except CameraInfoError as exc:
            raise CameraInfoError(f'{path}: {exc}; {usage}') from exc

    @classmethod
    def from_calibration_yaml(cls, left_yaml: str | os.PathLike, right_yaml: str | os.PathLike,
                              *, baseline: float | None = None,
                              logger: Any = None) -> StereoCamera:
        """Read the left/right YAML files written by ``camera_calibration`` (camera_info_manager).

        Same checks as :meth:`from_camera_info`; ``frame_id`` stays empty (the files name the
        camera, not its TF frame).
        """
        return cls.from_camera_info(_load_calibration_yaml(left_yaml),
                                    _load_calibration_yaml(right_yaml),
                                    baseline=baseline, logger=logger)

    # ------------------------------------------------------------------ resizing

    def scaled(self, scale: float) -> StereoCamera:
        """Camera for images resized with ``cv2.resize(fx=scale, fy=scale)``.

        The new size is ``round(width * scale)`` (what OpenCV computes) and the intrinsics
        follow OpenCV's pixel-centre sampling (INTER_LINEAR / INTER_AREA map output pixel
        ``u'`` to input ``(u' + 0.5) / scale - 0.5``), so ``f' = f * s`` and
        ``c' = (c + 0.5) * s - 0.5``. The official demo uses ``K[:2] *= scale`` instead, which
        puts the principal point ``0.5 * (1 - s)`` pixels off (0.25 px at s = 0.5). The baseline
        and disparity offsets in metres are unchanged.
        """
        scale = _finite_positive('scale', scale)
        width = max(1, round(self.width * scale))
        height = max(1, round(self.height * scale))
        return self._resampled(width, height, scale, scale)

    def resized(self, width: int, height: int) -> StereoCamera:
        """Camera for images resized with ``cv2.resize(dsize=(width, height))``.

        Scale factors are ``width / self.width`` and ``height / self.height`` (as OpenCV uses
        for an explicit size), with the same pixel-centre convention as :meth:`scaled`.
        """
        if int(width) <= 0 or int(height) <= 0:
            raise CameraInfoError(f'resized() needs a positive size, got {width}x{height}')
        return self._resampled(int(width), int(height), width / self.width,
                               height / self.height)

    def _resampled(self, width: int, height: int, sx: float, sy: float) -> StereoCamera:
        cx_right = None if self.cx_right is None else (self.cx_right + 0.5) * sx - 0.5
        return replace(self, width=width, height=height, fx=self.fx * sx, fy=self.fy * sy,
                       cx=(self.cx + 0.5) * sx - 0.5, cy=(self.cy + 0.5) * sy - 0.5,
                       cx_right=cx_right)


# ---------------------------------------------------------------------- CameraInfo helpers

def _image_size(info: Any, side: str) -> tuple[int, int]:
    width, height = int(getattr(info, 'width', 0)), int(getattr(info, 'height', 0))
    if width <= 0 or height <= 0:
        raise CameraInfoError(
            f'the {side} CameraInfo has image size {width}x{height}; the camera driver must '
            'fill width and height (load a calibration file with camera_info_manager)')
    return width, height


def _matrix(info: Any, field: str, size: int, side: str) -> np.ndarray:
    values = getattr(info, field, None)
    name = field.upper()
    try:
        array = np.asarray(values if values is not None else [], dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise CameraInfoError(f'the {side} CameraInfo {name} is not numeric: {exc}') from exc
    if array.size != size:
        raise CameraInfoError(f'the {side} CameraInfo {name} has {array.size} values, '
                              f'expected {size}')
    if not np.isfinite(array).all():
        raise CameraInfoError(f'the {side} CameraInfo {name} contains NaN or inf '
                              f'({array.tolist()}); fix the calibration file')
    return array


def _binning_and_roi(info: Any) -> tuple[int, int, tuple[int, int, int, int] | None]:
    binning_x = max(int(getattr(info, 'binning_x', 0) or 0), 1)
    binning_y = max(int(getattr(info, 'binning_y', 0) or 0), 1)
    roi = getattr(info, 'roi', None)
    box = None
    if roi is not None:
        x, y = int(getattr(roi, 'x_offset', 0)), int(getattr(roi, 'y_offset', 0))
        w, h = int(getattr(roi, 'width', 0)), int(getattr(roi, 'height', 0))
        # An all-zero ROI (or one covering the image) means the full image, as in image_geometry.
        full = (w == 0 or h == 0) or (x == 0 and y == 0 and w == info.width and h == info.height)
        if not full:
            box = (x, y, w, h)
    return binning_x, binning_y, box


def _load_calibration_yaml(path: str | os.PathLike) -> SimpleNamespace:
    import yaml  # local: only this constructor needs PyYAML

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

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

__all__ = ['CameraInfoError', 'ImageGeometry', 'StereoCamera', 'camera_info_key']

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


def _finite_positive(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value) or value <= 0.0:
        raise CameraInfoError(f'{name} must be a finite number > 0, got {value!r}')
    return value


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


@dataclass(frozen=True)
class ImageGeometry:
    """Where one camera's images lie on its calibrated sensor: binning and ROI (REP 104).

    K and P describe the full sensor (``full_size``, the CameraInfo width and height). A ROI,
    given in full-sensor pixels, crops the sensor; binning then combines ``binning_x`` by
    ``binning_y`` blocks into one pixel, so the images are ``roi.width // binning_x`` by
    ``roi.height // binning_y``. :meth:`apply` maps intrinsics to those images.
    """

    full_size: tuple[int, int]
    binning_x: int = 1
    binning_y: int = 1
    roi: tuple[int, int, int, int] | None = None  # x_offset, y_offset, width, height

    @classmethod
    def from_camera_info(cls, info: Any, side: str = '') -> ImageGeometry:
        """Read and check width, height, binning and ROI; CameraInfoError saying what to fix."""
        which = f'the {side} CameraInfo' if side else 'the CameraInfo'
        width, height = int(getattr(info, 'width', 0)), int(getattr(info, 'height', 0))
        if width <= 0 or height <= 0:
            raise CameraInfoError(
                f'{which} has image size {width}x{height}; the camera driver must fill width '
                'and height (load a calibration file with camera_info_manager)')
        # REP 104: binning 0 means 1 (no binning).
        binning_x = max(int(getattr(info, 'binning_x', 0) or 0), 1)
        binning_y = max(int(getattr(info, 'binning_y', 0) or 0), 1)
        roi = getattr(info, 'roi', None)
        x, y, w, h = (int(getattr(roi, name, 0) or 0)
                      for name in ('x_offset', 'y_offset', 'width', 'height'))
        box: tuple[int, int, int, int] | None = (x, y, w, h)
        if (x, y, w, h) == (0, 0, 0, 0) or (x, y, w, h) == (0, 0, width, height):
            box = None  # REP 104: an all-zero ROI is the full image
        elif w <= 0 or h <= 0 or x + w > width or y + h > height:
            raise CameraInfoError(
                f'{which} ROI {w}x{h} at ({x}, {y}) does not fit in the calibrated '
                f'{width}x{height} image; the ROI is in full-sensor pixels (REP 104): set it to '
                'the sensor window the images come from, or all zeros for the full image')
        crop_w, crop_h = (width, height) if box is None else (w, h)
        if crop_w // binning_x == 0 or crop_h // binning_y == 0:
            raise CameraInfoError(
                f'{which} binning {binning_x}x{binning_y} leaves no pixel of the {crop_w}x'
                f'{crop_h} image; set binning_x/binning_y to the camera\'s binning')
        return cls((width, height), binning_x, binning_y, box)

    @property
    def adjusts(self) -> bool:
        """Tell whether binning or a ROI makes the images differ from the full sensor."""
        return self.roi is not None or self.binning_x > 1 or self.binning_y > 1

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the images."""
        crop_w, crop_h = self.full_size if self.roi is None else self.roi[2:]
        return crop_w // self.binning_x, crop_h // self.binning_y

    def apply(self, fx: float, fy: float, cx: float, cy: float) -> tuple[float, ...]:
        """Full-sensor intrinsics to those of the images: (fx, fy, cx, cy).

        The ROI offset moves the principal point; binning divides the focal lengths and maps
        the principal point with pixel centres: binned pixel ``u`` is the mean of sensor pixels
        ``b * u .. b * u + b - 1`` (after the ROI offset), centred on ``b * u + (b - 1) / 2``,
        so ``c' = (c - offset + 0.5) / b - 0.5`` (as :meth:`StereoCamera.scaled`).
        image_geometry divides ``c - offset`` by ``b`` instead, 0.25 px away at ``b = 2``.
        """
        x_off, y_off = (0, 0) if self.roi is None else self.roi[:2]
        bx, by = self.binning_x, self.binning_y
        return (fx / bx, fy / by, (cx - x_off + 0.5) / bx - 0.5, (cy - y_off + 0.5) / by - 0.5)

    def describe(self) -> str:
        """Say how the image size follows from the calibration, for messages."""
        width, height = self.full_size
        parts = [f'calibrated at {width}x{height}']
        if self.roi is not None:
            x, y, w, h = self.roi
            parts.append(f'ROI {w}x{h} at ({x}, {y})')
        if self.binning_x > 1 or self.binning_y > 1:
            parts.append(f'binning {self.binning_x}x{self.binning_y}')
        if not self.adjusts:
            return f'{width}x{height} (full sensor, no binning or ROI)'
        width, height = self.size
        return ', '.join(parts) + f': {width}x{height} images'

    def size_mismatch(self, width: int, height: int) -> str:
        """Why ``width`` x ``height`` images disagree with this geometry, and what to fix.

        Names binning and ROI when the CameraInfo uses them, or when the images have the size
        they would have without them (a driver that reports a mode its images are not in).
        """
        full_w, full_h = self.full_size
        bx, by = self.binning_x, self.binning_y
        said = (f'images are {width}x{height} but CameraInfo says '
                f'{self.size[0]}x{self.size[1]} ({self.describe()})')
        if not self.adjusts:
            if (width, height) in ((full_w // 2, full_h // 2), (full_w // 4, full_h // 4)):
                hint = ('the images look binned or resized: a driver that bins must set '
                        'binning_x and binning_y in CameraInfo (REP 104); otherwise publish the '
                        'CameraInfo calibrated at this resolution')
            else:
                hint = ('publish the CameraInfo of these images; a camera that crops its sensor '
                        'must set the ROI in CameraInfo (REP 104)')
        elif (width, height) == (full_w, full_h):
            hint = ('the images are full frames: the driver reports binning or a ROI that its '
                    'images do not have; set CameraInfo binning_x/binning_y to 0 and the ROI to '
                    'all zeros, or configure the camera to bin/crop')
        elif self.roi is not None and (width, height) == self.roi[2:]:
            hint = (f'the images have the ROI size without the binning {bx}x{by}: set '
                    'binning_x/binning_y to what the camera does')
        elif self.roi is not None and (width, height) == (full_w // bx, full_h // by):
            hint = ('the images are binned full frames: the ROI in CameraInfo is not applied '
                    'to them; set the ROI to all zeros or configure the camera to crop')
        else:
            hint = ('the CameraInfo binning and ROI must describe the images (REP 104: the ROI '
                    'in full-sensor pixels, then binning)')
        return f'{said}; {hint}'


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
        left Tx is 0, as image_pipeline publishes it). Each side's ``binning_x/y`` and ``roi``
        are applied as REP 104 defines them (see :class:`ImageGeometry`), so the camera
        describes the images received, not the full sensor.

        When a P is all zeros (uncalibrated driver), K is used instead with a warning sent to
        ``logger`` (anything with ``.warning`` or ``.warn``); the images must then already be
        rectified and ``baseline`` must be given. An explicit ``baseline`` always wins over P.

        Raises :class:`CameraInfoError` saying what is wrong and what to do.
        """
        geo_l = ImageGeometry.from_camera_info(left, 'left')
        geo_r = ImageGeometry.from_camera_info(right, 'right')
        if geo_l.full_size != geo_r.full_size:
            (lw, lh), (rw, rh) = geo_l.full_size, geo_r.full_size
            raise CameraInfoError(
                f'left and right CameraInfo have different image sizes ({lw}x{lh} vs {rw}x{rh});'
                f' {_RECTIFY_HINT} so that both images share one size')
        if geo_l.size != geo_r.size:
            raise CameraInfoError(
                f'left and right images differ in size after binning and ROI (left: '
                f'{geo_l.describe()}; right: {geo_r.describe()}); set the same binning and ROI '
                'size on both cameras')
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
                    '(camera_calibration cameracalibrator with --approximate for two cameras); '
                    'offline, the demo also takes --intrinsics K.txt (K and the baseline)')
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
        # The baseline in full-sensor pixels (binning scales fx and Tx alike).
        baseline_p = (tx_l - tx_r) / fx_l
        fx_l, fy_l, cx_l, cy_l = geo_l.apply(fx_l, fy_l, cx_l, cy_l)
        fx_r, fy_r, cx_r, cy_r = geo_r.apply(fx_r, fy_r, cx_r, cy_r)
        for name, a, b in (('fx', fx_l, fx_r), ('fy', fy_l, fy_r), ('cy', cy_l, cy_r)):
            if not math.isclose(a, b, rel_tol=_RECTIFIED_REL_TOL, abs_tol=_RECTIFIED_ABS_TOL):
                adjusted = ''
                if geo_l.adjusts or geo_r.adjusts:
                    adjusted = (f' after binning and ROI (left: {geo_l.describe()}; right: '
                                f'{geo_r.describe()}: the rows of both ROIs must start at the '
                                'same rectified row)')
                raise CameraInfoError(
                    f'the pair is not rectified: {name} differs between the left and right '
                    f'projection matrices ({a} vs {b}){adjusted}; {_RECTIFY_HINT}')

        if baseline is None:
            if tx_r == 0.0 and tx_l == 0.0:
                raise CameraInfoError(
                    'the right CameraInfo P[3] (Tx = -fx * baseline) is 0, so the baseline is '
                    'missing; publish the stereo-calibrated right CameraInfo (Tx < 0, from '
                    'camera_calibration of the pair)')
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

        header = getattr(left, 'header', None)
        frame_id = str(getattr(header, 'frame_id', '') or '')
        width, height = geo_l.size
        return cls(width=width, height=height, fx=fx_l, fy=fy_l, cx=cx_l, cy=cy_l,
                   baseline=baseline, cx_right=cx_r, frame_id=frame_id)

    @classmethod
    def from_k_file(cls, path: str | os.PathLike, width: int, height: int) -> StereoCamera:
        """Read the official FoundationStereo ``K.txt``.

        Line 1: the 9 numbers of K row-major; line 2: the baseline in metres. The K is used as
        is (no principal-point offset between the cameras, ``cx_right = None``); a principal
        point outside the ``width`` x ``height`` image is refused (K of another resolution).
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
            camera = cls(width=width, height=height, fx=k[0], fy=k[4], cx=k[2], cy=k[5],
                         baseline=baseline_values[0])
        except CameraInfoError as exc:
            raise CameraInfoError(f'{path}: {exc}; {usage}') from exc
        problem = principal_point_problem('K', camera.cx, camera.cy, width, height)
        if problem:
            raise CameraInfoError(
                f'{path}: {problem}; give the images K was calibrated for, or scale the first '
                'two rows of K by the factor the images were resized by')
        return camera

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

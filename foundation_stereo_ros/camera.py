"""Rectified stereo camera model: intrinsics of the left camera plus the baseline.

Everything downstream (disparity to depth, depth to points, DisparityImage ``f`` and ``t``) needs
only the rectified left projection and the baseline, so that is all :class:`StereoCamera` holds.
It is built from a pair of ``sensor_msgs/CameraInfo`` messages (duck-typed: no ROS import here),
with binning and ROI applied (:mod:`~foundation_stereo_ros.binning_roi`); the file loaders of
the offline tools are :mod:`~foundation_stereo_ros.calibration_files`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from foundation_stereo_ros.binning_roi import ImageGeometry
from foundation_stereo_ros.camera_info import (
    CameraInfoError,
    camera_info_matrix,
    check_focal_length,
    which_camera_info,
)

__all__ = ['StereoCamera']

# Rectified pairs share fx, fy and cy exactly in practice (one projection is written for both);
# the tolerance only absorbs float32 round trips through YAML or other serialisers.
_RECTIFIED_REL_TOL = 1e-5
_RECTIFIED_ABS_TOL = 1e-3  # pixels

_RECTIFY_HINT = ('publish rectified images and the rectified CameraInfo '
                 '(image_proc / stereo_image_proc rectify)')


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

    def resized(self, width: int, height: int) -> StereoCamera:
        """Camera for images resized with ``cv2.resize(dsize=(width, height))``.

        OpenCV samples pixel centres (INTER_LINEAR / INTER_AREA map output pixel ``u'`` to
        input ``(u' + 0.5) / s - 0.5``, ``s = width / self.width``), so ``f' = f * s`` and
        ``c' = (c + 0.5) * s - 0.5``; the official demo's ``K[:2] *= scale`` puts the principal
        point ``0.5 * (1 - s)`` pixels off. The baseline in metres is unchanged.
        """
        if int(width) <= 0 or int(height) <= 0:
            raise CameraInfoError(f'resized() needs a positive size, got {width}x{height}')
        sx, sy = width / self.width, height / self.height
        cx_right = None if self.cx_right is None else (self.cx_right + 0.5) * sx - 0.5
        return replace(self, width=int(width), height=int(height), fx=self.fx * sx,
                       fy=self.fy * sy, cx=(self.cx + 0.5) * sx - 0.5,
                       cy=(self.cy + 0.5) * sy - 0.5, cx_right=cx_right)

    @classmethod
    def from_camera_info(cls, left: Any, right: Any) -> StereoCamera:
        """Build from the rectified left/right ``sensor_msgs/CameraInfo`` pair.

        fx, fy, cx, cy come from the left projection matrix P, ``cx_right`` from the right P
        and ``baseline = (P_left[3] - P_right[3]) / fx`` (``-P_right[3] / P_right[0]`` when the
        left Tx is 0, as image_pipeline publishes it). Each side's ``binning_x/y`` and ``roi``
        are applied as REP 104 defines them (see :class:`ImageGeometry`), so the camera
        describes the images received, not the full sensor.

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
        projections = {}
        for side, info in (('left', left), ('right', right)):
            which = which_camera_info(side)
            camera_info_matrix(info, 'k', (3, 3), which)  # a broken K is a broken calibration
            projections[side] = camera_info_matrix(info, 'p', (3, 4), which)
        zero = [side for side, p in projections.items() if not p.any()]
        if zero:
            raise CameraInfoError(
                f'the {" and ".join(zero)} CameraInfo projection matrix P is all zeros '
                '(uncalibrated camera), so there is no baseline; calibrate the stereo pair '
                '(camera_calibration cameracalibrator with --approximate for two cameras); '
                'offline, the demo also takes --intrinsics K.txt (K and the baseline)')
        (fx_l, fy_l, cx_l, cy_l, tx_l), (fx_r, fy_r, cx_r, cy_r, tx_r) = (
            (p[0, 0], p[1, 1], p[0, 2], p[1, 2], p[0, 3]) for p in projections.values())
        for side, fx, fy in (('left', fx_l, fy_l), ('right', fx_r, fy_r)):
            check_focal_length(which_camera_info(side), 'P', fx, fy,
                               'calibrate the camera and publish its rectified CameraInfo')
        # The baseline in full-sensor pixels (binning scales fx and Tx alike).
        baseline = (tx_l - tx_r) / fx_l
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
        if tx_r == 0.0 and tx_l == 0.0:
            raise CameraInfoError(
                'the right CameraInfo P[3] (Tx = -fx * baseline) is 0, so the baseline is '
                'missing; publish the stereo-calibrated right CameraInfo (Tx < 0, from '
                'camera_calibration of the pair)')
        if baseline < 0.0:
            raise CameraInfoError(
                f'the baseline from P is negative ({baseline:.6g} m: left P[3]={tx_l}, '
                f'right P[3]={tx_r}); the left and right cameras look swapped: subscribe '
                'the left topic to the camera whose Tx is 0 and the right topic to the one '
                'whose Tx is negative')

        header = getattr(left, 'header', None)
        frame_id = str(getattr(header, 'frame_id', '') or '')
        width, height = geo_l.size
        return cls(width=width, height=height, fx=fx_l, fy=fy_l, cx=cx_l, cy=cy_l,
                   baseline=baseline, cx_right=cx_r, frame_id=frame_id)

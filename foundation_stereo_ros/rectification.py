"""Rectify raw stereo images with the calibration in their CameraInfo (D, K, R, P).

Many stereo drivers publish ``image_raw`` and the full calibration: the lens distortion ``D``
(model named by ``distortion_model``), the raw intrinsics ``K``, the rectifying rotation ``R``
and the rectified projection ``P``. :class:`StereoRectifier` checks each CameraInfo, builds
OpenCV rectification maps once (again only when the CameraInfo changes, see
:func:`~foundation_stereo_ros.camera_info.camera_info_key`) and resamples a pair into the rectified
frame, where the pipeline expects it. The results are described by the *rectified* CameraInfo
(:func:`rectified_camera_info`: K from P, no distortion, identity R), so outputs are in the
rectified left frame with P's intrinsics.

Binning and ROI (REP 104) are honoured: distortion and rotation act on normalised coordinates,
so the maps of a binned or cropped image come from K and P mapped to that image by
:class:`~foundation_stereo_ros.binning_roi.ImageGeometry`; the rectified image keeps the raw one's
size.

Resampling runs with ``cv2.remap`` on the host or with ``torch.nn.functional.grid_sample`` on
a torch device (``benchmarks/bench_rectify.py`` compares them). No ROS import: CameraInfo
messages are read by field name.
"""
from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from foundation_stereo_ros.binning_roi import ImageGeometry
from foundation_stereo_ros.camera_info import (
    FIX_CALIBRATION,
    CameraInfoError,
    camera_info_key,
    camera_info_matrix,
    check_focal_length,
    principal_point_problem,
    which_camera_info,
)

__all__ = [
    'DISTORTION_MODELS',
    'RectificationMaps',
    'RectifiedPair',
    'StereoRectifier',
    'rectified_camera_info',
]

#: Distortion models this module rectifies, with the number of coefficients in D.
DISTORTION_MODELS: dict[str, tuple[int, str]] = {
    'plumb_bob': (5, 'k1 k2 t1 t2 k3'),
    'rational_polynomial': (8, 'k1 k2 t1 t2 k3 k4 k5 k6'),
    'equidistant': (4, 'k1 k2 k3 k4 (cv2.fisheye)'),
}
# R is written with a few significant digits in calibration files: allow for that rounding.
_ROTATION_TOL = 1e-3
_IMAGE_PROC_HINT = 'or rectify with image_proc and subscribe to image_rect (rectify:=false)'
LOG = logging.getLogger(__name__)
_FIX = f'{FIX_CALIBRATION} {_IMAGE_PROC_HINT}'


@dataclass(frozen=True)
class RectificationMaps:
    """Maps of one camera: rectified pixel (u, v) samples the raw image at (map_x, map_y).

    ``map_x``, ``map_y``: (H, W) float32 raw pixel coordinates (OpenCV's ``remap`` maps);
    ``fixed``: the same maps in OpenCV's fixed-point form, which ``cv2.remap`` reads faster.
    """

    map_x: np.ndarray
    map_y: np.ndarray
    fixed: tuple[np.ndarray, np.ndarray]

    @classmethod
    def from_camera_info(cls, info: Any, side: str = '') -> RectificationMaps:
        """Check a raw camera's CameraInfo and build its maps (CameraInfoError: what to fix)."""
        which = which_camera_info(side)
        geometry = ImageGeometry.from_camera_info(info, side)
        model, d = _distortion(info, which)
        k = camera_info_matrix(info, 'k', (3, 3), which, _FIX)
        r = _rotation(info, which)
        p = camera_info_matrix(info, 'p', (3, 4), which, _FIX)
        for name, m in (('K', k), ('P', p)):
            check_focal_length(which, name, m[0, 0], m[1, 1],
                               f'calibrate it with camera_calibration {_IMAGE_PROC_HINT}')
        k_image = _intrinsics(geometry, k)
        p_image = _intrinsics(geometry, p)
        size = geometry.size
        # A P of a rectification at another resolution shows a corner of the intended view.
        problem = principal_point_problem('P', p_image[0, 2], p_image[1, 2], *size) or \
            _projection_far_from_camera(k_image, p_image, size)
        if problem:  # once per CameraInfo: the maps are rebuilt only when it changes
            LOG.warning('%s: %s; the rectified images show only part of the view P was '
                        'made for: calibrate (or rectify) at the resolution the camera '
                        'publishes', which, problem)
        if model == 'equidistant':
            map_x, map_y = cv2.fisheye.initUndistortRectifyMap(
                k_image, d.reshape(4, 1), r, p_image, size, cv2.CV_32FC1)
        else:
            map_x, map_y = cv2.initUndistortRectifyMap(k_image, d, r, p_image, size,
                                                       cv2.CV_32FC1)
        fixed = cv2.convertMaps(map_x, map_y, cv2.CV_16SC2)
        return cls(map_x, map_y, (fixed[0], fixed[1]))

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the raw and of the rectified image."""
        return self.map_x.shape[1], self.map_x.shape[0]

    def remap(self, image: np.ndarray) -> np.ndarray:
        """Rectify an (H, W[, C]) image on the host (bilinear; black outside the raw image)."""
        return cv2.remap(image, self.fixed[0], self.fixed[1], cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=0)

    def grid(self, device: torch.device) -> torch.Tensor:
        """Return the maps as torch sampling coordinates, shape (1, H, W, 2), on ``device``."""
        width, height = self.size
        # align_corners=True: -1 and 1 are the centres of the first and last pixels.
        gx = self.map_x * (2.0 / max(width - 1, 1)) - 1.0
        gy = self.map_y * (2.0 / max(height - 1, 1)) - 1.0
        return torch.from_numpy(np.stack([gx, gy], axis=-1)[None]).to(device)


@dataclass
class RectifiedPair:
    """A rectified pair and the CameraInfo pair that describes it.

    ``left``/``right``: (H, W, 3) uint8 RGB, numpy on the host or a torch tensor on the
    rectifier's device; ``left_info``/``right_info``: :func:`rectified_camera_info` copies.
    """

    left: Any
    right: Any
    left_info: Any
    right_info: Any


class StereoRectifier:
    """Rectifies raw stereo pairs, keeping the maps until a CameraInfo changes.

    ``device``: where the rectified pair is wanted. ``method``: ``'remap'`` resamples on the
    host with ``cv2.remap`` and returns numpy arrays; ``'grid_sample'`` resamples on ``device``
    with torch and returns uint8 tensors there, so a pair bound for a GPU network is uploaded
    raw and rectified where it is used; ``'auto'`` picks remap for the CPU and grid_sample for
    any other device.
    """

    METHODS = ('auto', 'remap', 'grid_sample')

    def __init__(self, device: torch.device | str = 'cpu', method: str = 'auto') -> None:
        """Resample with ``method`` for ``device`` (see the class docstring)."""
        if method not in self.METHODS:
            raise ValueError(f'method must be one of {", ".join(self.METHODS)}, got {method!r}')
        self.device = torch.device(device)
        if method == 'auto':
            method = 'remap' if self.device.type == 'cpu' else 'grid_sample'
        self.method = method
        self._maps: dict[str, tuple[tuple, RectificationMaps, Any]] = {}

    def maps(self, info: Any, side: str) -> tuple[RectificationMaps, Any]:
        """Return the maps and grid of one side, rebuilt only when its CameraInfo changes."""
        key = camera_info_key(info)
        cached = self._maps.get(side)
        if cached is None or cached[0] != key:
            maps = RectificationMaps.from_camera_info(info, side)
            grid = maps.grid(self.device) if self.method == 'grid_sample' else None
            cached = (key, maps, grid)
            self._maps[side] = cached
        return cached[1], cached[2]

    def rectify(self, left: np.ndarray, right: np.ndarray, left_info: Any,
                right_info: Any) -> RectifiedPair:
        """Rectify (H, W, 3) uint8 RGB raw images; CameraInfoError when they cannot be.

        The images must have the size their CameraInfo describes (after binning and ROI).
        """
        out = []
        for side, image, info in (('left', left, left_info), ('right', right, right_info)):
            maps, grid = self.maps(info, side)
            height, width = image.shape[:2]
            if (width, height) != maps.size:
                geometry = ImageGeometry.from_camera_info(info, side)
                raise CameraInfoError(f'{side} raw ' + geometry.size_mismatch(width, height))
            out.append(maps.remap(image) if grid is None else _grid_sample(image, grid))
        return RectifiedPair(out[0], out[1], rectified_camera_info(left_info),
                             rectified_camera_info(right_info))


def _projection_far_from_camera(k: np.ndarray, p: np.ndarray, size: tuple[int, int]) -> str | None:
    """Say why P's principal point far from K's shows P is for another resolution.

    Rectifying rotates each camera by a few degrees, which moves the principal point by a
    small part of the image; a quarter of the image or more is a P of another size.
    """
    (kx, ky), (px, py) = k[:2, 2], p[:2, 2]
    if abs(px - kx) < size[0] / 4 and abs(py - ky) < size[1] / 4:
        return None
    return (f"P's principal point ({px:g}, {py:g}) lies far from K's ({kx:g}, {ky:g}) on "
            f'the {size[0]}x{size[1]} images, so P is for another resolution (its principal '
            f'point suggests about {round(2 * px + 1)}x{round(2 * py + 1)})')


def rectified_camera_info(info: Any) -> Any:
    """Return the CameraInfo of the rectified image: K from P, no distortion, identity R.

    A copy of ``info`` (header, size, P, binning and ROI unchanged), as image_proc describes
    ``image_rect``; ``distortion_model`` becomes plumb_bob with five zeros.
    """
    rectified = copy.deepcopy(info)
    p = np.asarray(info.p, dtype=np.float64).reshape(3, 4)
    rectified.k = p[:, :3].ravel().tolist()
    rectified.d = [0.0] * 5
    rectified.distortion_model = 'plumb_bob'
    rectified.r = np.eye(3).ravel().tolist()
    return rectified


# ---------------------------------------------------------------------- helpers

def _grid_sample(image: Any, grid: torch.Tensor) -> torch.Tensor:
    """Bilinear resampling of an (H, W, C) uint8 image on the grid's device, as uint8."""
    tensor = torch.as_tensor(np.ascontiguousarray(image) if isinstance(image, np.ndarray)
                             else image).to(grid.device, non_blocking=True)
    chw = tensor.permute(2, 0, 1)[None].float()
    out = F.grid_sample(chw, grid, mode='bilinear', padding_mode='zeros', align_corners=True)
    return out[0].round_().clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).contiguous()


def _intrinsics(geometry: ImageGeometry, m: np.ndarray) -> np.ndarray:
    """Map the 3x3 intrinsics of K or P from the full sensor to the images."""
    fx, fy, cx, cy = geometry.apply(m[0, 0], m[1, 1], m[0, 2], m[1, 2])
    skew = m[0, 1] / geometry.binning_x
    return np.array([[fx, skew, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def _distortion(info: Any, which: str) -> tuple[str, np.ndarray]:
    model = str(getattr(info, 'distortion_model', '') or '')
    d = np.asarray(getattr(info, 'd', None) if getattr(info, 'd', None) is not None else (),
                   dtype=np.float64).ravel()
    if not model:
        raise CameraInfoError(
            f'{which} names no distortion_model (an uncalibrated camera, or images that are '
            'already rectified): calibrate the camera with camera_calibration, or subscribe to '
            'the rectified images with rectify:=false')
    if model not in DISTORTION_MODELS:
        raise CameraInfoError(
            f'{which} distortion_model {model!r} cannot be rectified here; supported: '
            f'{", ".join(DISTORTION_MODELS)}. Recalibrate with one of them, '
            f'{_IMAGE_PROC_HINT}')
    count, names = DISTORTION_MODELS[model]
    if d.size != count or not np.isfinite(d).all():
        raise CameraInfoError(
            f'{which} D has {d.size} coefficient(s) {d.tolist()} but {model} needs {count} '
            f'finite ones ({names}); {FIX_CALIBRATION}')
    return model, d


def _rotation(info: Any, which: str) -> np.ndarray:
    r = camera_info_matrix(info, 'r', (3, 3), which, _FIX)
    if not r.any():
        raise CameraInfoError(
            f'{which} R is all zeros (no stereo calibration): calibrate the stereo pair with '
            'camera_calibration (it writes rectification_matrix), or publish the identity for '
            'a camera that needs no rotation')
    orthogonality = float(np.abs(r @ r.T - np.eye(3)).max())
    det = float(np.linalg.det(r))
    if orthogonality > _ROTATION_TOL or not math.isclose(det, 1.0, abs_tol=_ROTATION_TOL):
        raise CameraInfoError(
            f'{which} R is not a rotation (R R^T differs from the identity by up to '
            f'{orthogonality:.3g}, det R = {det:.6g}); R must be the rectifying rotation of the '
            f'stereo calibration (rectification_matrix, 9 numbers row-major): {FIX_CALIBRATION}')
    return r

"""Disparity, depth and 3-D points of a rectified stereo pair.

Every function takes a numpy array or a torch tensor and returns the same kind (a tensor stays on
its device, and nothing forces a host-device sync). Conventions, as in ``stereo_msgs``:

* disparity ``d = x_l - x_r - (cx_l - cx_r)`` in pixels of the left image, invalid = NaN;
* depth ``Z = fx * baseline / d`` in metres (REP 118: float32, NaN = no return);
* points in the left camera's optical frame (REP 103: x right, y down, z forward).
"""
from __future__ import annotations

import math
import sys
from typing import Any, TypeVar

import numpy as np

from .camera import StereoCamera

__all__ = [
    'apply_z_range',
    'depth_to_points',
    'disparity_range_for_depth',
    'disparity_to_depth',
    'invisible_mask',
    'valid_disparity_mask',
]

Array = TypeVar('Array')  # np.ndarray or torch.Tensor


def _is_tensor(value: Any) -> bool:
    # torch is only looked up if already imported, so numpy users never pay its import time.
    torch = sys.modules.get('torch')
    return torch is not None and isinstance(value, torch.Tensor)


def _as_float32(value: Any) -> Any:
    if _is_tensor(value):
        return value if value.dtype == sys.modules['torch'].float32 else value.float()
    return np.asarray(value, dtype=np.float32)


def _column_coordinates(disp: Any) -> Any:
    """Pixel column index x as float32, shaped (W,) to broadcast over (..., H, W)."""
    width = disp.shape[-1]
    if _is_tensor(disp):
        torch = sys.modules['torch']
        return torch.arange(width, dtype=torch.float32, device=disp.device)
    return np.arange(width, dtype=np.float32)


def invisible_mask(disp: Array, doffs: float = 0.0) -> Array:
    """Pixels of the left image whose match falls left of the right image: ``x_r < 0``.

    ``x_r = x - d - doffs`` with ``d`` in the DisparityImage convention and
    ``doffs = camera.doffs`` (0 when both rectified principal points coincide, which makes
    this the official ``x - disp < 0`` rule). These points are outside the right camera's field
    of view, so the network can only guess them. NaN disparities are not flagged (they are
    invalid anyway). Works on (H, W) or batched (..., H, W) input; returns a boolean mask.
    """
    disp = _as_float32(disp)
    x = _column_coordinates(disp)
    if doffs:
        x = x - float(doffs)
    return (x - disp) < 0


def valid_disparity_mask(disp: Array, min_disparity: float | None = None,
                         max_disparity: float | None = None) -> Array:
    """Boolean mask of finite disparities within ``[min_disparity, max_disparity]``.

    ``None`` leaves that side open. ``DisparityImage`` marks invalid pixels with values below
    ``min_disparity``; this reads them back.
    """
    if _is_tensor(disp):
        mask = sys.modules['torch'].isfinite(disp)
    else:
        disp = np.asarray(disp)
        mask = np.isfinite(disp)
    if min_disparity is not None:
        mask = mask & (disp >= min_disparity)
    if max_disparity is not None:
        mask = mask & (disp <= max_disparity)
    return mask


def disparity_to_depth(disp: Array, camera: StereoCamera) -> Array:
    """Depth in metres ``fx * baseline / d`` (float32), NaN where ``d <= 0`` or not finite.

    Every pixel whose quotient is not finite and positive is NaN (this covers NaN, zero,
    negative and infinite disparities, and subnormal ones that overflow float32), so a depth is
    always either a finite positive number or NaN.
    """
    disp = _as_float32(disp)
    fb = camera.fx_baseline
    if _is_tensor(disp):
        torch = sys.modules['torch']
        # a 0-d tensor numerator gives a true division; python-scalar / tensor is computed
        # as reciprocal * scalar, one rounding off the numpy result
        depth = torch.full((), fb, dtype=torch.float32, device=disp.device) / disp
        return torch.where((depth > 0) & (depth < math.inf), depth,
                           torch.full((), math.nan, dtype=torch.float32, device=disp.device))
    with np.errstate(divide='ignore', invalid='ignore', over='ignore'):
        depth = fb / disp
        depth[~((depth > 0) & (depth < np.inf))] = np.nan
    return depth


def depth_to_points(depth: Array, camera: StereoCamera) -> Array:
    """Organized point map (H, W, 3) float32: ``x = (u-cx) z/fx, y = (v-cy) z/fy, z``.

    NaN depth gives NaN points. ``depth`` must be (H, W) at the camera's resolution.
    """
    depth = _as_float32(depth)
    height, width = depth.shape[-2:]
    if (width, height) != (camera.width, camera.height):
        raise ValueError(f'depth is {width}x{height} but the camera is '
                         f'{camera.width}x{camera.height}; resize the camera with '
                         'StereoCamera.resized() or the depth to the camera size')
    if _is_tensor(depth):
        torch = sys.modules['torch']
        u = torch.arange(width, dtype=torch.float32, device=depth.device)
        v = torch.arange(height, dtype=torch.float32, device=depth.device)
        ray_x = (u - camera.cx) / camera.fx
        ray_y = (v - camera.cy) / camera.fy
        return torch.stack((ray_x * depth, ray_y[:, None] * depth, depth), dim=-1)
    ray_x = (np.arange(width, dtype=np.float32) - np.float32(camera.cx)) / np.float32(camera.fx)
    ray_y = (np.arange(height, dtype=np.float32) - np.float32(camera.cy)) / np.float32(camera.fy)
    points = np.empty((height, width, 3), dtype=np.float32)
    np.multiply(ray_x, depth, out=points[..., 0])
    np.multiply(ray_y[:, None], depth, out=points[..., 1])
    points[..., 2] = depth
    return points


def apply_z_range(depth: Array, z_near: float = 0.0, z_far: float = math.inf) -> Array:
    """Depth with NaN outside ``[z_near, z_far]`` (returns a new array; NaN stays NaN)."""
    if _is_tensor(depth):
        torch = sys.modules['torch']
        keep = (depth >= z_near) & (depth <= z_far)
        return torch.where(keep, depth, torch.full((), math.nan, dtype=depth.dtype,
                                                   device=depth.device))
    depth = np.asarray(depth)
    with np.errstate(invalid='ignore'):
        keep = (depth >= z_near) & (depth <= z_far)
    return np.where(keep, depth, np.array(np.nan, dtype=depth.dtype))


def disparity_range_for_depth(camera: StereoCamera, z_near: float,
                              z_far: float) -> tuple[float, float]:
    """``(min_disparity, max_disparity)`` covering depths ``[z_near, z_far]``.

    ``z_far = inf`` gives 0 and ``z_near = 0`` gives inf.
    """
    if not (z_near >= 0.0 and z_far > z_near):
        raise ValueError(f'need 0 <= z_near < z_far, got z_near={z_near}, z_far={z_far}')
    min_disparity = 0.0 if math.isinf(z_far) else camera.fx_baseline / z_far
    max_disparity = math.inf if z_near == 0.0 else camera.fx_baseline / z_near
    return min_disparity, max_disparity

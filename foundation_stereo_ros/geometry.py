"""Disparity, depth and 3-D points of a rectified stereo pair, on torch tensors.

Every function keeps its input's device, and nothing forces a host-device sync. Conventions,
as in ``stereo_msgs``:

* disparity ``d = x_l - x_r - (cx_l - cx_r)`` in pixels of the left image, invalid = NaN;
* depth ``Z = fx * baseline / d`` in metres (REP 118: float32, NaN = no return);
* points in the left camera's optical frame (REP 103: x right, y down, z forward).
"""
from __future__ import annotations

import math

import torch

from .camera import StereoCamera

__all__ = [
    'apply_z_range',
    'depth_to_points',
    'disparity_to_depth',
    'invisible_mask',
]


def _nan_like(x: torch.Tensor) -> torch.Tensor:
    return torch.full((), math.nan, dtype=x.dtype, device=x.device)


def invisible_mask(disp: torch.Tensor, doffs: float = 0.0) -> torch.Tensor:
    """Pixels of the left image whose match falls left of the right image: ``x_r < 0``.

    ``x_r = x - d - doffs`` with ``d`` in the DisparityImage convention and
    ``doffs = camera.doffs`` (0 when both rectified principal points coincide, which makes
    this the official ``x - disp < 0`` rule). These points are outside the right camera's field
    of view, so the network can only guess them. NaN disparities are not flagged (they are
    invalid anyway). Works on (H, W) or batched (..., H, W) input; returns a boolean mask.
    """
    x = torch.arange(disp.shape[-1], dtype=torch.float32, device=disp.device)
    if doffs:
        x = x - float(doffs)
    return (x - disp.float()) < 0


def disparity_to_depth(disp: torch.Tensor, camera: StereoCamera) -> torch.Tensor:
    """Depth in metres ``fx * baseline / d`` (float32), NaN where ``d <= 0`` or not finite.

    Every pixel whose quotient is not finite and positive is NaN (this covers NaN, zero,
    negative and infinite disparities, and subnormal ones that overflow float32), so a depth is
    always either a finite positive number or NaN.
    """
    disp = disp.float()
    # A 0-d tensor numerator gives a true division; python-scalar / tensor is computed as
    # reciprocal * scalar, one rounding off the exact quotient.
    depth = torch.full((), camera.fx_baseline, dtype=torch.float32, device=disp.device) / disp
    return torch.where((depth > 0) & (depth < math.inf), depth, _nan_like(depth))


def depth_to_points(depth: torch.Tensor, camera: StereoCamera) -> torch.Tensor:
    """Organized point map (H, W, 3) float32: ``x = (u-cx) z/fx, y = (v-cy) z/fy, z``.

    NaN depth gives NaN points. ``depth`` must be (H, W) at the camera's resolution.
    """
    depth = depth.float()
    height, width = depth.shape[-2:]
    if (width, height) != (camera.width, camera.height):
        raise ValueError(f'depth is {width}x{height} but the camera is '
                         f'{camera.width}x{camera.height}; compute the depth at the '
                         'camera size')
    u = torch.arange(width, dtype=torch.float32, device=depth.device)
    v = torch.arange(height, dtype=torch.float32, device=depth.device)
    ray_x = (u - camera.cx) / camera.fx
    ray_y = (v - camera.cy) / camera.fy
    return torch.stack((ray_x * depth, ray_y[:, None] * depth, depth), dim=-1)


def apply_z_range(depth: torch.Tensor, z_near: float = 0.0,
                  z_far: float = math.inf) -> torch.Tensor:
    """Depth with NaN outside ``[z_near, z_far]`` (returns a new tensor; NaN stays NaN)."""
    keep = (depth >= z_near) & (depth <= z_far)
    return torch.where(keep, depth, _nan_like(depth))

"""Coarse-to-fine inference shared by the FoundationStereo family (official ``run_hierachical``).

A pass on the pair downscaled by ``small_ratio`` seeds the full-resolution pass with an initial
disparity. Both passes pad to multiples of 32; the network is given as its ``forward``.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from .padder import InputPadder

__all__ = ['SIZE_DIVISOR', 'check_divisible', 'run_hierarchical']

# Image sides the networks accept must be multiples of this (features down to 1/32).
SIZE_DIVISOR = 32

Forward = Callable[..., torch.Tensor | tuple[torch.Tensor, torch.Tensor]]


def check_divisible(image: torch.Tensor) -> None:
    """Refuse an image whose sides are not multiples of :data:`SIZE_DIVISOR`, saying what to do.

    The networks' own invariant; callers (the backend, the tools) check the pair itself.
    """
    h, w = image.shape[-2:]
    if h % SIZE_DIVISOR or w % SIZE_DIVISOR:
        raise ValueError(f'image height and width must be multiples of {SIZE_DIVISOR}, got '
                         f'{h}x{w}; pad with InputPadder(divis_by={SIZE_DIVISOR}) and unpad the '
                         'disparity, or resize')


def run_hierarchical(forward: Forward, left: torch.Tensor, right: torch.Tensor, iters: int,
                     small_ratio: float = 0.5, confidence: bool = False,
                     ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Coarse-to-fine disparity of a pair of any size.

    Args:
        forward: the network's ``forward(left, right, iters=, test_mode=, init_disp=,
            confidence=)``.
        left, right: (B, 3, H, W) RGB float images, values 0..255, any H, W.
        iters: refinement iterations of each pass.
        small_ratio: scale of the coarse pass, in (0, 1].
        confidence: also return the full-resolution pass's confidence.

    Returns:
        (B, 1, H, W) float32 disparity; with ``confidence``, ``(disparity, confidence)``.
    """
    if not 0.0 < small_ratio <= 1.0:
        raise ValueError(f'small_ratio must be in (0, 1], got {small_ratio}')
    if left.dim() != 4 or left.shape != right.shape:
        raise ValueError(f'expected left and right of equal shape (B, 3, H, W), got '
                         f'{tuple(left.shape)} and {tuple(right.shape)}')
    h, w = left.shape[-2:]
    left_small = F.interpolate(left, scale_factor=small_ratio, mode='bilinear',
                               align_corners=False)
    right_small = F.interpolate(right, scale_factor=small_ratio, mode='bilinear',
                                align_corners=False)
    padder = InputPadder(left_small.shape, divis_by=SIZE_DIVISOR)
    left_small, right_small = padder.pad(left_small, right_small)
    disp_small = forward(left_small, right_small, iters=iters, test_mode=True)
    disp_small = padder.unpad(disp_small.float())
    disp_up = F.interpolate(disp_small, size=(h, w), mode='bilinear', align_corners=True)
    disp_up = (disp_up / small_ratio).clip(0, None)

    padder = InputPadder(left.shape, divis_by=SIZE_DIVISOR)
    left, right, disp_up = padder.pad(left, right, disp_up)
    # Upstream adds the left pad width to the seed disparity, although padding both images
    # alike leaves true disparities unchanged; the official inference does it and the
    # goldens pin it, so it is kept for parity.
    disp_up = disp_up + padder.pad_amounts[0]
    init_disp = F.interpolate(disp_up, scale_factor=0.25, mode='bilinear',
                              align_corners=True) * 0.25
    if not confidence:
        disp = forward(left, right, iters=iters, test_mode=True, init_disp=init_disp)
        return padder.unpad(disp.float())
    disp, conf = forward(left, right, iters=iters, test_mode=True, init_disp=init_disp,
                         confidence=True)
    return padder.unpad(disp.float()), padder.unpad(conf)

"""Convex ("context") upsampling of a low-resolution disparity map.

Every full-resolution pixel is a convex combination of the 3x3 neighbourhood (zero padded) of
its parent low-resolution pixel, with 9 weights per full-resolution pixel predicted by the
network (softmax over the 9). Same result as the official ``context_upsample`` (unfold, nearest
upsampling, weighted sum) without materialising the 9 nearest-upsampled copies.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ['convex_upsample', 'neighbourhood3x3']


def neighbourhood3x3(x: torch.Tensor, pad_mode: str = 'constant') -> torch.Tensor:
    """(B, 1, h, w) -> (B, 9, h, w): the 3x3 neighbours, row-major (unfold order).

    ``pad_mode`` as :func:`torch.nn.functional.pad`: ``'constant'`` (zeros, as upstream's
    unfold) or ``'replicate'``.
    """
    h, w = x.shape[-2:]
    padded = F.pad(x, (1, 1, 1, 1), mode=pad_mode)
    return torch.cat([padded[:, :, i:i + h, j:j + w] for i in range(3) for j in range(3)], 1)


def convex_upsample(disp_low: torch.Tensor, weights: torch.Tensor,
                    pad_mode: str = 'constant') -> torch.Tensor:
    """Upsample ``disp_low`` (B, 1, h, w) with convex ``weights`` (B, 9, f*h, f*w).

    The factor ``f`` is taken from the shapes. Values are not rescaled (multiply the
    disparity by ``f`` first when it is in low-resolution pixels). ``pad_mode``: how the
    border's missing neighbours are filled (see :func:`neighbourhood3x3`). Returns
    (B, f*h, f*w).
    """
    b, c, h, w = disp_low.shape
    if c != 1 or weights.shape[1] != 9:
        raise ValueError(f'convex_upsample: expected (B,1,h,w) and (B,9,H,W), got '
                         f'{tuple(disp_low.shape)} and {tuple(weights.shape)}')
    big_h, big_w = weights.shape[-2:]
    fy, fx = big_h // h, big_w // w
    if fy * h != big_h or fx * w != big_w:
        raise ValueError(f'convex_upsample: weights {big_h}x{big_w} are not an integer '
                         f'multiple of the disparity {h}x{w}')
    neighbours = neighbourhood3x3(disp_low, pad_mode).view(b, 9, h, 1, w, 1)
    # Broadcasting over the (fy, fx) sub-pixel axes replaces the nearest upsampling.
    up = (weights.reshape(b, 9, h, fy, w, fx) * neighbours).sum(1)
    return up.reshape(b, big_h, big_w)

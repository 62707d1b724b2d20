"""Replicate-padding of image batches to sizes the network accepts (multiples of 32).

Behaviour of the official ``InputPadder`` (``core/utils/utils.py``), which ``run_demo.py`` and
``run_hierachical`` use: the same split of the padding between the sides, so that disparities
computed on a padded pair can be compared (and shifted) exactly like upstream.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = ['InputPadder']


class InputPadder:
    """Pads (…, H, W) tensors so that H and W become multiples of ``divis_by``.

    The padding is split evenly between top/bottom and left/right (the extra pixel of an odd
    amount goes to the bottom/right: upstream's default 'sintel' mode) and replicates the
    border pixels. ``pad_amounts`` is ``[left, right, top, bottom]`` in pixels.
    """

    def __init__(self, dims: Sequence[int], divis_by: int = 32) -> None:
        if len(dims) < 2:
            raise ValueError(f'InputPadder: dims must end with (H, W), got {tuple(dims)}')
        if divis_by < 1:
            raise ValueError(f'InputPadder: divis_by must be >= 1, got {divis_by}')
        self.ht, self.wd = int(dims[-2]), int(dims[-1])
        pad_ht = -self.ht % divis_by
        pad_wd = -self.wd % divis_by
        self.pad_amounts: list[int] = [pad_wd // 2, pad_wd - pad_wd // 2,
                                       pad_ht // 2, pad_ht - pad_ht // 2]

    def pad(self, *inputs: torch.Tensor) -> list[torch.Tensor]:
        """Replicate-pad each (B, C, H, W) or (C, H, W) tensor; returns a list."""
        out = []
        for x in inputs:
            if x.dim() not in (3, 4):
                raise ValueError(f'InputPadder.pad: expected (B, C, H, W) or (C, H, W) tensors, '
                                 f'got shape {tuple(x.shape)}')
            if tuple(x.shape[-2:]) != (self.ht, self.wd):
                raise ValueError(f'InputPadder.pad: padder was made for {self.ht}x{self.wd}, '
                                 f'got a tensor of {x.shape[-2]}x{x.shape[-1]}')
            if any(self.pad_amounts):
                x = F.pad(x, self.pad_amounts, mode='replicate')
            out.append(x)
        return out

    def unpad(self, x: torch.Tensor) -> torch.Tensor:
        """Remove the padding from the last two dimensions of ``x`` (a view, no copy)."""
        if x.dim() < 2:
            raise ValueError(f'InputPadder.unpad: expected at least 2 dims, got {x.dim()}')
        left, right, top, bottom = self.pad_amounts
        ht, wd = x.shape[-2:]
        return x[..., top:ht - bottom, left:wd - right]

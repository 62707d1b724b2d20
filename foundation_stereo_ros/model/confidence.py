"""Confidence of the network's disparity, read from the classifier's disparity distribution.

Both families turn the aggregated cost volume into a distribution over disparity bins at 1/4
resolution: ``p_d(x)``, ``d = 0 .. max_disp/4 - 1``, a softmax of the classifier logits (its
soft-argmin is the initial disparity). The confidence of the final disparity ``delta(x)`` (the
1/4-resolution disparity after the last refinement step, in 1/4-resolution pixels) is the
probability mass of that distribution within ``radius`` of it, the bins read as a histogram
(bin ``d`` spread uniformly over ``[d - 1/2, d + 1/2]``)::

    c(x) = sum_d p_d(x) * |[d - 1/2, d + 1/2] & [delta(x) - r, delta(x) + r]|

so the two bins the window cuts count with the share it covers, and ``c`` changes
continuously with ``delta``. One sharp peak at the estimate gives 1; a flat distribution
gives ``2r / D``; two equal peaks, one at the estimate, give 1/2; an estimate that the
refinement moved away from where the mass is gives little. The map is then brought to full
resolution with the convex weights that upsampled the disparity (edges are replicated, not
zero-padded: a confidence needs no border correction), so each full-resolution pixel's
confidence is the mix of the 1/4-resolution confidences its disparity was mixed from.
"""
from __future__ import annotations

import torch

from .upsample import convex_upsample

__all__ = ['CONFIDENCE_RADIUS', 'upsample_confidence', 'window_mass']

# Half-width of the window, in 1/4-resolution pixels (bins): +-4 pixels at full resolution.
CONFIDENCE_RADIUS = 1.0


def window_mass(prob: torch.Tensor, disp: torch.Tensor,
                radius: float = CONFIDENCE_RADIUS) -> torch.Tensor:
    """Probability mass of ``prob`` within ``radius`` bins of ``disp`` (module docstring).

    Args:
        prob: (B, D, h, w) distribution over bins 0..D-1 (sums to 1 over D).
        disp: (B, 1, h, w) disparity in bin units (1/4-resolution pixels).
        radius: half-width of the window in bins, >= 0.5 (at least one bin wide).

    Returns:
        (B, 1, h, w) float32 in [0, 1].
    """
    if radius < 0.5:
        raise ValueError(f'radius must be >= 0.5 bins (one bin wide), got {radius}')
    if prob.dim() != 4 or disp.dim() != 4 or disp.shape[1] != 1 or (
            prob.shape[0], *prob.shape[2:]) != (disp.shape[0], *disp.shape[2:]):
        raise ValueError(f'expected prob (B, D, h, w) and disp (B, 1, h, w), got '
                         f'{tuple(prob.shape)} and {tuple(disp.shape)}')
    bins = torch.arange(prob.shape[1], device=prob.device, dtype=torch.float32)
    # Overlap of [d - 1/2, d + 1/2] with [disp - r, disp + r], valid for r >= 1/2.
    overlap = (radius + 0.5 - (bins.view(1, -1, 1, 1) - disp.float()).abs()).clamp(0.0, 1.0)
    return (prob.float() * overlap).sum(1, keepdim=True).clamp(0.0, 1.0)


def upsample_confidence(confidence: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """(B, 1, h, w) confidence -> (B, 1, H, W) with the disparity's convex ``weights``."""
    up = convex_upsample(confidence, weights, pad_mode='replicate')
    return up.unsqueeze(1).float().clamp(0.0, 1.0)

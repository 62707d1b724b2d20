"""Stereo cost volumes at 1/4 resolution and soft-argmin disparity regression.

Both volumes follow the FoundationStereo convention: bin ``d`` at column ``x`` pairs the left
pixel ``x`` with the right pixel ``x - d``; where ``x < d`` the right pixel lies outside the
image and the entry is zero. They are built without any Python loop over disparities.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ['build_concat_volume', 'build_gwc_volume', 'concat_volume_reference',
           'disparity_regression', 'gwc_volume_reference']


def _check_pair(left: torch.Tensor, right: torch.Tensor, max_disp: int) -> None:
    if left.dim() != 4 or left.shape != right.shape:
        raise ValueError(
            f'expected left and right feature maps of equal shape (B,C,H,W), got '
            f'{tuple(left.shape)} and {tuple(right.shape)}')
    if left.dtype != right.dtype or left.device != right.device:
        raise ValueError(
            f'left and right features must share dtype and device, got {left.dtype} on '
            f'{left.device} and {right.dtype} on {right.device}')
    if int(max_disp) < 1:
        raise ValueError(f'max_disp must be a positive number of bins, got {max_disp}')


def _tile_width(width: int, max_disp: int) -> int:
    """Column tile for the banded correlation.

    Each tile of ``T`` left columns is correlated with the ``T + D - 1`` right columns it can
    reach, so the transient product holds ``W * (T + D - 1)`` values per row instead of
    ``W * W`` for a full row correlation. A divisor of ``W`` avoids padding columns. ``T >= 2``
    keeps the band rows (``T + D - 2`` values) at least ``D`` long.
    """
    limit = max(2, min(width, max_disp))
    for tile in range(limit, 1, -1):
        if width % tile == 0:
            if 4 * tile >= limit:
                return tile
            break
    return limit


def build_gwc_volume(feat_left: torch.Tensor, feat_right: torch.Tensor, max_disp: int,
                     num_groups: int, normalize: bool = True) -> torch.Tensor:
    """Group-wise correlation volume.

    The ``C`` channels are split into ``num_groups`` groups; each group of each pixel is
    L2-normalised over its channels (in float32, as the reference does, also under
    autocast), and bin ``d`` at column ``x`` holds the dot product of the normalised left
    group at ``x`` with the normalised right group at ``x - d`` (zero where ``x < d``).

    Args:
        feat_left: (B, C, H, W) left-image features.
        feat_right: (B, C, H, W) right-image features.
        max_disp: number of disparity bins D.
        num_groups: number of channel groups G; must divide C.
        normalize: L2-normalise each group first (FoundationStereo always does; Fast-
            FoundationStereo checkpoints say so in ``args.normalize``). Without it, bins hold
            the plain dot products.

    Returns:
        (B, G, D, H, W) tensor in the dtype of ``feat_left``.
    """
    _check_pair(feat_left, feat_right, max_disp)
    b, c, h, w = feat_left.shape
    if num_groups < 1 or c % num_groups:
        raise ValueError(f'{c} feature channels cannot be split into {num_groups} groups')
    d = int(max_disp)
    cg = c // num_groups
    tile = _tile_width(w, d)
    n_tiles = -(-w // tile)
    w_pad = n_tiles * tile
    span = tile + d - 1  # right columns one tile of left columns can see

    device = feat_left.device
    with torch.autocast(device_type=device.type, enabled=False):
        left = feat_left.float().reshape(b, num_groups, cg, h, w)
        right = feat_right.float().reshape(b, num_groups, cg, h, w)
        if normalize:
            left = F.normalize(left, dim=2)
            right = F.normalize(right, dim=2)
        # Zero columns (padding) stay zero after normalisation, which yields the zeros for x < d.
        left = F.pad(left, (0, w_pad - w)).permute(0, 1, 3, 4, 2)           # B,G,H,Wp,c
        left = left.reshape(b, num_groups, h, n_tiles, tile, cg)
        right = F.pad(right, (d - 1, w_pad - w)).permute(0, 1, 3, 2, 4)     # B,G,H,c,Wp+D-1
        # Window n, column j holds padded right column n*T + T+D-2 - j, i.e. image column
        # n*T + T-1 - j: reversed, so that disparity grows along the band extracted below.
        # A gather (not unfold) keeps the graph exportable to ONNX; it only touches features.
        cols = (torch.arange(n_tiles, device=device).view(n_tiles, 1) * tile + (span - 1)
                - torch.arange(span, device=device).view(1, span))
        windows = torch.gather(
            right.unsqueeze(3).expand(b, num_groups, h, n_tiles, cg, w_pad + d - 1), -1,
            cols.view(1, 1, 1, n_tiles, 1, span).expand(b, num_groups, h, n_tiles, cg, span))
        scores = torch.matmul(left, windows)                                # B,G,H,n,T,span
        # Left column i of a tile needs score column T-1-i+d for d = 0..D-1. Flattening each
        # tile and re-reading it with rows of span-1 values, from offset T-1, lines that
        # diagonal band up as rows (a view: no copy, no as_strided).
        flat = scores.flatten(-2)[..., tile - 1:tile - 1 + tile * (span - 1)]
        band = flat.unflatten(-1, (tile, span - 1))[..., :d]                # B,G,H,n,T,D
        volume = band.permute(0, 1, 5, 2, 3, 4).reshape(b, num_groups, d, h, w_pad)
        volume = volume[..., :w].contiguous()
    return volume.to(feat_left.dtype)


def build_concat_volume(left: torch.Tensor, right: torch.Tensor, max_disp: int) -> torch.Tensor:
    """Concatenation volume.

    Channels ``[:C]`` hold the left features at every disparity; channels ``[C:]`` hold the
    right features shifted by the disparity, ``right[..., x - d]``, and zero where ``x < d``.

    Args:
        left: (B, C, H, W) left-image features.
        right: (B, C, H, W) right-image features.
        max_disp: number of disparity bins D.

    Returns:
        (B, 2C, D, H, W) tensor.
    """
    _check_pair(left, right, max_disp)
    b, c, h, w = left.shape
    d = int(max_disp)
    # Column x of bin k reads padded column x + (D-1) - k: the D-1 zero columns on the left
    # give the zeros for x < d.
    padded = F.pad(right, (d - 1, 0)).unsqueeze(2).expand(b, c, d, h, w + d - 1)
    cols = torch.arange(w, device=right.device).view(1, w)
    bins = torch.arange(d, device=right.device).view(d, 1)
    index = (cols + (d - 1) - bins).view(1, 1, d, 1, w).expand(b, c, d, h, w)
    left_part = left.unsqueeze(2).expand(b, c, d, h, w)
    if (torch.jit.is_tracing() or torch.is_grad_enabled()
            and (left.requires_grad or right.requires_grad)):
        return torch.cat([left_part, torch.gather(padded, -1, index)], dim=1)
    # Eager inference: fill one preallocated volume, a single pass per half (out= has no
    # autograd and no ONNX export, hence the branch above).
    volume = left.new_empty(b, 2 * c, d, h, w)
    volume[:, :c] = left_part
    torch.gather(padded, -1, index, out=volume[:, c:])
    return volume


def disparity_regression(prob: torch.Tensor, max_disp: int) -> torch.Tensor:
    """Compute the expected disparity under a per-pixel distribution over the D bins.

    Args:
        prob: (B, D, H, W) probabilities (softmax over dim 1).
        max_disp: D, the number of bins (bin ``i`` stands for disparity ``i``).

    Returns:
        (B, 1, H, W) expected disparity in bin units.
    """
    if prob.dim() != 4 or prob.shape[1] != int(max_disp):
        raise ValueError(
            f'expected probabilities of shape (B, {max_disp}, H, W), got {tuple(prob.shape)}')
    values = torch.arange(int(max_disp), dtype=prob.dtype, device=prob.device)
    return (prob * values.view(1, -1, 1, 1)).sum(dim=1, keepdim=True)


def gwc_volume_reference(left: torch.Tensor, right: torch.Tensor, max_disp: int,
                         num_groups: int, normalize: bool = True) -> torch.Tensor:
    """Per-disparity loop definition of :func:`build_gwc_volume` (the upstream formulation).

    Slow; kept as the specification the loop-free builder is tested and benchmarked against.
    """
    b, c, h, w = left.shape
    ln = left.reshape(b, num_groups, c // num_groups, h, w)
    rn = right.reshape(b, num_groups, c // num_groups, h, w)
    if normalize:
        ln, rn = F.normalize(ln, dim=2), F.normalize(rn, dim=2)
    volume = left.new_zeros(b, num_groups, max_disp, h, w)
    for d in range(min(max_disp, w)):
        volume[:, :, d, :, d:] = (ln[..., d:] * rn[..., :w - d]).sum(2)
    return volume


def concat_volume_reference(left: torch.Tensor, right: torch.Tensor,
                            max_disp: int) -> torch.Tensor:
    """Per-disparity loop definition of :func:`build_concat_volume` (the upstream formulation).

    Slow; kept as the specification the loop-free builder is tested and benchmarked against.
    """
    b, c, h, w = left.shape
    volume = left.new_zeros(b, 2 * c, max_disp, h, w)
    for d in range(max_disp):
        volume[:, :c, d] = left
        if d < w:
            volume[:, c:, d, :, d:] = right[..., :w - d]
    return volume

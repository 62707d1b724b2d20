"""Combined geometry encoding volume: what the update block sees around the current disparity.

Two lookup tables are built once per image pair, at 1/4 resolution and in float32:

* the filtered cost volume (B, C, D, H, W) (output of the hourglass), and
* the all-pairs correlation of the L2-normalised left/right features along each row,
  (B, H, W_left, W_right).

Level ``i`` of the pyramid average-pools the cost volume along D and the correlation along the
right-image column by ``2**i`` (floor). At every iteration both are sampled with linear
interpolation at ``2 * radius + 1`` integer-spaced offsets around ``disp / 2**i`` (volume) and
``(x - disp) / 2**i`` (correlation, i.e. the matching column in the right image). Samples follow
``grid_sample(mode='bilinear', padding_mode='zeros', align_corners=True)`` on a 1-pixel-high
image: taps outside ``[0, L - 1]`` contribute zero. Output channels per level: C volume channels
x offsets (channel-major), then the offsets of the correlation; levels are concatenated.

The lookup is two ``gather`` calls per level (no ``grid_sample``, no Python loop over offsets,
no host synchronisation), which also exports to ONNX as plain GatherElements.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    'GeometryEncodingVolume',
    'all_pairs_correlation',
    'geometry_channels',
    'linear_sample_last_dim',
]


def geometry_channels(volume_channels: int, levels: int, radius: int) -> int:
    """Channels of the encoding: ``levels * (2 * radius + 1) * (volume_channels + 1)``."""
    return levels * (2 * radius + 1) * (volume_channels + 1)


def all_pairs_correlation(fmap_left: torch.Tensor, fmap_right: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of every left pixel with every right pixel of the same row.

    fmap_left (B, C, H, W1), fmap_right (B, C, H, W2) -> (B, H, W1, W2), float32.
    """
    left = F.normalize(fmap_left.float(), dim=1)
    right = F.normalize(fmap_right.float(), dim=1)
    # (B, H, W1, C) @ (B, H, C, W2): one batched matmul over all rows.
    return torch.matmul(left.permute(0, 2, 3, 1), right.permute(0, 2, 1, 3))


def linear_sample_last_dim(table: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Linear interpolation of ``table`` along its last dim at fractional positions ``x``.

    ``table`` (..., L) and ``x`` (..., K) broadcast on the leading dims (``table``'s
    leading dims must already have the full shape). Positions are in samples (0 = first,
    ``L - 1`` = last); the two taps of each sample are weighted ``1 - f`` and ``f`` and a tap
    outside ``[0, L - 1]`` counts as zero, exactly as ``grid_sample`` with
    ``align_corners=True`` and ``padding_mode='zeros'``. Returns (..., K) in ``table``'s dtype.
    """
    length = table.shape[-1]
    x0 = torch.floor(x)
    w1 = x - x0
    w0 = 1.0 - w1
    i0 = x0.long()
    i1 = i0 + 1
    # Zero weight for taps outside the table; the clamped index only keeps gather in bounds.
    w0 = torch.where((i0 >= 0) & (i0 < length), w0, torch.zeros_like(w0))
    w1 = torch.where((i1 >= 0) & (i1 < length), w1, torch.zeros_like(w1))
    shape = table.shape[:-1] + x.shape[-1:]
    i0 = i0.clamp(0, length - 1).expand(shape)
    i1 = i1.clamp(0, length - 1).expand(shape)
    v0 = torch.gather(table, -1, i0)
    v1 = torch.gather(table, -1, i1)
    return (w0 * v0 + w1 * v1).to(table.dtype)


def _avg_pool_last_dim(x: torch.Tensor) -> torch.Tensor:
    """Mean of consecutive pairs along the last dim (an odd last element is dropped)."""
    n = x.shape[-1] // 2
    return x[..., :2 * n].unflatten(-1, (n, 2)).mean(-1)


class GeometryEncodingVolume:
    """Pyramid of cost-volume and correlation lookup tables for one image pair.

    Args:
        fmap_left, fmap_right: (B, C, H, W) 1/4-resolution features of the two images.
        cost_volume: (B, Cv, D, H, W) filtered cost volume (hourglass output).
        num_levels: pyramid levels (official ``corr_levels``, 2).
        radius: offsets ``-radius .. radius`` (official ``corr_radius``, 4).

    Calling the object with a disparity map (B, 1, H, W) in 1/4-resolution pixels returns the
    (B, num_levels * (2r+1) * (Cv+1), H, W) float32 encoding (channels-last in memory).
    """

    def __init__(self, fmap_left: torch.Tensor, fmap_right: torch.Tensor,
                 cost_volume: torch.Tensor, num_levels: int = 2, radius: int = 4) -> None:
        if cost_volume.dim() != 5:
            raise ValueError(f'cost_volume must be (B, C, D, H, W), '
                             f'got {tuple(cost_volume.shape)}')
        b, _, _, h, w = cost_volume.shape
        if fmap_left.shape[0] != b or tuple(fmap_left.shape[2:]) != (h, w):
            raise ValueError(f'features {tuple(fmap_left.shape)} do not match the cost volume '
                             f'{tuple(cost_volume.shape)}')
        self.num_levels = num_levels
        self.radius = radius
        device = cost_volume.device
        # Offsets -r..r as exact small integers in float32 (built once, on the device).
        self.offsets = torch.arange(-radius, radius + 1, device=device, dtype=torch.float32)
        # Column index of every 1/4-resolution pixel, (1, H, W, 1); broadcasts over the batch.
        self.columns = torch.arange(w, device=device, dtype=torch.float32).view(1, 1, w, 1)
        self.columns = self.columns.expand(1, h, w, 1)

        # Lookup layout (B, H, W, C, D): the sampled dim is last and contiguous.
        volume = cost_volume.float().permute(0, 3, 4, 1, 2).contiguous()
        corr = all_pairs_correlation(fmap_left, fmap_right)          # (B, H, W, W2)
        self.volume_pyramid = [volume]
        self.corr_pyramid = [corr]
        for _ in range(num_levels - 1):
            volume = _avg_pool_last_dim(volume)
            corr = _avg_pool_last_dim(corr)
            self.volume_pyramid.append(volume)
            self.corr_pyramid.append(corr)

    @property
    def channels(self) -> int:
        """Return the number of output channels."""
        return geometry_channels(self.volume_pyramid[0].shape[3], self.num_levels, self.radius)

    def __call__(self, disp: torch.Tensor) -> torch.Tensor:
        disp = disp.float().permute(0, 2, 3, 1)                     # (B, H, W, 1)
        out = []
        for level in range(self.num_levels):
            scale = 1.0 / 2 ** level        # exact: a power of two
            volume = self.volume_pyramid[level]                        # (B, H, W, C, D_l)
            x_volume = disp * scale + self.offsets                     # (B, H, W, K)
            sampled = linear_sample_last_dim(volume, x_volume.unsqueeze(3))  # (B, H, W, C, K)
            out.append(sampled.flatten(3))                              # channel-major C x K
            x_right = (self.columns - disp) * scale + self.offsets     # (B, H, W, K)
            out.append(linear_sample_last_dim(self.corr_pyramid[level], x_right))
        # (B, H, W, Ctot) viewed as (B, Ctot, H, W): channels-last memory, no extra copy.
        return torch.cat(out, dim=-1).permute(0, 3, 1, 2)

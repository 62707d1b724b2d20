"""Iterative update block: selective multi-level ConvGRU over 1/4, 1/8 and 1/16 resolution.

One call performs one refinement step. The coarse GRUs run first (1/16, then 1/8), each seeing
its context features and the neighbouring hidden states; the 1/4 GRU additionally sees the motion
features (geometry encoding sampled at the current disparity plus the disparity itself). Each
level has two GRUs, a 1x1 ("small") and a 3x3 ("large") one, blended per pixel by the spatial
attention map of the context features. Outputs: new hidden states, the features the convex
upsampler uses, and the disparity increment.

Attribute names and constructor arguments mirror the official ``core/update.py`` so that the
state-dict keys (``update_block.*``) of released checkpoints load unchanged.
"""
from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import nn

from .edgenext import ConvBlock

__all__ = [
    'ConvGRUCell',
    'DispHead',
    'MotionEncoder',
    'SelectiveConvGRU',
    'SelectiveMultiUpdateBlock',
]


def _conv_relu(*channels: int) -> nn.Sequential:
    """3x3 conv + ReLU per consecutive pair of ``channels`` (convs at indices 0, 2, ...)."""
    layers: list[nn.Module] = []
    for c_in, c_out in pairwise(channels):
        layers += [_same_conv(c_in, c_out, 3), nn.ReLU()]
    return nn.Sequential(*layers)


def _same_conv(c_in: int, c_out: int, kernel_size: int) -> nn.Conv2d:
    """Conv with bias whose zero padding keeps the spatial size (odd ``kernel_size``)."""
    return nn.Conv2d(c_in, c_out, kernel_size, padding=kernel_size // 2)


class DispHead(nn.Module):
    """Hidden state (B, C, H, W) -> disparity increment (B, 1, H, W).

    conv + ReLU, two 7x7 EdgeNeXt conv blocks without norm, then a 3x3 conv to one channel.
    """

    def __init__(self, input_dim: int = 128, hidden_dim: int = 256, output_dim: int = 1) -> None:
        super().__init__()
        # hidden_dim is unused (as upstream); kept for the constructor signature.
        blocks = [ConvBlock(input_dim, 7, norm=False, names='flat') for _ in range(2)]
        self.conv = nn.Sequential(*_conv_relu(input_dim, input_dim), *blocks,
                                  _same_conv(input_dim, output_dim, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class ConvGRUCell(nn.Module):
    """ConvGRU whose update/reset gates read a precomputed ``hx`` (RAFT style)."""

    def __init__(self, hidden_dim: int = 128, input_dim: int = 256, kernel_size: int = 3) -> None:
        super().__init__()
        # Update gate z, reset gate r, candidate q: all read [hidden, input] channels.
        self.convz, self.convr, self.convq = (
            _same_conv(hidden_dim + input_dim, hidden_dim, kernel_size) for _ in 'zrq')

    def forward(self, h: torch.Tensor, x: torch.Tensor, hx: torch.Tensor) -> torch.Tensor:
        z = torch.sigmoid(self.convz(hx))
        r = torch.sigmoid(self.convr(hx))
        q = torch.tanh(self.convq(torch.cat([r * h, x], dim=1)))
        return (1 - z) * h + z * q


class SelectiveConvGRU(nn.Module):
    """Two ConvGRUs (1x1 and 3x3 kernels) blended by a spatial attention map."""

    def __init__(self, hidden_dim: int = 128, input_dim: int = 256, small_kernel_size: int = 1,
                 large_kernel_size: int = 3) -> None:
        super().__init__()
        # conv0 mixes the inputs, conv1 the mixed inputs with the hidden state.
        self.conv0 = _conv_relu(input_dim, input_dim)
        self.conv1 = _conv_relu(input_dim + hidden_dim, input_dim + hidden_dim)
        self.small_gru = ConvGRUCell(hidden_dim, input_dim, small_kernel_size)
        self.large_gru = ConvGRUCell(hidden_dim, input_dim, large_kernel_size)

    def forward(self, att: torch.Tensor, h: torch.Tensor, *inputs: torch.Tensor) -> torch.Tensor:
        x = self.conv0(torch.cat(inputs, dim=1))
        hx = self.conv1(torch.cat([x, h], dim=1))
        # att weights the small-kernel GRU, 1 - att the large-kernel one.
        return self.small_gru(h, x, hx) * att + self.large_gru(h, x, hx) * (1 - att)


class MotionEncoder(nn.Module):
    """Geometry encoding + current disparity -> 128 motion channels (last one = disparity)."""

    def __init__(self, geo_channels: int) -> None:
        super().__init__()
        # Cost branch (c), disparity branch (d), then a joint conv leaving one channel free
        # for the disparity appended to its output.
        self.convc1, self.convc2 = _same_conv(geo_channels, 256, 1), _same_conv(256, 256, 3)
        self.convd1, self.convd2 = _same_conv(1, 64, 7), _same_conv(64, 64, 3)
        self.conv = _same_conv(64 + 256, 128 - 1, 3)

    def forward(self, disp: torch.Tensor, geo_feat: torch.Tensor) -> torch.Tensor:
        cor = F.relu(self.convc2(F.relu(self.convc1(geo_feat))))
        dsp = F.relu(self.convd2(F.relu(self.convd1(disp))))
        out = F.relu(self.conv(torch.cat([cor, dsp], dim=1)))
        return torch.cat([out, disp], dim=1)


def _pool2x(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, 3, stride=2, padding=1)


def _resize_to(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, ref.shape[2:], mode='bilinear', align_corners=True)


class SelectiveMultiUpdateBlock(nn.Module):
    """Official ``BasicSelectiveMultiUpdateBlock`` (attribute names kept for the state dict).

    Args:
        n_gru_layers: 1, 2 or 3 resolution levels (1/4, 1/8, 1/16).
        geo_channels: channels of the geometry encoding (522 for 2 levels, radius 4, 28 ch).
        hidden_dim: GRU hidden / context channels (128 in every released model).
    """

    def __init__(self, n_gru_layers: int, geo_channels: int, hidden_dim: int = 128) -> None:
        super().__init__()
        if n_gru_layers not in (1, 2, 3):
            raise ValueError(f'n_gru_layers must be 1, 2 or 3, got {n_gru_layers}')
        self.n_gru_layers = n_gru_layers
        self.encoder = MotionEncoder(geo_channels)
        if n_gru_layers == 3:
            self.gru16 = SelectiveConvGRU(hidden_dim, hidden_dim * 2)
        if n_gru_layers >= 2:
            self.gru08 = SelectiveConvGRU(hidden_dim,
                                          hidden_dim * (n_gru_layers == 3) + hidden_dim * 2)
        self.gru04 = SelectiveConvGRU(hidden_dim, hidden_dim * (n_gru_layers > 1) + hidden_dim * 2)
        self.disp_head = DispHead(hidden_dim, 256)
        # Upsampling features: 128 -> 64 -> 32 channels.
        self.mask = _conv_relu(hidden_dim, 64, 32)

    def forward(self, net: Sequence[torch.Tensor], inp: Sequence[torch.Tensor],
                geo_feat: torch.Tensor, disp: torch.Tensor, att: Sequence[torch.Tensor],
                ) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """One refinement step.

        Args:
            net: hidden states, finest first ((B, C, H/4, W/4), (B, C, H/8, W/8), ...).
            inp: context features per level. att: spatial attention (B, 1, ., .) per level.
            geo_feat: geometry encoding at the current disparity (B, G, H/4, W/4).
            disp: current disparity (B, 1, H/4, W/4), 1/4-resolution pixels.

        Returns:
            (new hidden states, upsampling features (B, 32, H/4, W/4) scaled by 1/4,
            disparity increment (B, 1, H/4, W/4)).
        """
        net = list(net)
        if self.n_gru_layers == 3:
            net[2] = self.gru16(att[2], net[2], inp[2], _pool2x(net[1]))
        if self.n_gru_layers == 3:
            net[1] = self.gru08(att[1], net[1], inp[1], _pool2x(net[0]),
                                _resize_to(net[2], net[1]))
        elif self.n_gru_layers == 2:
            net[1] = self.gru08(att[1], net[1], inp[1], _pool2x(net[0]))

        motion = self.encoder(disp, geo_feat)
        if self.n_gru_layers > 1:
            net[0] = self.gru04(att[0], net[0], inp[0], motion, _resize_to(net[1], net[0]))
        else:
            net[0] = self.gru04(att[0], net[0], inp[0], motion)

        delta_disp = self.disp_head(net[0])
        # The 0.25 balances gradients in training (upstream); the upsampler expects it.
        mask_feat = 0.25 * self.mask(net[0])
        return net, mask_feat, delta_disp

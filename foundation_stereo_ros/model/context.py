"""Context network: initial GRU hidden states and context features of the left image.

A RAFT-style residual CNN brings the left image to 1/4 resolution, where the DepthAnything
(DINOv2 + DPT) feature map ``vit_feat`` is concatenated; two more stride-2 stages give 1/8 and
1/16. At each level two heads produce the raw hidden state (``net``, later ``tanh``) and the raw
context (``inp``, later ``relu`` + channel attention). The channel and spatial attention modules
that post-process the context live here too.

Attribute names follow the official ``ContextNetDino`` / ``ChannelAttentionEnhancement`` /
``SpatialAttentionExtractor`` so that ``cnet.*``, ``cam.*`` and ``sam.*`` keys load unchanged;
``down`` and ``norm`` exist in released checkpoints but are never used by the computation.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .layers import BasicConv, ResidualBlock

__all__ = ['VIT_FEATURE_CHANNELS', 'ChannelAttention', 'ContextNet', 'SpatialAttention']

# Channels of the DPT output ``vit_feat`` (half the DPT ``features`` of each ViT size).
VIT_FEATURE_CHANNELS = {'vits': 32, 'vitb': 64, 'vitl': 128}


class ContextNet(nn.Module):
    """Official ``ContextNetDino`` (batch-norm residual encoder + DPT features).

    Args:
        vit_size: 'vits', 'vitb' or 'vitl' (sets the ``vit_feat`` channels).
        output_dim: per output head, the channels at (1/16, 1/8, 1/4); upstream passes
            ``[hidden_dims, context_dims]`` -> head 0 = hidden state, head 1 = context.
        downsample: number of stride-2 stages before the 1/4 level (2 for 1/4).
    """

    def __init__(self, vit_size: str, output_dim: Sequence[Sequence[int]],
                 norm_fn: str = 'batch', downsample: int = 2) -> None:
        super().__init__()
        if vit_size not in VIT_FEATURE_CHANNELS:
            raise ValueError(f'vit_size must be one of {sorted(VIT_FEATURE_CHANNELS)}, '
                             f'got {vit_size!r}')
        self.vit_size = vit_size
        if norm_fn != 'batch':
            raise ValueError(f"ContextNet supports norm_fn='batch' only, got {norm_fn!r}")
        self.norm1 = nn.BatchNorm2d(64)
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=1 + (downsample > 2), padding=3)
        self.layer1 = self._stage(64, 64, stride=1)
        self.layer2 = self._stage(64, 96, stride=1 + (downsample > 1))
        self.layer3 = self._stage(96, 128, stride=1 + (downsample > 0))
        self.layer4 = self._stage(128, 128, stride=2)
        self.layer5 = self._stage(128, 128, stride=2)
        # Present in released checkpoints, unused by forward (kept for strict loading).
        self.down = nn.Sequential(
            nn.Conv2d(128, 128, kernel_size=4, stride=4, padding=0),
            nn.BatchNorm2d(128),
        )
        vit_dim = VIT_FEATURE_CHANNELS[vit_size]
        self.conv2 = BasicConv(128 + vit_dim, 128, kernel_size=3, padding=1)
        self.norm = nn.BatchNorm2d(256)   # unused, kept for strict loading
        self.outputs04 = nn.ModuleList([
            nn.Sequential(ResidualBlock(128, 128, norm_fn, stride=1),
                          nn.Conv2d(128, dim[2], 3, padding=1))
            for dim in output_dim])
        self.outputs08 = nn.ModuleList([
            nn.Sequential(ResidualBlock(128, 128, norm_fn, stride=1),
                          nn.Conv2d(128, dim[1], 3, padding=1))
            for dim in output_dim])
        self.outputs16 = nn.ModuleList([nn.Conv2d(128, dim[0], 3, padding=1)
                                        for dim in output_dim])

    @staticmethod
    def _stage(in_planes: int, planes: int, stride: int) -> nn.Sequential:
        return nn.Sequential(ResidualBlock(in_planes, planes, 'batch', stride=stride),
                             ResidualBlock(planes, planes, 'batch', stride=1))

    def forward(self, image: torch.Tensor, vit_feat: torch.Tensor, num_layers: int = 3,
                ) -> list[list[torch.Tensor]]:
        """Context of the normalised left image.

        Args:
            image: (B, 3, H, W) normalised left image.
            vit_feat: (B, C_vit, H/4, W/4) DPT features of the left image.
            num_layers: number of levels to compute (1/4, then 1/8, then 1/16).

        Returns:
            one list per level, finest first, each ``[head 0, head 1, ...]`` raw outputs.
        """
        x = torch.relu(self.norm1(self.conv1(image)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = self.conv2(torch.cat([x, vit_feat], dim=1))
        levels = [[head(x) for head in self.outputs04]]
        if num_layers >= 2:
            y = self.layer4(x)
            levels.append([head(y) for head in self.outputs08])
            if num_layers >= 3:
                z = self.layer5(y)
                levels.append([head(z) for head in self.outputs16])
        return levels


class ChannelAttention(nn.Module):
    """Per-channel gate in (0, 1) from global average and max pooling (official ``cam``)."""

    def __init__(self, in_planes: int, ratio: int = 16) -> None:
        super().__init__()
        self.fc = nn.Sequential(nn.Conv2d(in_planes, in_planes // ratio, 1, bias=False),
                                nn.ReLU(),
                                nn.Conv2d(in_planes // ratio, in_planes, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = self.fc(x.mean(dim=(2, 3), keepdim=True))
        mx = self.fc(x.amax(dim=(2, 3), keepdim=True))
        return torch.sigmoid(avg + mx)


class SpatialAttention(nn.Module):
    """Per-pixel gate in (0, 1) from the channel mean and max (official ``sam``)."""

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        self.samconv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return torch.sigmoid(self.samconv(pooled))

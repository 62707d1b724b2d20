"""Depth Anything (V2) as a feature extractor: DINOv2 encoder + DPT decoder head.

FoundationStereo uses only the DPT head's 1/2-channel feature map ``out`` (the features that
Depth Anything would turn into relative depth), not the depth itself. Module and parameter
names follow the Depth Anything code so that FoundationStereo checkpoints load unchanged.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .dinov2 import DinoVisionTransformer

__all__ = ['DPT_CONFIGS', 'INTERMEDIATE_LAYERS', 'DPTHead', 'DepthAnything',
           'DepthAnythingFeature']

# DPT width ('features') and per-level projection channels for each ViT size.
DPT_CONFIGS: dict[str, dict] = {
    'vits': {'features': 64, 'out_channels': [48, 96, 192, 384]},
    'vitb': {'features': 128, 'out_channels': [96, 192, 384, 768]},
    'vitl': {'features': 256, 'out_channels': [256, 512, 1024, 1024]},
}
# ViT blocks whose outputs feed the four DPT levels (Depth Anything V2 choice).
INTERMEDIATE_LAYERS: dict[str, list[int]] = {
    'vits': [2, 5, 8, 11],
    'vitb': [2, 5, 8, 11],
    'vitl': [4, 11, 17, 23],
}


class ResidualConvUnit(nn.Module):
    """x + conv2(relu(conv1(relu(x)))) with 3x3 convolutions."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(features, features, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class FeatureFusionBlock(nn.Module):
    """Fuse a coarser path with a skip level, refine, upsample (x2 or to ``size``), 1x1 conv.

    ``resConfUnit1`` processes the skip input; the coarsest level has none, so there it is
    never used (it still exists in checkpoints).
    """

    def __init__(self, features: int) -> None:
        super().__init__()
        self.out_conv = nn.Conv2d(features, features, kernel_size=1)
        self.resConfUnit1 = ResidualConvUnit(features)
        self.resConfUnit2 = ResidualConvUnit(features)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None,
                size: Sequence[int] | None = None) -> torch.Tensor:
        if skip is not None:
            x = x + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        if size is None:
            x = F.interpolate(x, scale_factor=2, mode='bilinear', align_corners=True)
        else:
            x = F.interpolate(x, size=tuple(size), mode='bilinear', align_corners=True)
        return self.out_conv(x)


class DPTHead(nn.Module):
    """DPT decoder: four ViT token maps -> feature map at the ViT input resolution.

    Levels are reassembled at 4x, 2x, 1x and 1/2x the patch grid, projected to ``features``
    channels, fused coarse to fine, reduced to ``features // 2`` channels and resized
    (bilinear, align_corners=True) to ``patch_size`` times the patch grid.
    """

    def __init__(self, in_channels: int, features: int, out_channels: Sequence[int]) -> None:
        super().__init__()
        self.projects = nn.ModuleList(
            nn.Conv2d(in_channels, channels, kernel_size=1) for channels in out_channels)
        self.resize_layers = nn.ModuleList([
            nn.ConvTranspose2d(out_channels[0], out_channels[0], kernel_size=4, stride=4),
            nn.ConvTranspose2d(out_channels[1], out_channels[1], kernel_size=2, stride=2),
            nn.Identity(),
            nn.Conv2d(out_channels[3], out_channels[3], kernel_size=3, stride=2, padding=1),
        ])
        self.scratch = nn.Module()
        for level, channels in enumerate(out_channels, start=1):
            self.scratch.add_module(f'layer{level}_rn', nn.Conv2d(
                channels, features, kernel_size=3, padding=1, bias=False))
        for level in range(1, 5):
            self.scratch.add_module(f'refinenet{level}', FeatureFusionBlock(features))
        self.scratch.output_conv1 = nn.Conv2d(features, features // 2, kernel_size=3, padding=1)
        # Depth Anything's relative-depth output; FoundationStereo never uses it, but
        # checkpoints contain it, so it exists for strict loading and is not run.
        self.scratch.output_conv2 = nn.Sequential(
            nn.Conv2d(features // 2, 32, kernel_size=3, padding=1),
            nn.ReLU(True),
            nn.Conv2d(32, 1, kernel_size=1),
            nn.ReLU(True),
            nn.Identity(),
        )

    def forward(self, layers: Sequence[tuple[torch.Tensor, torch.Tensor]], patch_h: int,
                patch_w: int, patch_size: int = 14) -> torch.Tensor:
        """``layers``: four ``(tokens (B, patch_h*patch_w, C), class_token)`` pairs."""
        scratch = self.scratch
        maps = []
        for tokens, project, resize in zip(
                (t for t, _ in layers), self.projects, self.resize_layers):
            grid = tokens.transpose(1, 2).reshape(tokens.shape[0], -1, patch_h, patch_w)
            maps.append(resize(project(grid)))
        l1, l2, l3, l4 = (rn(m) for rn, m in zip(
            (scratch.layer1_rn, scratch.layer2_rn, scratch.layer3_rn, scratch.layer4_rn), maps))
        path = scratch.refinenet4(l4, size=l3.shape[2:])
        path = scratch.refinenet3(path, l3, size=l2.shape[2:])
        path = scratch.refinenet2(path, l2, size=l1.shape[2:])
        path = scratch.refinenet1(path, l1)
        out = scratch.output_conv1(path)
        return F.interpolate(out, size=(patch_h * patch_size, patch_w * patch_size),
                             mode='bilinear', align_corners=True)


class DepthAnything(nn.Module):
    """DINOv2 encoder (``pretrained``) + DPT head (``depth_head``)."""

    def __init__(self, vit_size: str) -> None:
        super().__init__()
        if vit_size not in DPT_CONFIGS:
            raise ValueError(f'unknown ViT size {vit_size!r}; use one of {sorted(DPT_CONFIGS)}')
        self.pretrained = DinoVisionTransformer.from_size(vit_size)
        config = DPT_CONFIGS[vit_size]
        self.depth_head = DPTHead(self.pretrained.embed_dim, config['features'],
                                  config['out_channels'])


class DepthAnythingFeature(nn.Module):
    """Depth Anything features of a normalized image whose sides are multiples of 14.

    ``forward`` returns the DPT map (B, features // 2, H, W) at the input resolution.
    """

    def __init__(self, vit_size: str = 'vits') -> None:
        super().__init__()
        self.vit_size = vit_size
        self.depth_anything = DepthAnything(vit_size)
        self.layer_indices = INTERMEDIATE_LAYERS[vit_size]
        self.out_channels = DPT_CONFIGS[vit_size]['features'] // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        vit = self.depth_anything.pretrained
        layers = vit.get_intermediate_layers(x, self.layer_indices)
        patch = vit.patch_size
        return self.depth_anything.depth_head(layers, x.shape[-2] // patch,
                                              x.shape[-1] // patch, patch_size=patch)

"""FoundationStereo feature network: EdgeNeXt-S pyramid fused with Depth Anything features.

Both images of a stereo pair go through it as one batch ``[left; right]``. The CNN branch
(EdgeNeXt-S, strides 4..32) is decoded top-down with instance-norm up-convolutions; the
1/4 level is concatenated with the Depth Anything (DINOv2 + DPT) feature map, which is
computed on the image resized to multiples of 112 and resized back to 1/4 resolution.
Attribute names mirror the official ``core/extractor.py`` (checkpoint keys ``feature.*``).
"""
from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .config import DEFAULT_VIT_SIZE
from .dpt import DPT_CONFIGS, DepthAnythingFeature
from .edgenext import edgenext_small, stage_outputs
from .hierarchical import check_divisible
from .layers import BasicConv, Conv2xIN, ResidualBlock

__all__ = [
    'DINO_MAX_SIZE',
    'DINO_SIZE_DIVISOR',
    'IMAGENET_MEAN',
    'IMAGENET_STD',
    'Feature',
    'dino_input_size',
    'normalize_image',
    'vit_size_of',
]

# ImageNet statistics of RGB images in 0..1: the normalisation both families were trained with
# (and the one Fast-FoundationStereo's single-file ONNX export leaves to its caller).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# lcm(ViT patch 14, CNN stride 16): the DINOv2 input is resized to multiples of this.
DINO_SIZE_DIVISOR = 112
DINO_MAX_SIZE = 1344


@functools.lru_cache(maxsize=8)
def _mean_std(device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    # Cached per device so that normalizing does not copy constants to the GPU every frame.
    mean = torch.tensor(IMAGENET_MEAN, dtype=dtype, device=device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=dtype, device=device).view(3, 1, 1)
    return mean, std


def normalize_image(img: torch.Tensor) -> torch.Tensor:
    """Map RGB images in 0..255, shape (..., 3, H, W), to ImageNet-normalized values.

    Divides by 255, then subtracts the mean and divides by the std per channel (the order
    torchvision's ``Normalize`` uses). Returns a new contiguous tensor.
    """
    if img.dim() < 3 or img.shape[-3] != 3:
        raise ValueError(f'normalize_image expects RGB images (..., 3, H, W), '
                         f'got shape {tuple(img.shape)}')
    if not img.is_floating_point():
        raise ValueError(f'normalize_image expects a floating-point tensor, got {img.dtype}; '
                         'convert with .float() first')
    mean, std = _mean_std(img.device, img.dtype)
    return ((img / 255.0 - mean) / std).contiguous()


def dino_input_size(height: int, width: int, divisor: int = DINO_SIZE_DIVISOR,
                    max_size: int = DINO_MAX_SIZE) -> tuple[int, int]:
    """Size (H, W) the DINOv2 branch runs at for an input of ``height`` x ``width``.

    Both sides are rounded up to multiples of ``divisor``. If one exceeds ``max_size``, the
    larger rounded side becomes ``max_size`` and the other is scaled by the same factor and
    rounded up again.
    """
    if height <= 0 or width <= 0:
        raise ValueError(f'image size must be positive, got {height}x{width}')
    if max_size % divisor:
        raise ValueError(f'max_size {max_size} must be a multiple of divisor {divisor}')

    def round_up(value: float) -> int:
        return int(math.ceil(value / divisor) * divisor)

    out_h, out_w = round_up(height), round_up(width)
    if out_h > max_size or out_w > max_size:
        if out_h > out_w:
            out_h, out_w = max_size, round_up(out_w * max_size / out_h)
        else:
            out_h, out_w = round_up(out_h * max_size / out_w), max_size
    return out_h, out_w


def vit_size_of(cfg: Any) -> str:
    """``vit_size`` of a config given as a mapping or an attribute object.

    Missing or None: :data:`.config.DEFAULT_VIT_SIZE`.
    """
    if isinstance(cfg, Mapping):
        vit_size = cfg.get('vit_size')
    else:
        vit_size = getattr(cfg, 'vit_size', None)
    vit_size = DEFAULT_VIT_SIZE if vit_size is None else vit_size
    if vit_size not in DPT_CONFIGS:
        raise ValueError(f"cfg['vit_size'] must be one of {sorted(DPT_CONFIGS)}, "
                         f'got {vit_size!r}')
    return vit_size


class Feature(nn.Module):
    """Stereo feature pyramid of FoundationStereo.

    Args:
        cfg: model config (mapping or attribute object); reads ``vit_size`` (vits / vitb /
            vitl, default :data:`.config.DEFAULT_VIT_SIZE` as in the official demo).

    Attributes:
        d_out: channels of the four returned levels (1/4, 1/8, 1/16, 1/32), e.g.
            ``[128, 192, 320, 304]`` for vits.
    """

    def __init__(self, cfg: Any) -> None:
        super().__init__()
        vit_size = vit_size_of(cfg)
        backbone = edgenext_small()
        self.stem = backbone.stem
        self.stages = backbone.stages
        chans = backbone.dims
        self.dino = DepthAnythingFeature(vit_size)
        self.dino.requires_grad_(False)  # frozen, as in the official model
        vit_dim = self.dino.out_channels
        self.deconv32_16 = Conv2xIN(chans[3], chans[2], deconv=True, concat=True)
        self.deconv16_8 = Conv2xIN(chans[2] * 2, chans[1], deconv=True, concat=True)
        self.deconv8_4 = Conv2xIN(chans[1] * 2, chans[0], deconv=True, concat=True)
        fused = chans[0] * 2 + vit_dim
        self.conv4 = nn.Sequential(
            BasicConv(fused, fused, kernel_size=3, stride=1, padding=1, norm='instance'),
            ResidualBlock(fused, fused, norm_fn='instance'),
            ResidualBlock(fused, fused, norm_fn='instance'),
        )
        self.vit_size = vit_size
        self.d_out = [fused, chans[1] * 2, chans[2] * 2, chans[3]]

    def train(self, mode: bool = True) -> Feature:
        super().train(mode)
        self.dino.eval()  # the Depth Anything branch always runs in inference mode
        return self

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Features of a normalized image batch (N, 3, H, W), H and W multiples of 32.

        Returns ``([f04, f08, f16, f32], vit_feat)``: the pyramid at 1/4..1/32 resolution
        with ``d_out`` channels and the Depth Anything features at 1/4 resolution.
        """
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f'Feature expects normalized RGB images (N, 3, H, W), '
                             f'got shape {tuple(x.shape)}')
        check_divisible(x)
        height, width = x.shape[-2:]
        dino_in = F.interpolate(x, size=dino_input_size(height, width), mode='bicubic',
                                align_corners=False)
        with torch.no_grad():
            vit_out = self.dino(dino_in)
        vit_feat = F.interpolate(vit_out, size=(height // 4, width // 4), mode='bilinear',
                                 align_corners=True)
        x4, x8, x16, x32 = stage_outputs(self.stem, self.stages, x)
        x16 = self.deconv32_16(x32, x16)
        x8 = self.deconv16_8(x16, x8)
        x4 = self.deconv8_4(x8, x4)
        x4 = self.conv4(torch.cat((x4, vit_feat), dim=1))
        return [x4, x8, x16, x32], vit_feat

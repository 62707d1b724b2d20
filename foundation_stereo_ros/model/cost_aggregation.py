"""Cost-volume filtering: stem, feature-guided excitation, 3D hourglass and classifier.

Module attribute names and registration order mirror the official ``FoundationStereo``
(``corr_stem``, ``corr_feature_att``, ``cost_agg``, ``classifier``) so that released
checkpoints load with ``strict=True``.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .cost_attention import ATTEND_DISPARITY, CostVolumeDisparityAttention
from .layers import BasicConv, Conv3dNormActReduced, ResnetBasicBlock3D

__all__ = ['FeatureAtt', 'Hourglass', 'make_classifier', 'make_corr_stem']

# Kernel size along the disparity axis of the separable 3D convolutions.
_KERNEL_DISP = 17


class FeatureAtt(nn.Module):
    """Gate a cost volume per channel and pixel with a sigmoid predicted from image features.

    Args:
        cv_chan: channels of the cost volume.
        feat_chan: channels of the image feature map at the volume's resolution.
    """

    def __init__(self, cv_chan: int, feat_chan: int):
        super().__init__()
        self.feat_att = nn.Sequential(
            BasicConv(feat_chan, feat_chan // 2, kernel_size=1, stride=1, padding=0),
            nn.Conv2d(feat_chan // 2, cv_chan, 1),
        )

    def forward(self, cv: torch.Tensor, feat: torch.Tensor) -> torch.Tensor:
        """cv: (B, Cv, D, H, W); feat: (B, Cf, H, W) -> (B, Cv, D, H, W)."""
        # The gate is shared by all disparities of a pixel.
        return torch.sigmoid(self.feat_att(feat)).unsqueeze(2) * cv


def _down_block(c_in: int, c_out: int) -> nn.Sequential:
    """x2 downsampling in D, H and W, then a separable 3D conv."""
    return nn.Sequential(
        BasicConv(c_in, c_out, is_3d=True, bn=True, relu=True, kernel_size=3, padding=1,
                  stride=2, dilation=1),
        Conv3dNormActReduced(c_out, c_out, kernel_size=3, kernel_disp=_KERNEL_DISP),
    )


def _up_block(c_in: int, c_out: int) -> BasicConv:
    """x2 upsampling in D, H and W (transposed 4x4x4 conv)."""
    return BasicConv(c_in, c_out, deconv=True, is_3d=True, bn=True, relu=True,
                     kernel_size=(4, 4, 4), padding=(1, 1, 1), stride=(2, 2, 2))


def _merge_block(c_in: int, c_out: int) -> nn.Sequential:
    """1x1x1 channel reduction after a skip concatenation, then two separable 3D convs."""
    return nn.Sequential(
        BasicConv(c_in, c_out, is_3d=True, kernel_size=1, padding=0, stride=1),
        Conv3dNormActReduced(c_out, c_out, kernel_size=3, kernel_disp=_KERNEL_DISP),
        Conv3dNormActReduced(c_out, c_out, kernel_size=3, kernel_disp=_KERNEL_DISP),
    )


class Hourglass(nn.Module):
    """3D encoder-decoder over a (B, C, D, H, W) cost volume (official ``hourglass``).

    Three x2 down levels (C -> 2C -> 4C -> 6C) gated by image features at 1/8, 1/16 and
    1/32, decoded with skip connections back to full volume size. In parallel, 4x4x4 patches
    of the input go through a transformer along the disparity axis and are added back
    (trilinear x4) before the output convolutions.

    Args:
        max_disp: maximum disparity in full-resolution pixels; the volume has max_disp // 4
            bins. Must be a multiple of 32 so the three x2 levels and the x4 patches tile the
            disparity axis.
        in_channels: volume channels C.
        feat_dims: channels of the image features at 1/4, 1/8, 1/16, 1/32 (entries 1..3 are
            used).
        attention: disparity-transformer semantics, see
            :class:`~.cost_attention.CostVolumeDisparityAttention`.
    """

    def __init__(self, max_disp: int, in_channels: int, feat_dims: Sequence[int],
                 attention: str = ATTEND_DISPARITY):
        super().__init__()
        if max_disp % 32:
            raise ValueError(
                f'max_disp must be a multiple of 32 for the cost-volume hourglass, got '
                f'{max_disp}')
        if len(feat_dims) < 4:
            raise ValueError(f'feat_dims needs 4 entries (1/4 .. 1/32), got {list(feat_dims)}')
        c = in_channels
        # Registration order follows the official module (state-dict key order).
        self.conv1 = _down_block(c, 2 * c)
        self.conv2 = _down_block(2 * c, 4 * c)
        self.conv3 = _down_block(4 * c, 6 * c)
        self.conv3_up = _up_block(6 * c, 4 * c)
        self.conv2_up = _up_block(4 * c, 2 * c)
        self.conv1_up = _up_block(2 * c, c)
        self.conv_out = nn.Sequential(
            Conv3dNormActReduced(c, c, kernel_size=3, kernel_disp=_KERNEL_DISP),
            Conv3dNormActReduced(c, c, kernel_size=3, kernel_disp=_KERNEL_DISP),
        )
        self.agg_0 = _merge_block(8 * c, 4 * c)
        self.agg_1 = _merge_block(4 * c, 2 * c)
        self.atts = nn.ModuleDict({
            '4': CostVolumeDisparityAttention(
                d_model=c, nhead=4, dim_feedforward=c, num_transformer=4,
                max_len=max_disp // 16, attention=attention),
        })
        # Depth-wise 4x4x4 patchify: the transformer runs at 1/16 of the disparity range.
        self.conv_patch = nn.Sequential(
            nn.Conv3d(c, c, kernel_size=4, stride=4, padding=0, groups=c),
            nn.BatchNorm3d(c),
        )
        self.feature_att_8 = FeatureAtt(2 * c, feat_dims[1])
        self.feature_att_16 = FeatureAtt(4 * c, feat_dims[2])
        self.feature_att_32 = FeatureAtt(6 * c, feat_dims[3])
        self.feature_att_up_16 = FeatureAtt(4 * c, feat_dims[2])
        self.feature_att_up_8 = FeatureAtt(2 * c, feat_dims[1])

    def forward(self, x: torch.Tensor, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """Aggregate the cost volume ``x``, guided by left-image features.

        ``x``: (B, C, D, H, W) with D, H, W multiples of 8; ``features``: left-image maps at
        1/4, 1/8, 1/16, 1/32. Returns (B, C, D, H, W).
        """
        if x.dim() != 5 or any(s % 8 for s in x.shape[2:]):
            raise ValueError(
                f'hourglass input must be (B, C, D, H, W) with D, H, W divisible by 8 '
                f'(image sides multiple of 32, max_disp multiple of 32), got {tuple(x.shape)}')
        conv1 = self.feature_att_8(self.conv1(x), features[1])
        conv2 = self.feature_att_16(self.conv2(conv1), features[2])
        conv3 = self.feature_att_32(self.conv3(conv2), features[3])

        conv2 = self.agg_0(torch.cat((self.conv3_up(conv3), conv2), dim=1))
        conv2 = self.feature_att_up_16(conv2, features[2])
        conv1 = self.agg_1(torch.cat((self.conv2_up(conv2), conv1), dim=1))
        conv1 = self.feature_att_up_8(conv1, features[1])
        conv = self.conv1_up(conv1)

        tokens = self.atts['4'](self.conv_patch(x))
        conv = conv + F.interpolate(tokens, scale_factor=4, mode='trilinear', align_corners=False)
        return self.conv_out(conv)


def make_corr_stem(in_channels: int = 32, volume_dim: int = 28) -> nn.Sequential:
    """Build the stem applied to the combined (group-wise + concat) volume.

    A 1x1x1 projection to ``volume_dim`` channels, a 3x3x3 conv and two 3D ResNet blocks
    (official ``corr_stem``).
    """
    return nn.Sequential(
        nn.Conv3d(in_channels, volume_dim, kernel_size=1),
        BasicConv(volume_dim, volume_dim, kernel_size=3, padding=1, is_3d=True),
        ResnetBasicBlock3D(volume_dim, volume_dim, kernel_size=3, stride=1, padding=1),
        ResnetBasicBlock3D(volume_dim, volume_dim, kernel_size=3, stride=1, padding=1),
    )


def make_classifier(volume_dim: int = 28) -> nn.Sequential:
    """Per-bin logits (B, 1, D, H, W) from the aggregated volume (official ``classifier``)."""
    half = volume_dim // 2
    return nn.Sequential(
        BasicConv(volume_dim, half, kernel_size=3, padding=1, is_3d=True),
        ResnetBasicBlock3D(half, half, kernel_size=3, stride=1, padding=1),
        nn.Conv3d(half, 1, kernel_size=7, padding=3),
    )

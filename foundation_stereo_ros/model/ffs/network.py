"""Fast-FoundationStereo network: the official forward computation over layers from the file.

The modules here receive their sub-networks already built (see :mod:`.builder`): FFS
checkpoints carry their own, pruned and searched, architecture. The forward computation is
FoundationStereo's (:mod:`..stereo_network`); this family supplies its sub-networks, its
feature and context hooks, and its cost-volume switches (``cv_group``, ``normalize``).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..edgenext import stage_outputs
from ..stereo_network import StereoNetwork
from .blocks import NamedLayers

__all__ = ['FFSFeature', 'FFSHourglass', 'FastFoundationStereo']


class FFSFeature(NamedLayers):
    """Official FFS ``Feature``: EdgeNeXt stem and stages, top-down decoder, 1x1 heads.

    Returns ``[f04, f08, f16, f32]``. ``conv4`` widens the 1/4 map to the channels the
    FoundationStereo ViT features had (the "phantom" band); optional ``conv8`` / ``conv16`` /
    ``conv32`` heads are applied when the file has them.
    """

    def __init__(self, layers: Mapping[str, nn.Module | None], d_out: Sequence[int]) -> None:
        super().__init__(layers)
        self.d_out = [int(c) for c in d_out]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x4, x8, x16, x32 = stage_outputs(self.stem, self.stages, x)
        x16 = self.deconv32_16(x32, x16)
        x8 = self.deconv16_8(x16, x8)
        x4 = self.conv4(self.deconv8_4(x8, x4))
        if getattr(self, 'conv8', None) is not None:
            x8, x16, x32 = self.conv8(x8), self.conv16(x16), self.conv32(x32)
        return [x4, x8, x16, x32]


class FFSHourglass(NamedLayers):
    """Official FFS ``hourglass``: 3D encoder-decoder with optional searched decoder steps.

    A decoder step ``post32_to_16`` / ``post16_to_8`` / ``post8_to_4`` given by the file
    (a :class:`.blocks.PostForwardHelper`) replaces the default one (deconv, concat, merge
    convs, feature gate; for 1/4: patchify + disparity transformer + trilinear x4).
    """

    POST = ('post32_to_16', 'post16_to_8', 'post8_to_4')

    def forward(self, x: torch.Tensor, features: Sequence[torch.Tensor]) -> torch.Tensor:
        conv1 = self.feature_att_8(self.conv1(x), features[1])
        conv2 = self.feature_att_16(self.conv2(conv1), features[2])
        conv3 = self.feature_att_32(self.conv3(conv2), features[3])
        if self.post32_to_16 is None:
            conv2 = self.agg_0(torch.cat((self.conv3_up(conv3), conv2), dim=1))
            conv2 = self.feature_att_up_16(conv2, features[2])
        else:
            conv2 = self.post32_to_16(conv2, conv3, features[2])
        if self.post16_to_8 is None:
            conv1 = self.agg_1(torch.cat((self.conv2_up(conv2), conv1), dim=1))
            conv1 = self.feature_att_up_8(conv1, features[1])
        else:
            conv1 = self.post16_to_8(conv1, conv2, features[1])
        conv = self.conv1_up(conv1)
        if self.post8_to_4 is not None:
            # The "upsample" chain of this step runs on the decoder output; the input is added.
            return self.post8_to_4(x, conv)
        tokens = self.atts['4'](self.conv_patch(x))
        conv = conv + F.interpolate(tokens, scale_factor=4, mode='trilinear', align_corners=False)
        return self.conv_out(conv)


class FastFoundationStereo(NamedLayers, StereoNetwork):
    """Fast-FoundationStereo disparity network rebuilt from a serialized checkpoint.

    The forward is :class:`.StereoNetwork`'s, as for FoundationStereo:
    ``model(left, right, iters=, test_mode=, init_disp=)`` and ``run_hierarchical``.

    Args:
        layers: the top-level sub-networks under their official names.
        args: the checkpoint's config (``max_disp``, ``normalize``, ``corr_levels``,
            ``corr_radius``, ``mixed_precision``, ...), plain data.
        cv_group: group-wise correlation groups.
        dx_buffer: the file's ``dx`` offsets when it stores them as a buffer (it then is a
            state-dict entry), else None.
    """

    family = 'fast_foundation_stereo'
    # Refinement iterations of the official scripts for this family.
    default_iters = 8

    def __init__(self, layers: Mapping[str, nn.Module | None], args: Mapping[str, Any],
                 cv_group: int, dx_buffer: torch.Tensor | None = None) -> None:
        super().__init__(layers)
        self.args = dict(args)
        self.cv_group = int(cv_group)
        self.max_disp = int(args['max_disp'])
        self.normalize = bool(args['normalize'])
        self.corr_levels = int(args['corr_levels'])
        self.corr_radius = int(args['corr_radius'])
        self.mixed_precision = bool(args.get('mixed_precision', False))
        self.amp_dtype = torch.float16
        if dx_buffer is not None:
            self.register_buffer('dx', dx_buffer.clone())

    # ------------------------------------------------------------------ family hooks
    def extract_features(self, images: torch.Tensor) -> tuple[list[torch.Tensor], None]:
        """Run the file's feature network (no Depth Anything branch: nothing extra)."""
        return self.feature(images), None

    def context(self, left: torch.Tensor, features_left: Sequence[torch.Tensor],
                extra: None) -> list[Sequence[torch.Tensor]]:
        """``cnet`` on the left 1/4 features (FFS shares the feature backbone)."""
        return self.cnet(features_left[0])

    def architecture_summary(self) -> str:
        """One line naming what the checkpoint's architecture is (for logs and diagnostics)."""
        params = sum(p.numel() for p in self.parameters())
        posts = []
        for name in self.cost_agg.POST:
            post = getattr(self.cost_agg, name)
            posts.append(f'{name.removeprefix("post")}:{"default" if post is None else post.op}')
        layers = [len(m.sa) for m in self.modules() if hasattr(m, 'sa')]
        gru = self.update_block.gru04.small_gru.convz.out_channels
        return (f'Fast-FoundationStereo: features {self.feature.d_out}, cost volume '
                f'{self.cv_group} gwc{"" if self.normalize else " (unnormalized)"} + '
                f'{2 * self.proj_cmb.out_channels} concat channels, max_disp {self.max_disp}, '
                f'hourglass {" ".join(posts)}, disparity transformer layers {layers}, GRU '
                f'hidden {gru}, {params / 1e6:.2f} M parameters')

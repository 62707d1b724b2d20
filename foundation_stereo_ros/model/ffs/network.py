"""Fast-FoundationStereo network: the official forward computation over layers from the file.

The modules here receive their sub-networks already built (see :mod:`.builder`): FFS
checkpoints carry their own, pruned and searched, architecture. What is shared with
FoundationStereo is shared: image normalisation, the cost volumes, the geometry encoding,
convex upsampling and the coarse-to-fine driver.
"""
from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..cost_volume import build_concat_volume, build_gwc_volume, disparity_regression
from ..edgenext import stage_outputs
from ..feature import normalize_image
from ..geometry_encoding import GeometryEncodingVolume
from ..hierarchical import check_divisible, run_hierarchical
from ..refinement import ForwardOutput, amp_region, no_autocast, refine
from ..upsample import convex_upsample
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


class FastFoundationStereo(NamedLayers):
    """Fast-FoundationStereo disparity network rebuilt from a serialized checkpoint.

    Same calls as :class:`~foundation_stereo_ros.model.FoundationStereo`:
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

    # ------------------------------------------------------------------ helpers
    def _amp(self, device: torch.device) -> contextlib.AbstractContextManager:
        """Autocast region as upstream's ``autocast('cuda', enabled=mixed_precision)``."""
        return amp_region(self.mixed_precision, self.amp_dtype, device)

    def upsample_disp(self, disp: torch.Tensor, mask_feat_4: torch.Tensor,
                      stem_2x: torch.Tensor) -> torch.Tensor:
        """1/4-resolution disparity (1/4 px units) -> full resolution (B, 1, H, W), float32."""
        with self._amp(disp.device):
            weights = F.softmax(self.spx_gru(self.spx_2_gru(mask_feat_4, stem_2x)), dim=1)
            up = convex_upsample(disp * 4.0, weights)
        return up.unsqueeze(1).float()

    # ------------------------------------------------------------------ forward
    def forward(self, left: torch.Tensor, right: torch.Tensor, iters: int = 8,
                test_mode: bool = False, init_disp: torch.Tensor | None = None,
                low_memory: bool = False) -> ForwardOutput:
        """Disparity of ``left`` w.r.t. ``right`` (x_left - x_right, full-resolution pixels).

        Args:
            left, right: (B, 3, H, W) RGB float images, values 0..255, H and W multiples of 32.
            iters: refinement iterations (>= 1).
            test_mode: return only the final (B, 1, H, W) disparity (upsampled once).
            init_disp: optional (B, 1, H/4, W/4) initial disparity in 1/4-resolution pixels.
            low_memory: accepted for the official signature; the geometry lookup here is
                always the gather-based one (the official low-memory path).

        Returns:
            test_mode: (B, 1, H, W) float32. Otherwise ``(init_disp, disp_preds)``.
        """
        del low_memory
        check_divisible(left)
        if isinstance(iters, bool) or int(iters) != iters or iters < 1:
            raise ValueError(f'iters must be a positive integer, got {iters!r}')
        b, _, h, w = left.shape
        if init_disp is not None and tuple(init_disp.shape) != (b, 1, h // 4, w // 4):
            raise ValueError(f'init_disp must have shape {(b, 1, h // 4, w // 4)} '
                             f'(1/4 resolution), got {tuple(init_disp.shape)}')
        device = left.device
        bins = self.max_disp // 4
        left = normalize_image(left)
        right = normalize_image(right)
        with self._amp(device):
            features = self.feature(torch.cat([left, right], dim=0))
            features_left = [f[:b] for f in features]
            feat04_right = features[0][b:]
            stem_2x = self.stem_2(left)
            gwc_volume = build_gwc_volume(features_left[0], feat04_right, bins, self.cv_group,
                                          normalize=self.normalize)
            concat_volume = build_concat_volume(self.proj_cmb(features_left[0]),
                                                self.proj_cmb(feat04_right), bins)
            volume = self.corr_stem(torch.cat([gwc_volume, concat_volume], dim=1))
            del gwc_volume, concat_volume
            volume = self.corr_feature_att(volume, features_left[0])
            volume = self.cost_agg(volume, features_left)
            if init_disp is None:
                # The classifier only feeds the initial disparity: skipped when one is given.
                prob = F.softmax(self.classifier(volume).squeeze(1), dim=1)
                init_disp = disparity_regression(prob, bins)
                del prob
            context = self.cnet(features_left[0])
            net_list = [torch.tanh(level[0]) for level in context]
            inp_list = [torch.relu(level[1]) for level in context]
            inp_list = [self.cam(x) * x for x in inp_list]
            att_list = [self.sam(x) for x in inp_list]

        with no_autocast(device):
            geometry = GeometryEncodingVolume(features_left[0].float(), feat04_right.float(),
                                              volume.float(), num_levels=self.corr_levels,
                                              radius=self.corr_radius)
        del volume, features, features_left, feat04_right
        return refine(geometry, self.update_block,
                      lambda d, mask: self.upsample_disp(d, mask, stem_2x.float()),
                      lambda: self._amp(device), net_list, inp_list, att_list, init_disp,
                      iters, test_mode)

    def run_hierarchical(self, left: torch.Tensor, right: torch.Tensor, iters: int = 8,
                         small_ratio: float = 0.5) -> torch.Tensor:
        """Coarse-to-fine inference (official ``run_hierachical``) for any image size."""
        return run_hierarchical(self.forward, left, right, iters, small_ratio)

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

"""FoundationStereo (Wen et al., CVPR 2025): the top-level network.

Data flow for a rectified pair (RGB, 0..255, sides multiples of 32):

1. ``feature``: EdgeNeXt + DepthAnything (DINOv2 + DPT) features of both images at 1/4..1/32.
2. Cost volume at 1/4 resolution, D = max_disp/4 bins: group-wise correlation + concatenated
   projections -> ``corr_stem`` -> ``corr_feature_att`` -> 3D hourglass ``cost_agg``
   (with a transformer along disparity) -> ``classifier`` logits -> soft-argmin initial
   disparity.
3. ``cnet`` (+ ``cam`` / ``sam`` attention): GRU hidden states and context of the left image.
4. ``iters`` refinement steps of the selective ConvGRU ``update_block``, each reading the
   geometry encoding (cost volume + all-pairs correlation sampled around the current disparity,
   float32), then convex upsampling x4 guided by ``stem_2`` features of the left image.

Module names and registration order are those of the official ``core/foundation_stereo.py``, so
``state_dict()`` has exactly the official keys in the official order (including the unused
``context_zqr_convs`` and ``stem_4``) and released checkpoints load with ``strict=True``.

Precision: ``cfg['mixed_precision']`` enables autocast (``amp_dtype``, float16 by default) on
CUDA for the same regions as upstream; the geometry encoding and the disparity accumulation
always run in float32. With ``mixed_precision`` an autocast already active around the call
decides the dtype instead; on CPU, as upstream, nothing is autocast unless the caller does so.
"""
from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .config import normalize_config
from .context import ChannelAttention, ContextNet, SpatialAttention
from .cost_aggregation import FeatureAtt, Hourglass, make_classifier, make_corr_stem
from .cost_volume import build_concat_volume, build_gwc_volume, disparity_regression
from .feature import Feature, normalize_image
from .geometry_encoding import GeometryEncodingVolume, geometry_channels
from .hierarchical import check_divisible, run_hierarchical
from .layers import BasicConvIN, Conv2x
from .refinement import ForwardOutput, amp_region, no_autocast, refine
from .update import SelectiveMultiUpdateBlock
from .upsample import convex_upsample

__all__ = ['FoundationStereo']

# Group-wise correlation groups and channels of the filtered cost volume (fixed by the weights).
CV_GROUPS = 8
VOLUME_DIM = 28


class FoundationStereo(nn.Module):
    """FoundationStereo disparity network.

    Args:
        cfg: the checkpoint's ``cfg.yaml`` content (see :func:`.config.normalize_config`;
            missing fields take the released defaults, ``vit_size`` defaults to ``'vitl'``).
    """

    family = 'foundation_stereo'
    # Refinement iterations of the official demo for this family.
    default_iters = 32

    def __init__(self, cfg: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.cfg = normalize_config(cfg)
        args = self.cfg
        hidden_dims = args['hidden_dims']
        self.max_disp = args['max_disp']
        self.n_gru_layers = args['n_gru_layers']
        self.corr_levels = args['corr_levels']
        self.corr_radius = args['corr_radius']
        self.mixed_precision = args['mixed_precision']
        self.amp_dtype = torch.float16

        # Registration order = official state-dict order.
        self.cnet = ContextNet(args['vit_size'], output_dim=[hidden_dims, hidden_dims],
                               downsample=args['n_downsample'])
        self.update_block = SelectiveMultiUpdateBlock(
            self.n_gru_layers,
            geometry_channels(VOLUME_DIM, self.corr_levels, self.corr_radius),
            hidden_dim=hidden_dims[0])
        self.sam = SpatialAttention()
        self.cam = ChannelAttention(hidden_dims[0])
        # Unused by the computation; present in released checkpoints (strict loading).
        self.context_zqr_convs = nn.ModuleList([
            nn.Conv2d(hidden_dims[i], hidden_dims[i] * 3, kernel_size=3, padding=1)
            for i in range(self.n_gru_layers)])
        self.feature = Feature(args)
        self.proj_cmb = nn.Conv2d(self.feature.d_out[0], 12, kernel_size=1, padding=0)
        self.stem_2 = nn.Sequential(
            BasicConvIN(3, 32, kernel_size=3, stride=2, padding=1),
            nn.Conv2d(32, 32, 3, 1, 1, bias=False),
            nn.InstanceNorm2d(32), nn.ReLU())
        # Unused by the computation; present in released checkpoints (strict loading).
        self.stem_4 = nn.Sequential(
            BasicConvIN(32, 48, kernel_size=3, stride=2, padding=1),
            nn.Conv2d(48, 48, 3, 1, 1, bias=False),
            nn.InstanceNorm2d(48), nn.ReLU())
        self.spx_2_gru = Conv2x(32, 32, True, bn=False)
        self.spx_gru = nn.Sequential(nn.ConvTranspose2d(2 * 32, 9, kernel_size=4, stride=2,
                                                        padding=1))
        self.corr_stem = make_corr_stem(in_channels=CV_GROUPS + 24, volume_dim=VOLUME_DIM)
        self.corr_feature_att = FeatureAtt(VOLUME_DIM, self.feature.d_out[0])
        self.cost_agg = Hourglass(self.max_disp, VOLUME_DIM, self.feature.d_out,
                                  attention=args['cost_attention'])
        self.classifier = make_classifier(VOLUME_DIM)
        self.channels_last = False
        self.set_channels_last(True)

    def set_channels_last(self, enabled: bool = True) -> FoundationStereo:
        """Run the 2D refinement path (context net, GRUs, upsampler) channels-last or not.

        On by default: the GRU convolutions dominate the refinement cost and are faster in
        that layout. Converts the weights of those modules (values are unchanged).
        """
        fmt = torch.channels_last if enabled else torch.contiguous_format
        for module in (self.cnet, self.update_block, self.sam, self.cam, self.stem_2,
                       self.spx_2_gru, self.spx_gru):
            module.to(memory_format=fmt)
        self.channels_last = bool(enabled)
        return self

    # ------------------------------------------------------------------ helpers
    def _amp(self, device: torch.device) -> contextlib.AbstractContextManager:
        """Autocast region as upstream's ``autocast(enabled=mixed_precision)``."""
        return amp_region(self.mixed_precision, self.amp_dtype, device)

    @property
    def _memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def upsample_disp(self, disp: torch.Tensor, mask_feat_4: torch.Tensor,
                      stem_2x: torch.Tensor) -> torch.Tensor:
        """1/4-resolution disparity (1/4 px units) -> full resolution (B, 1, H, W), float32."""
        with self._amp(disp.device):
            xspx = self.spx_2_gru(mask_feat_4, stem_2x)          # 1/2 resolution
            weights = F.softmax(self.spx_gru(xspx), dim=1)        # 9 convex weights, full res
            up = convex_upsample(disp * 4.0, weights)
        return up.unsqueeze(1).float()

    # ------------------------------------------------------------------ forward
    def forward(self, left: torch.Tensor, right: torch.Tensor, iters: int = 12,
                test_mode: bool = False, init_disp: torch.Tensor | None = None,
                ) -> ForwardOutput:
        """Disparity of ``left`` w.r.t. ``right`` (x_left - x_right, full-resolution pixels).

        Args:
            left, right: (B, 3, H, W) RGB float images, values 0..255, H and W multiples of 32.
            iters: refinement iterations (>= 1).
            test_mode: return only the final (B, 1, H, W) disparity (upsampled once).
            init_disp: optional (B, 1, H/4, W/4) initial disparity in 1/4-resolution pixels;
                replaces the cost-volume estimate.

        Returns:
            test_mode: (B, 1, H, W) float32. Otherwise ``(init_disp, disp_preds)``: the
            initial disparity (B, 1, H/4, W/4) in 1/4-resolution pixels and the list of the
            ``iters`` full-resolution disparities.
        """
        check_divisible(left)
        if isinstance(iters, bool) or int(iters) != iters or iters < 1:
            raise ValueError(f'iters must be a positive integer, got {iters!r}')
        b, _, h, w = left.shape
        if init_disp is not None and tuple(init_disp.shape) != (b, 1, h // 4, w // 4):
            raise ValueError(f'init_disp must have shape {(b, 1, h // 4, w // 4)} '
                             f'(1/4 resolution), got {tuple(init_disp.shape)}')
        device = left.device
        left = normalize_image(left)
        right = normalize_image(right)

        with self._amp(device):
            features, vit_feat = self.feature(torch.cat([left, right], dim=0))
            features_left = [f[:b] for f in features]
            feat04_right = features[0][b:]
            vit_feat = vit_feat[:b]
            left_2d = left.contiguous(memory_format=self._memory_format)
            stem_2x = self.stem_2(left_2d)

            gwc_volume = build_gwc_volume(features_left[0], feat04_right, self.max_disp // 4,
                                          CV_GROUPS)
            concat_volume = build_concat_volume(self.proj_cmb(features_left[0]),
                                                self.proj_cmb(feat04_right), self.max_disp // 4)
            volume = self.corr_stem(torch.cat([gwc_volume, concat_volume], dim=1))
            del gwc_volume, concat_volume
            volume = self.corr_feature_att(volume, features_left[0])
            volume = self.cost_agg(volume, features_left)
            if init_disp is None:
                # The classifier only feeds the initial disparity: skipped when one is given.
                prob = F.softmax(self.classifier(volume).squeeze(1), dim=1)
                init_disp = disparity_regression(prob, self.max_disp // 4)
                del prob

            context = self.cnet(left_2d, vit_feat=vit_feat.contiguous(
                memory_format=self._memory_format), num_layers=self.n_gru_layers)
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

    # ------------------------------------------------------------------ coarse-to-fine
    def run_hierarchical(self, left: torch.Tensor, right: torch.Tensor, iters: int = 12,
                         small_ratio: float = 0.5) -> torch.Tensor:
        """Coarse-to-fine inference (official ``run_hierachical``) for any image size.

        A forward pass on the pair downscaled by ``small_ratio`` seeds the full-resolution
        pass (useful for large disparities). Both passes pad to multiples of 32 internally.

        Args:
            left, right: (B, 3, H, W) RGB float images, values 0..255, any H, W.
            iters: refinement iterations of each pass.
            small_ratio: scale of the coarse pass, in (0, 1].

        Returns:
            (B, 1, H, W) float32 disparity.
        """
        return run_hierarchical(self.forward, left, right, iters, small_ratio)

    def run_hierachical(self, image1: torch.Tensor, image2: torch.Tensor, iters: int = 12,
                        test_mode: bool = True, low_memory: bool = False,
                        small_ratio: float = 0.5) -> torch.Tensor:
        """Run :meth:`run_hierarchical` under upstream's spelling and signature.

        ``test_mode`` must be true, as upstream only works that way; ``low_memory`` is ignored.
        """
        if not test_mode:
            raise ValueError('run_hierachical supports test_mode=True only (as upstream)')
        return self.run_hierarchical(image1, image2, iters=iters, small_ratio=small_ratio)

    def architecture_summary(self) -> str:
        """One line naming the architecture (for logs and diagnostics)."""
        params = sum(p.numel() for p in self.parameters())
        return (f'FoundationStereo: DINOv2 {self.cfg["vit_size"]}, max_disp {self.max_disp}, '
                f'{self.n_gru_layers} GRU levels, {params / 1e6:.1f} M parameters')

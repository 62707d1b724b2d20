"""FoundationStereo (Wen et al., CVPR 2025): the top-level network.

What this family supplies to the shared forward (:mod:`.stereo_network`): ``feature``,
EdgeNeXt + Depth Anything (DINOv2 + DPT) features of both images at 1/4..1/32; ``cnet``, the
context network over the left image and its Depth Anything features; a 3D hourglass
``cost_agg`` with a transformer along disparity; the selective ConvGRU ``update_block`` over
three levels; the channels-last 2D path (:meth:`FoundationStereo.set_channels_last`).

Module names and registration order are those of the official ``core/foundation_stereo.py``, so
``state_dict()`` has exactly the official keys in the official order (including the unused
``context_zqr_convs`` and ``stem_4``) and released checkpoints load with ``strict=True``.

Precision: ``cfg['mixed_precision']`` enables autocast (``amp_dtype``, float16 by default) on
CUDA for the same regions as upstream; the geometry encoding and the disparity accumulation
always run in float32. With ``mixed_precision`` an autocast already active around the call
decides the dtype instead; on CPU, as upstream, nothing is autocast unless the caller does so.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from .config import normalize_config
from .context import ChannelAttention, ContextNet, SpatialAttention
from .cost_aggregation import FeatureAtt, Hourglass, make_classifier, make_corr_stem
from .feature import Feature
from .geometry_encoding import geometry_channels
from .layers import BasicConvIN, Conv2x
from .stereo_network import StereoNetwork
from .update import SelectiveMultiUpdateBlock

__all__ = ['FoundationStereo']

# Group-wise correlation groups and channels of the filtered cost volume (fixed by the weights).
CV_GROUPS = 8
VOLUME_DIM = 28


class FoundationStereo(StereoNetwork):
    """FoundationStereo disparity network (its parts; the forward is :class:`StereoNetwork`'s).

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
        self.cv_group = CV_GROUPS
        self.normalize = True

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

    # ------------------------------------------------------------------ family hooks
    def extract_features(self, images: torch.Tensor,
                         ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Return the EdgeNeXt + Depth Anything pyramid and the Depth Anything features."""
        return self.feature(images)

    def context(self, left: torch.Tensor, features_left: Sequence[torch.Tensor],
                extra: torch.Tensor) -> list[Sequence[torch.Tensor]]:
        """``cnet`` on the left image and its Depth Anything features."""
        vit_feat = extra[:left.shape[0]].contiguous(memory_format=self.memory_format)
        return self.cnet(left, vit_feat=vit_feat, num_layers=self.n_gru_layers)

    def architecture_summary(self) -> str:
        """One line naming the architecture (for logs and diagnostics)."""
        params = sum(p.numel() for p in self.parameters())
        return (f'FoundationStereo: DINOv2 {self.cfg["vit_size"]}, max_disp {self.max_disp}, '
                f'{self.n_gru_layers} GRU levels, {params / 1e6:.1f} M parameters')

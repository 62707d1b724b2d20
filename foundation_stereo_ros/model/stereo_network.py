"""The one forward computation of the FoundationStereo family (both networks).

As RAFT-Stereo keeps its variants in one forward, FoundationStereo and Fast-FoundationStereo
share everything from the normalised pair to the full-resolution disparity:

1. ImageNet normalisation of both images; the family's feature network on ``[left; right]``.
2. Group-wise correlation + concatenated projections at 1/4 resolution (``max_disp/4``
   bins) -> ``corr_stem`` -> ``corr_feature_att`` -> ``cost_agg`` -> ``classifier`` logits
   -> softmax -> soft-argmin initial disparity.
3. The family's context network on the left image -> GRU hidden states (tanh), context
   (relu, channel attention ``cam``) and spatial attention ``sam``.
4. The geometry encoding volume (float32) and ``iters`` refinement steps of ``update_block``
   (:func:`.refinement.refine`), then convex upsampling x4 (``spx_2_gru`` / ``spx_gru``
   over ``stem_2`` features of the left image).
5. Optionally the confidence of :mod:`.confidence`, from the step-2 distribution.

What a family supplies: its sub-networks under the official names (they are the state-dict
keys; this class registers none, so each family's key order stays the official one), two
hooks (:meth:`StereoNetwork.extract_features`, :meth:`StereoNetwork.context`) and a few
plain attributes (:class:`StereoNetwork` lists them).
"""
from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .confidence import upsample_confidence, window_mass
from .cost_volume import build_concat_volume, build_gwc_volume, disparity_regression
from .feature import normalize_image
from .geometry_encoding import GeometryEncodingVolume
from .hierarchical import check_divisible, run_hierarchical
from .refinement import amp_region, no_autocast, refine
from .upsample import convex_upsample

__all__ = ['DISPARITY_STEP', 'ForwardOutput', 'StereoNetwork']

# The output is continuous (convex upsampling of a float field); 1/32 px is the order of its
# sub-pixel resolution, what the backends report as their smallest disparity step.
DISPARITY_STEP = 1.0 / 32.0

ForwardOutput = (torch.Tensor | tuple[torch.Tensor, torch.Tensor]
                 | tuple[torch.Tensor, list[torch.Tensor]])


class StereoNetwork(nn.Module):
    """The shared forward over what a family supplies.

    Sub-networks (official names): ``feature`` (through :meth:`extract_features`), ``stem_2``,
    ``proj_cmb``, ``corr_stem``, ``corr_feature_att``, ``cost_agg``, ``classifier``, ``cnet``
    (through :meth:`context`), ``cam``, ``sam``, ``update_block``, ``spx_2_gru``, ``spx_gru``.

    Attributes: ``family`` and ``default_iters`` (class attributes: the family's name and its
    official iteration count, the one default of every caller), ``max_disp``, ``cv_group``
    (group-wise correlation groups), ``normalize`` (L2-normalise the groups first),
    ``corr_levels``, ``corr_radius``, ``mixed_precision``, ``amp_dtype`` and
    ``channels_last`` (run the 2D left-image path channels-last).
    """

    family: str
    default_iters: int
    max_disp: int
    cv_group: int
    normalize: bool
    corr_levels: int
    corr_radius: int
    mixed_precision: bool
    amp_dtype: torch.dtype
    channels_last: bool = False

    # ------------------------------------------------------------------ family hooks
    def extract_features(self, images: torch.Tensor) -> tuple[list[torch.Tensor], Any]:
        """Features of the normalised ``[left; right]`` batch: ``([f04, f08, f16, f32], extra)``.

        ``extra`` is whatever :meth:`context` needs besides the left features (or None).
        """
        raise NotImplementedError

    def context(self, left: torch.Tensor, features_left: Sequence[torch.Tensor],
                extra: Any) -> list[Sequence[torch.Tensor]]:
        """Context network: per GRU level the raw ``(net, inp)`` maps of the left image.

        ``left``: the normalised left images in :attr:`memory_format`; ``extra``: the second
        value of :meth:`extract_features` (both halves of the batch).
        """
        raise NotImplementedError

    # ------------------------------------------------------------------ helpers
    def _amp(self, device: torch.device) -> contextlib.AbstractContextManager:
        """Autocast region as upstream's ``autocast('cuda', enabled=mixed_precision)``."""
        return amp_region(self.mixed_precision, self.amp_dtype, device)

    @property
    def memory_format(self) -> torch.memory_format:
        """Memory format of the 2D left-image path (see ``channels_last``)."""
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def upsample_weights(self, mask_feat_4: torch.Tensor,
                         stem_2x: torch.Tensor) -> torch.Tensor:
        """Convex upsampling weights (B, 9, H, W) from the GRU mask feature and ``stem_2x``."""
        with self._amp(mask_feat_4.device):
            return F.softmax(self.spx_gru(self.spx_2_gru(mask_feat_4, stem_2x)), dim=1)

    def upsample_disp(self, disp: torch.Tensor, mask_feat_4: torch.Tensor,
                      stem_2x: torch.Tensor) -> torch.Tensor:
        """1/4-resolution disparity (1/4 px units) -> full resolution (B, 1, H, W), float32."""
        weights = self.upsample_weights(mask_feat_4, stem_2x)
        with self._amp(disp.device):
            up = convex_upsample(disp * 4.0, weights)
        return up.unsqueeze(1).float()

    def _check_args(self, left: torch.Tensor, iters: int, test_mode: bool,
                    init_disp: torch.Tensor | None, confidence: bool) -> None:
        check_divisible(left)
        if isinstance(iters, bool) or int(iters) != iters or iters < 1:
            raise ValueError(f'iters must be a positive integer, got {iters!r}')
        b, _, h, w = left.shape
        if init_disp is not None and tuple(init_disp.shape) != (b, 1, h // 4, w // 4):
            raise ValueError(f'init_disp must have shape {(b, 1, h // 4, w // 4)} '
                             f'(1/4 resolution), got {tuple(init_disp.shape)}')
        if confidence and not test_mode:
            raise ValueError('confidence=True needs test_mode=True (the confidence belongs to '
                             'the final disparity)')

    # ------------------------------------------------------------------ forward
    def forward(self, left: torch.Tensor, right: torch.Tensor, iters: int | None = None,
                test_mode: bool = False, init_disp: torch.Tensor | None = None,
                low_memory: bool = False, *, confidence: bool = False) -> ForwardOutput:
        """Disparity of ``left`` w.r.t. ``right`` (x_left - x_right, full-resolution pixels).

        Args:
            left, right: (B, 3, H, W) RGB float images, values 0..255, H and W multiples of 32.
            iters: refinement iterations (>= 1); None: the family's ``default_iters``.
            test_mode: return only the final (B, 1, H, W) disparity (upsampled once).
            init_disp: optional (B, 1, H/4, W/4) initial disparity in 1/4-resolution pixels;
                replaces the cost-volume estimate.
            low_memory: accepted for the official signature; the geometry lookup here is
                always the gather-based one (the official low-memory path).
            confidence: also return the (B, 1, H, W) float32 confidence in [0, 1] of
                :mod:`.confidence` (``test_mode`` only). Off, nothing of it is computed.

        Returns:
            test_mode: (B, 1, H, W) float32, or ``(disparity, confidence)``. Otherwise
            ``(init_disp, disp_preds)``: the initial disparity (B, 1, H/4, W/4) in
            1/4-resolution pixels and the list of the ``iters`` full-resolution disparities.
        """
        del low_memory
        iters = self.default_iters if iters is None else iters
        self._check_args(left, iters, test_mode, init_disp, confidence)
        b = left.shape[0]
        device = left.device
        bins = self.max_disp // 4
        left = normalize_image(left)
        right = normalize_image(right)

        prob = None
        with self._amp(device):
            features, extra = self.extract_features(torch.cat([left, right], dim=0))
            features_left = [f[:b] for f in features]
            feat04_right = features[0][b:]
            left_2d = left.contiguous(memory_format=self.memory_format)
            stem_2x = self.stem_2(left_2d)

            gwc_volume = build_gwc_volume(features_left[0], feat04_right, bins, self.cv_group,
                                          normalize=self.normalize)
            concat_volume = build_concat_volume(self.proj_cmb(features_left[0]),
                                                self.proj_cmb(feat04_right), bins)
            volume = self.corr_stem(torch.cat([gwc_volume, concat_volume], dim=1))
            del gwc_volume, concat_volume
            volume = self.corr_feature_att(volume, features_left[0])
            volume = self.cost_agg(volume, features_left)
            # The distribution feeds the initial disparity and the confidence: skipped when
            # neither needs it.
            if init_disp is None or confidence:
                prob = F.softmax(self.classifier(volume).squeeze(1), dim=1)
            if init_disp is None:
                init_disp = disparity_regression(prob, bins)
            if not confidence:
                prob = None

            context = self.context(left_2d, features_left, extra)
            net_list = [torch.tanh(level[0]) for level in context]
            inp_list = [torch.relu(level[1]) for level in context]
            inp_list = [self.cam(x) * x for x in inp_list]
            att_list = [self.sam(x) for x in inp_list]

        with no_autocast(device):
            geometry = GeometryEncodingVolume(features_left[0].float(), feat04_right.float(),
                                              volume.float(), num_levels=self.corr_levels,
                                              radius=self.corr_radius)
        del volume, features, features_left, feat04_right, extra
        stem_2x = stem_2x.float()

        def upsample(disp: torch.Tensor, mask: torch.Tensor) -> ForwardOutput:
            if prob is None:
                return self.upsample_disp(disp, mask, stem_2x)
            weights = self.upsample_weights(mask, stem_2x)
            with self._amp(device):
                up = convex_upsample(disp * 4.0, weights).unsqueeze(1).float()
            return up, upsample_confidence(window_mass(prob, disp), weights)

        outputs = refine(geometry, self.update_block, upsample, lambda: self._amp(device),
                         net_list, inp_list, att_list, init_disp, iters, test_mode)
        if test_mode:
            return outputs[-1]
        return init_disp, outputs

    # ------------------------------------------------------------------ coarse-to-fine
    def run_hierarchical(self, left: torch.Tensor, right: torch.Tensor,
                         iters: int | None = None, small_ratio: float = 0.5, *,
                         confidence: bool = False,
                         ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Coarse-to-fine inference (official ``run_hierachical``) for any image size.

        A forward pass on the pair downscaled by ``small_ratio`` seeds the full-resolution
        pass (useful for large disparities). Both passes pad to multiples of 32 internally.

        Args:
            left, right: (B, 3, H, W) RGB float images, values 0..255, any H, W.
            iters: refinement iterations of each pass; None: the family's ``default_iters``.
            small_ratio: scale of the coarse pass, in (0, 1].
            confidence: also return the full-resolution pass's confidence.

        Returns:
            (B, 1, H, W) float32 disparity, or ``(disparity, confidence)``.
        """
        iters = self.default_iters if iters is None else iters
        return run_hierarchical(self.forward, left, right, iters, small_ratio,
                                confidence=confidence)

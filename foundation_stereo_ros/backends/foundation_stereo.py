"""The FoundationStereo family as a disparity backend (PyTorch, CUDA or CPU).

Either network: FoundationStereo (``model_best_bp2.pth``) or Fast-FoundationStereo / C-FFS
(``model_best_bp2_serialize.pth`` or its converted ``.safetensors``); the checkpoint decides.
"""
from __future__ import annotations

import torch

from foundation_stereo_ros.backends.base import DisparityBackend
from foundation_stereo_ros.backends.device import autocast_dtype, resolve_device
from foundation_stereo_ros.model import InputPadder, load_checkpoint


class FoundationStereoBackend(DisparityBackend):
    """Runs a FoundationStereo-family checkpoint on a pair of any size (padded to /32 inside).

    ``valid_iters`` (0 or None: the family's default), ``hierarchical`` and ``small_ratio`` given
    to the constructor are the defaults; :meth:`compute` takes them per pair too (the
    pipeline passes its snapshot).
    """

    name = 'foundation_stereo'
    # The network's output is continuous (convex upsampling of a float field); 1/32 px is the
    # order of its sub-pixel resolution, reported so depth-resolution formulas stay meaningful.
    delta_d = 1.0 / 32.0

    def __init__(
        self,
        checkpoint: str,
        device: str = 'auto',
        precision: str = 'fp32',
        valid_iters: int | None = None,
        hierarchical: bool = False,
        small_ratio: float = 0.5,
    ) -> None:
        self.device = resolve_device(device)
        amp_dtype = autocast_dtype(precision, self.device)
        self.model, self.cfg = load_checkpoint(checkpoint, device=self.device)
        # The user's precision wins over the checkpoint's cfg (the released cfg.yaml says
        # mixed_precision: true): the model autocasts the same regions as the official code.
        self.model.mixed_precision = precision != 'fp32'
        if amp_dtype is not None:
            self.model.amp_dtype = amp_dtype
        self.checkpoint = checkpoint
        self.precision = precision
        self.valid_iters = int(valid_iters or self.model.default_iters)
        self.hierarchical = bool(hierarchical)
        self.small_ratio = float(small_ratio)
        self.max_disparity = float(self.cfg['max_disp'])

    def compute(self, left: torch.Tensor, right: torch.Tensor, *,
                valid_iters: int | None = None, hierarchical: bool | None = None,
                small_ratio: float | None = None) -> torch.Tensor:
        """(3,H,W) RGB 0..255 on self.device -> (H,W) float32 disparity in pixels.

        ``valid_iters``, ``hierarchical``, ``small_ratio``: this pair's settings (None, and 0
        iterations, mean the constructor's).
        """
        return self.compute_batch(left[None], right[None], valid_iters=valid_iters,
                                  hierarchical=hierarchical, small_ratio=small_ratio)[0]

    def compute_batch(self, left: torch.Tensor, right: torch.Tensor, *,
                      valid_iters: int | None = None, hierarchical: bool | None = None,
                      small_ratio: float | None = None) -> torch.Tensor:
        """(B,3,H,W) RGB 0..255 on self.device -> (B,H,W) float32 disparities, in one pass."""
        iters = int(valid_iters or self.valid_iters)
        hierarchical = self.hierarchical if hierarchical is None else hierarchical
        small_ratio = self.small_ratio if small_ratio is None else float(small_ratio)
        with torch.inference_mode():
            if hierarchical:
                disp = self.model.run_hierarchical(
                    left, right, iters=iters, small_ratio=small_ratio)
            else:
                padder = InputPadder(left.shape, divis_by=32)
                left_p, right_p = padder.pad(left, right)
                disp = padder.unpad(self.model(left_p, right_p, iters=iters, test_mode=True))
        return disp[:, 0].float()

    def describe(self) -> dict[str, str]:
        """Model identity for diagnostics."""
        return {
            'backend': self.name,
            'family': self.model.family,
            'architecture': self.model.architecture_summary(),
            'device': str(self.device),
            'checkpoint': self.checkpoint,
            'vit_size': str(self.cfg.get('vit_size', 'vitl')),
            'valid_iters': str(self.valid_iters),
            'precision': self.precision,
            'hierarchical': str(self.hierarchical),
        }

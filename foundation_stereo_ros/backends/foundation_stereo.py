"""The FoundationStereo network as a disparity backend (PyTorch, CUDA or CPU)."""
from __future__ import annotations

import torch

from foundation_stereo_ros.backends.base import DisparityBackend
from foundation_stereo_ros.model import InputPadder, load_checkpoint

PRECISIONS = {'fp32': None, 'fp16': torch.float16, 'bf16': torch.bfloat16}


def resolve_device(device: str) -> torch.device:
    """'auto' picks CUDA when available; 'cuda' without a GPU is an error that says so."""
    if device == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    if device.startswith('cuda') and not torch.cuda.is_available():
        raise ValueError(
            f"device '{device}' requested but torch sees no CUDA GPU (torch "
            f"{torch.__version__}); install a CUDA build of torch or use device 'cpu'")
    if device != 'cpu' and not device.startswith('cuda'):
        raise ValueError(f"device must be 'auto', 'cuda', 'cuda:N' or 'cpu', got '{device}'")
    return torch.device(device)


class FoundationStereoBackend(DisparityBackend):
    """Runs a FoundationStereo checkpoint on a pair of any size (padded to /32 inside).

    valid_iters, hierarchical and small_ratio may be changed between calls.
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
        valid_iters: int = 32,
        hierarchical: bool = False,
        small_ratio: float = 0.5,
    ) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got '{precision}'")
        self.device = resolve_device(device)
        if precision != 'fp32' and self.device.type != 'cuda':
            raise ValueError(
                f"precision '{precision}' needs a CUDA device; on CPU use precision 'fp32'")
        self.model, self.cfg = load_checkpoint(checkpoint, device=self.device)
        # The user's precision wins over the checkpoint's cfg (the released cfg.yaml says
        # mixed_precision: true): the model autocasts the same regions as the official code.
        self.model.mixed_precision = precision != 'fp32'
        if precision != 'fp32':
            self.model.amp_dtype = PRECISIONS[precision]
        self.checkpoint = checkpoint
        self.precision = precision
        self.valid_iters = int(valid_iters)
        self.hierarchical = bool(hierarchical)
        self.small_ratio = float(small_ratio)
        self.max_disparity = float(self.cfg['max_disp'])

    def compute(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        """(3,H,W) RGB 0..255 on self.device -> (H,W) float32 disparity in pixels."""
        return self.compute_batch(left[None], right[None])[0]

    def compute_batch(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        """(B,3,H,W) RGB 0..255 on self.device -> (B,H,W) float32 disparities, in one pass."""
        with torch.inference_mode():
            if self.hierarchical:
                disp = self.model.run_hierarchical(
                    left, right, iters=self.valid_iters, small_ratio=self.small_ratio)
            else:
                padder = InputPadder(left.shape, divis_by=32)
                left_p, right_p = padder.pad(left, right)
                disp = padder.unpad(
                    self.model(left_p, right_p, iters=self.valid_iters, test_mode=True))
        return disp[:, 0].float()

    def describe(self) -> dict[str, str]:
        """Model identity for diagnostics."""
        return {
            'backend': self.name,
            'device': str(self.device),
            'checkpoint': self.checkpoint,
            'vit_size': str(self.cfg.get('vit_size', 'vitl')),
            'valid_iters': str(self.valid_iters),
            'precision': self.precision,
            'hierarchical': str(self.hierarchical),
        }

"""The FoundationStereo family as a disparity backend (PyTorch, CUDA or CPU).

Either network: FoundationStereo (``model_best_bp2.pth``) or Fast-FoundationStereo / C-FFS
(``model_best_bp2_serialize.pth`` or its converted ``.safetensors``); the checkpoint decides.
"""
from __future__ import annotations

import contextlib
import logging
import time

import torch

from foundation_stereo_ros.backends import compiled
from foundation_stereo_ros.backends.base import DisparityBackend
from foundation_stereo_ros.backends.device import PRECISIONS, resolve_device, resolve_precision
from foundation_stereo_ros.model import InputPadder, load_checkpoint
from foundation_stereo_ros.model.config import DEFAULT_VIT_SIZE
from foundation_stereo_ros.model.hierarchical import SIZE_DIVISOR
from foundation_stereo_ros.model.stereo_network import DISPARITY_STEP

LOG = logging.getLogger(__name__)

# Calls of a dummy pair that make the next real pair fast: with CUDA graphs the first call
# compiles (and runs the graphs' warm-up), the second records, the third replays.
_WARMUP_CALLS = {True: 3, False: 1}


class FoundationStereoBackend(DisparityBackend):
    """Runs a FoundationStereo-family checkpoint on a pair of any size (padded to /32 inside).

    ``valid_iters`` (0 or None: the checkpoint's ``default_iters``), ``hierarchical`` and
    ``small_ratio`` given to the constructor are the defaults; :meth:`compute` takes them per
    pair too (the pipeline passes its snapshot).
    ``precision``: ``auto`` (fp16 autocast on CUDA, fp32 on CPU), fp32, fp16 or bf16.
    ``compile``: torch.compile the network (see :mod:`.compiled`); compilation happens at the
    first pair of each input size, or at construction for ``warmup_width`` x
    ``warmup_height`` (the size the network sees: the camera size times scale). A warm-up
    also runs without ``compile`` (cuDNN autotuning, CUDA context and memory pool).
    """

    name = 'foundation_stereo'
    # Reported so depth-resolution formulas stay meaningful (see DISPARITY_STEP).
    delta_d = DISPARITY_STEP
    # From the classifier's disparity distribution (model/confidence.py).
    provides_confidence = True

    def __init__(
        self,
        checkpoint: str,
        device: str = 'auto',
        precision: str = 'auto',
        valid_iters: int | None = None,
        hierarchical: bool = False,
        small_ratio: float = 0.5,
        compile: bool = False,  # the setting's name (shadows the builtin here only)
        warmup_width: int = 0,
        warmup_height: int = 0,
    ) -> None:
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.amp_dtype = PRECISIONS[self.precision]
        self.model, self.cfg = load_checkpoint(checkpoint, device=self.device)
        # The user's precision wins over the checkpoint's cfg (the released cfg.yaml says
        # mixed_precision: true): the model autocasts the same regions as the official code.
        self.model.mixed_precision = self.amp_dtype is not None
        if self.amp_dtype is not None:
            self.model.amp_dtype = self.amp_dtype
        if self.device.type == 'cuda':
            # A camera's size is fixed: let cuDNN pick the fastest algorithm per shape once.
            torch.backends.cudnn.benchmark = True
        self.checkpoint = checkpoint
        self.valid_iters = int(valid_iters or self.model.default_iters)
        self.hierarchical = bool(hierarchical)
        self.small_ratio = float(small_ratio)
        self.max_disparity = float(self.cfg['max_disp'])
        self.compiled = bool(compile)
        self.compiled_parts = (compiled.compile_model(self.model, self.device)
                               if self.compiled else [])
        self._cuda_graphs = self.compiled and compiled.uses_cuda_graphs(self.device)
        self._warm: set[tuple] = set()  # input sizes (and modes) already compiled
        if (warmup_width > 0) != (warmup_height > 0):
            raise ValueError('warmup_width and warmup_height go together: set both (the '
                             'size the network sees) or neither')
        if warmup_width > 0:
            self.warm_up(int(warmup_height), int(warmup_width))

    def compute(self, left: torch.Tensor, right: torch.Tensor, *,
                valid_iters: int | None = None, hierarchical: bool | None = None,
                small_ratio: float | None = None) -> torch.Tensor:
        """(3,H,W) RGB 0..255 on self.device -> (H,W) float32 disparity in pixels.

        ``valid_iters``, ``hierarchical``, ``small_ratio``: this pair's settings (None, and 0
        iterations, mean the constructor's). With ``compile``, a pair of a new size is
        preceded by a warm-up at that size (logged): that pair is slow, the following ones are
        not.
        """
        return self.compute_batch(left[None], right[None], valid_iters=valid_iters,
                                  hierarchical=hierarchical, small_ratio=small_ratio)[0]

    def compute_batch(self, left: torch.Tensor, right: torch.Tensor, *,
                      valid_iters: int | None = None, hierarchical: bool | None = None,
                      small_ratio: float | None = None) -> torch.Tensor:
        """(B,3,H,W) RGB 0..255 on self.device -> (B,H,W) float32 disparities, in one pass."""
        return self._compute(left, right, valid_iters, hierarchical, small_ratio, False)[0]

    def compute_batch_with_confidence(self, left: torch.Tensor, right: torch.Tensor, *,
                                      valid_iters: int | None = None,
                                      hierarchical: bool | None = None,
                                      small_ratio: float | None = None,
                                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """Disparities as :meth:`compute_batch` and their (B,H,W) float32 confidence in [0, 1].

        The confidence is the network's (:mod:`foundation_stereo_ros.model.confidence`),
        computed in the same pass.
        """
        return self._compute(left, right, valid_iters, hierarchical, small_ratio, True)

    def _compute(self, left: torch.Tensor, right: torch.Tensor, valid_iters: int | None,
                 hierarchical: bool | None, small_ratio: float | None,
                 confidence: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        iters = int(valid_iters or self.valid_iters)
        hierarchical = self.hierarchical if hierarchical is None else hierarchical
        small_ratio = self.small_ratio if small_ratio is None else float(small_ratio)
        height, width = left.shape[-2:]
        if self.compiled and self._key(height, width, hierarchical, small_ratio) not in self._warm:
            LOG.info('%s %dx%d: compiling the network for it (this pair is slow)',
                     'input size changed to' if self._warm else 'first pair,', width, height)
            self.warm_up(height, width, valid_iters=iters, hierarchical=hierarchical,
                         small_ratio=small_ratio)
        return self._run(left, right, iters, hierarchical, small_ratio, confidence)

    def warm_up(self, height: int, width: int, *, valid_iters: int | None = None,
                hierarchical: bool | None = None, small_ratio: float | None = None) -> float:
        """Run a dummy ``width`` x ``height`` pair until the next real one is fast.

        Compiles (with ``compile``), records CUDA graphs and autotunes cuDNN for that size.
        Returns the seconds it took (also logged).
        """
        iters = int(valid_iters or self.valid_iters)
        hierarchical = self.hierarchical if hierarchical is None else hierarchical
        small_ratio = self.small_ratio if small_ratio is None else float(small_ratio)
        start = time.perf_counter()
        generator = torch.Generator().manual_seed(0)
        left = (torch.rand(1, 3, height, width, generator=generator) * 255).to(self.device)
        right = torch.roll(left, shifts=-4, dims=-1)  # some disparity, not a degenerate pair
        for _ in range(_WARMUP_CALLS[self._cuda_graphs]):
            self._run(left, right, iters, hierarchical, small_ratio)
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)
        self._warm.add(self._key(height, width, hierarchical, small_ratio))
        seconds = time.perf_counter() - start
        LOG.info('%s network warmed up for %dx%d pairs (%s, %s) in %.1f s', self.name, width,
                 height, self.precision,
                 'compiled: ' + ', '.join(self.compiled_parts) if self.compiled else 'eager',
                 seconds)
        return seconds

    def _run(self, left: torch.Tensor, right: torch.Tensor, iters: int, hierarchical: bool,
             small_ratio: float, confidence: bool = False,
             ) -> tuple[torch.Tensor, torch.Tensor | None]:
        # (B,3,H,W) pairs -> (B,H,W) disparities and, if asked, (B,H,W) confidences.
        with torch.inference_mode(), self._autocast():
            if self._cuda_graphs:
                compiled.mark_step(self.device)
            if hierarchical:
                out = self.model.run_hierarchical(left, right, iters=iters,
                                                  small_ratio=small_ratio,
                                                  confidence=confidence)
            else:
                padder = InputPadder(left.shape, divis_by=SIZE_DIVISOR)
                left_p, right_p = padder.pad(left, right)
                out = self.model(left_p, right_p, iters=iters, test_mode=True,
                                 confidence=confidence)
                out = (tuple(padder.unpad(x) for x in out) if confidence
                       else padder.unpad(out))
        if not confidence:
            return out[:, 0].float(), None
        disp, conf = out
        return disp[:, 0].float(), conf[:, 0].float()

    def _autocast(self) -> contextlib.AbstractContextManager:
        # On CUDA the model opens its autocast regions itself; on CPU it only follows an
        # autocast opened around it (as upstream), so the backend opens one. Either way the
        # same regions run in half precision and the geometry lookup stays float32.
        if self.amp_dtype is None or self.device.type == 'cuda':
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    @staticmethod
    def _key(height: int, width: int, hierarchical: bool, small_ratio: float) -> tuple:
        return (int(height), int(width), bool(hierarchical),
                float(small_ratio) if hierarchical else None)

    def describe(self) -> dict[str, str]:
        """Model identity for diagnostics."""
        return {
            'backend': self.name,
            'family': self.model.family,
            'architecture': self.model.architecture_summary(),
            'device': str(self.device),
            'checkpoint': self.checkpoint,
            'vit_size': str(self.cfg.get('vit_size', DEFAULT_VIT_SIZE)),
            'valid_iters': str(self.valid_iters),
            'precision': self.precision,
            'hierarchical': str(self.hierarchical),
            'compiled': ', '.join(self.compiled_parts) if self.compiled else 'no (eager)',
        }

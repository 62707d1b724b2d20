"""The interface every disparity backend implements (no ROS, no model imports)."""
from __future__ import annotations

import abc
from typing import Any

import torch

__all__ = ['DisparityBackend']


class DisparityBackend(abc.ABC):
    """Turns a rectified stereo pair into a disparity map for the left image.

    Subclasses set the attributes (as class or instance attributes) and implement
    :meth:`compute`; the pipeline calls :meth:`compute_batch` (one pair or several), which by
    default runs :meth:`compute` pair by pair and which a network overrides to run a batch.
    Per-pair settings (the network's ``valid_iters``...) arrive as keyword arguments of both:
    the pipeline passes its per-pair snapshot, so a setting changed at runtime applies from the
    next pair. Which settings a backend takes is declared once, in
    :mod:`foundation_stereo_ros.settings`. The pipeline calls :meth:`check_pair` before
    :meth:`compute_batch`.

    - ``name``: registry name, e.g. ``'sgbm'``.
    - ``device``: where :meth:`compute_batch` expects its inputs and returns its output.
    - ``delta_d``: smallest step between two disparity values the backend can output (pixels).
    - ``max_disparity``: largest disparity it can output (pixels), ``None`` if unbounded.
    - ``min_disparity``: smallest disparity it searches (pixels), 0 unless the backend shifts
      its search range.
    - ``input_size``: ``(height, width)`` the backend must be run at (a network exported at a
      fixed size), ``None`` when it takes any size. The pipeline resizes pairs to it.
    - ``provides_confidence``: whether :meth:`compute_batch_with_confidence` returns a
      confidence map (``False``: it returns ``None`` in its place).
    """

    name: str
    device: torch.device
    delta_d: float
    max_disparity: float | None
    min_disparity: float = 0.0
    input_size: tuple[int, int] | None = None
    provides_confidence: bool = False

    @abc.abstractmethod
    def compute(self, left: torch.Tensor, right: torch.Tensor, **options: Any) -> torch.Tensor:
        """Disparity of the left image.

        ``left``, ``right``: (3, H, W) float32 RGB 0..255 tensors on ``self.device``;
        ``options``: this pair's settings, for backends that take any. Returns an
        (H, W) float32 tensor on ``self.device`` of disparities in pixels, ``x_left - x_right``
        (the principal point offset is not removed), NaN where there is no estimate.
        """

    def compute_batch(self, left: torch.Tensor, right: torch.Tensor,
                      **options: Any) -> torch.Tensor:
        """Disparities of a batch: (B, 3, H, W) pairs in, (B, H, W) float32 out.

        Same conventions as :meth:`compute`. This default runs the pairs one by one; backends
        that gain from batching (a network) override it.
        """
        return torch.stack([self.compute(lft, rgt, **options) for lft, rgt in zip(left, right)])

    def compute_batch_with_confidence(self, left: torch.Tensor, right: torch.Tensor,
                                      **options: Any
                                      ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Disparities of a batch and their confidence.

        Returns the (B, H, W) disparity of :meth:`compute_batch`, and a (B, H, W) float32
        confidence in [0, 1] at the same size and device, or ``None`` when the backend has none
        (``provides_confidence`` is ``False``). This default has none.
        """
        return self.compute_batch(left, right, **options), None

    def describe(self) -> dict[str, str]:
        """Backend identity and settings, as strings for diagnostics."""
        max_disparity = self.max_disparity
        return {
            'backend': self.name,
            'device': str(self.device),
            'delta_d': f'{self.delta_d:g}',
            'max_disparity': 'unbounded' if max_disparity is None else f'{max_disparity:g}',
        }

    def check_pair(self, left: torch.Tensor, right: torch.Tensor) -> None:
        """Raise ValueError (TypeError for a non-tensor) saying what is wrong, unless it fits."""
        for side, image in (('left', left), ('right', right)):
            if not isinstance(image, torch.Tensor):
                raise TypeError(f'{self.name}: {side} image must be a torch.Tensor, '
                                f'got {type(image).__name__}')
            if image.ndim != 3 or image.shape[0] != 3:
                raise ValueError(f'{self.name}: {side} image must be (3, H, W) RGB, got shape '
                                 f'{tuple(image.shape)}')
            if image.dtype != torch.float32:
                raise ValueError(f'{self.name}: {side} image must be float32 0..255, got '
                                 f'{image.dtype}')
            if image.device != self.device:
                raise ValueError(f'{self.name}: {side} image is on {image.device} but this '
                                 f'backend runs on {self.device}; move it there first')
        if left.shape != right.shape:
            raise ValueError(f'{self.name}: left and right images differ in size: '
                             f'{tuple(left.shape)} vs {tuple(right.shape)}')

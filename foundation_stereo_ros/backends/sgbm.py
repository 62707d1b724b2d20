"""OpenCV semi-global block matching as a disparity backend (CPU, no network)."""
from __future__ import annotations

import cv2
import numpy as np
import torch

from foundation_stereo_ros import choices
from foundation_stereo_ros.backends.base import DisparityBackend

__all__ = ['SGBM_MODES', 'SgbmBackend']

# Mode name -> OpenCV constant: sgbm (5 directions, single pass), sgbm_3way (3 directions,
# fastest, parallel), hh (full 8 directions, slow, memory hungry), hh4 (4 directions).
SGBM_MODES: dict[str, int] = {name: getattr(cv2, f'STEREO_SGBM_MODE_{name.upper()}')
                              for name in choices.SGBM_MODES}

# OpenCV returns fixed-point disparities with 4 fractional bits.
_SUBPIXEL = 16


class SgbmBackend(DisparityBackend):
    """``cv2.StereoSGBM`` with sensible defaults, on uint8 grey images on the CPU.

    Options (the settings of the same names, see :mod:`foundation_stereo_ros.settings`):

    - ``num_disparities``: size of the search range, a positive multiple of 16. The disparity
      range is ``[min_disparity, min_disparity + num_disparities)``.
    - ``block_size``: odd matching window size (3 to 11 is usual).
    - ``min_disparity``: smallest disparity searched (may be negative with a shifted principal
      point).
    - ``sgbm_mode``: one of :data:`SGBM_MODES`.
    - ``uniqueness_ratio``, ``speckle_window_size``, ``speckle_range``: passed to OpenCV
      (speckle filter on by default).

    The left-right check is the pipeline's, for every backend (the ``left_right_check``
    setting): it runs this matcher on the mirrored pair as a second pair of the batch.

    Fixed choices: smoothness penalties ``8 * block_size**2`` and ``32 * block_size**2``
    (OpenCV's recommendation), and the pair is padded on the left so the leftmost
    ``num_disparities`` columns get estimates too (OpenCV leaves that band empty); matches
    that land outside the right image are then dropped.
    """

    name = 'sgbm'
    delta_d = 1.0 / _SUBPIXEL

    def __init__(
        self,
        num_disparities: int = 128,
        block_size: int = 5,
        *,
        min_disparity: int = 0,
        sgbm_mode: str = 'sgbm_3way',
        uniqueness_ratio: int = 10,
        speckle_window_size: int = 100,
        speckle_range: int = 2,
    ) -> None:
        num_disparities = _integer('num_disparities', num_disparities)
        if num_disparities <= 0 or num_disparities % 16:
            raise ValueError(f'num_disparities must be a positive multiple of 16, got '
                             f'{num_disparities} (try {max(16, -(-num_disparities // 16) * 16)})')
        block_size = _integer('block_size', block_size)
        if block_size < 1 or block_size % 2 == 0:
            raise ValueError(f'block_size must be an odd number >= 1 (3 to 11 is usual), got '
                             f'{block_size}')
        min_disparity = _integer('min_disparity', min_disparity)
        if sgbm_mode not in SGBM_MODES:
            raise ValueError(f'unknown SGBM mode {sgbm_mode!r}; valid modes: '
                             f'{", ".join(sorted(SGBM_MODES))}')
        uniqueness_ratio = _integer('uniqueness_ratio', uniqueness_ratio)
        if not 0 <= uniqueness_ratio <= 100:
            raise ValueError(f'uniqueness_ratio is a percentage margin (5 to 15 is usual), got '
                             f'{uniqueness_ratio}')
        speckle_window_size = _integer('speckle_window_size', speckle_window_size)
        speckle_range = _integer('speckle_range', speckle_range)
        if speckle_window_size < 0 or speckle_range < 0:
            raise ValueError('speckle_window_size and speckle_range must be >= 0 (0 disables '
                             'the speckle filter)')

        self.device = torch.device('cpu')
        self.num_disparities = num_disparities
        self.block_size = block_size
        self.min_disparity = float(min_disparity)
        self.max_disparity = float(min_disparity + num_disparities)
        self.sgbm_mode = sgbm_mode
        self._settings = {
            'minDisparity': min_disparity, 'numDisparities': num_disparities,
            'blockSize': block_size, 'P1': 8 * block_size ** 2, 'P2': 32 * block_size ** 2,
            'disp12MaxDiff': 1, 'preFilterCap': 63, 'uniquenessRatio': uniqueness_ratio,
            'speckleWindowSize': speckle_window_size, 'speckleRange': speckle_range}
        self._matcher = cv2.StereoSGBM_create(mode=SGBM_MODES[sgbm_mode], **self._settings)

    def compute(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        """(3, H, W) float32 RGB 0..255 CPU tensors -> (H, W) float32 disparity, NaN invalid."""
        left_np = self._to_uint8(left)
        right_np = self._to_uint8(right)
        return torch.from_numpy(self._match(left_np, right_np))

    def describe(self) -> dict[str, str]:
        """Backend identity and matcher settings for diagnostics."""
        info = super().describe()
        info.update({
            'sgbm_mode': self.sgbm_mode,
            'min_disparity': f'{self.min_disparity:g}',
            'num_disparities': str(self.num_disparities),
            'block_size': str(self.block_size),
        })
        info.update({name: str(value) for name, value in self._settings.items()
                     if name not in ('minDisparity', 'numDisparities', 'blockSize')})
        return info

    def _to_uint8(self, image: torch.Tensor) -> np.ndarray:
        hwc = image.clamp(0.0, 255.0).round().to(torch.uint8).permute(1, 2, 0).contiguous()
        return cv2.cvtColor(hwc.numpy(), cv2.COLOR_RGB2GRAY)

    def _match(self, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        """Disparity (H, W) float32 of ``left`` against ``right``, NaN where invalid."""
        width = left.shape[1]
        # OpenCV skips the first min_disparity + num_disparities columns; padding shifts them
        # into the image so the whole search range fits beside every real pixel.
        pad = max(int(self.max_disparity), 0)
        left = cv2.copyMakeBorder(left, 0, 0, pad, 0, cv2.BORDER_REPLICATE)
        right = cv2.copyMakeBorder(right, 0, 0, pad, 0, cv2.BORDER_REPLICATE)
        fixed = self._matcher.compute(left, right)[:, pad:]
        disparity = fixed.astype(np.float32) / _SUBPIXEL
        # Invalid pixels come back as (min_disparity - 1) * 16.
        invalid = fixed < int(self.min_disparity) * _SUBPIXEL
        # A match in the padding is a match with nothing: the point is outside the right image.
        x_right = np.arange(width, dtype=np.float32)[None, :] - disparity
        invalid |= (x_right < -0.5) | (x_right > width - 0.5)
        disparity[invalid] = np.nan
        return disparity


def _integer(name: str, value: object) -> int:
    """``value`` as an int; ValueError naming the option if it is not a whole number."""
    try:
        whole = not isinstance(value, (bool, str)) and int(value) == value
    except (TypeError, ValueError, OverflowError):
        whole = False
    if not whole:
        raise ValueError(f'{name} must be an integer, got {value!r}')
    return int(value)

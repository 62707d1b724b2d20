"""False-colour disparity images for display (RViz, image_view, saved demo output)."""
from __future__ import annotations

import functools
from typing import Any

import cv2
import numpy as np

__all__ = ['colorize_disparity']


@functools.cache
def _turbo_rgb() -> np.ndarray:
    """Return OpenCV's TURBO colormap as a (256, 3) uint8 RGB lookup table.

    applyColorMap is itself a 256-entry lookup on uint8 input, so indexing this table gives the
    same colours and converts BGR to RGB in the same step.
    """
    ramp = np.arange(256, dtype=np.uint8).reshape(1, 256)
    return np.ascontiguousarray(cv2.applyColorMap(ramp, cv2.COLORMAP_TURBO)[0, :, ::-1])


def colorize_disparity(disp: Any, *, vmin: float | None = None, vmax: float | None = None,
                       invalid_color: tuple[int, int, int] = (0, 0, 0)) -> np.ndarray:
    """Disparity (H, W) as a TURBO false-colour (H, W, 3) uint8 RGB image.

    Same result as the official ``vis_disparity``: the range defaults to the min and max of the
    valid values, ``(d - vmin) / (vmax - vmin)`` is clipped to 0..1, scaled by 255 and truncated
    to uint8 (float32 arithmetic for float32 input), then mapped through
    ``cv2.COLORMAP_TURBO``. Invalid pixels are the non-finite ones (NaN, as this package marks
    them, or +/-inf; the official code treats only +inf as invalid) and get ``invalid_color``;
    an all-invalid map is all ``invalid_color``. Negative disparities are valid values here,
    as in the official code. A torch tensor is copied to the host first.
    """
    if hasattr(disp, 'detach'):
        disp = disp.detach().cpu().numpy()
    disp = np.asarray(disp)
    if disp.ndim != 2:
        raise ValueError(f'colorize_disparity needs an (H, W) disparity, got shape {disp.shape}')
    if not np.issubdtype(disp.dtype, np.floating):
        disp = disp.astype(np.float32)
    valid = np.isfinite(disp)
    out = np.empty(disp.shape + (3,), dtype=np.uint8)
    out[...] = np.asarray(invalid_color, dtype=np.uint8)
    if not valid.any():
        return out
    values = disp[valid]
    low = values.min() if vmin is None else disp.dtype.type(vmin)
    high = values.max() if vmax is None else disp.dtype.type(vmax)
    span = high - low
    if not span > 0:
        # constant map (or vmax <= vmin): everything at the bottom of the colormap
        index = np.zeros(values.shape, dtype=np.uint8)
    else:
        index = (np.clip((values - low) / span, 0, 1) * 255).astype(np.uint8)
    out[valid] = _turbo_rgb()[index]
    return out

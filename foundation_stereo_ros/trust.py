"""Filters that drop the pixels a robot should not trust: pure torch, on any device.

* :func:`left_right_check`: the left and the right view's disparities must agree.
* :func:`flying_pixel_mask`: pixels at depth discontinuities (the "flying pixels" that bridge
  foreground and background once the disparity is upsampled or smoothed across an edge).
* :func:`radius_outlier_mask`: the official demo's radius outlier removal of the cloud, on the
  organized cloud's image neighbourhood instead of a 3-D search.
* :func:`nan_where`: apply a mask (NaN where it is true), faster than ``torch.where`` on CPUs.

Every function takes and returns tensors on the input's device and never copies to the host,
except :func:`radius_outlier_mask`, which reads the search extent and the points its first
pass left undecided (loop bounds and a selection: unavoidable for a search that sizes itself).
Masks are boolean, True where the filter says so. The right view's disparity comes from the
mirror trick: :func:`right_view_pair` gives the pair to run through any backend, and
:func:`unmirror` turns that backend output into the right view's disparity.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = [
    'DENOISE_MAX_HALF_WINDOW',
    'flying_pixel_mask',
    'left_right_check',
    'nan_where',
    'radius_outlier_mask',
    'right_view_pair',
    'unmirror',
]

# Largest image half-window (pixels) that radius_outlier_mask searches. Its cost grows with
# the window's area; a window of 17 x 17 holds 288 candidates, well above the neighbour counts
# used in practice (the official demo asks for 30), so capping it only changes the verdict on
# thin structures seen from close up (README, "Depth you can trust").
DENOISE_MAX_HALF_WINDOW = 8
# Memory for one chunk of the second denoising pass (the points still short of neighbours).
_RING_CHUNK_BYTES = 64 * 2 ** 20


def _positive(name: str, value: float) -> float:
    value = float(value)
    if not value > 0.0 or not math.isfinite(value):
        raise ValueError(f'{name} must be a positive finite number, got {value!r}')
    return value


def right_view_pair(left: Tensor, right: Tensor) -> tuple[Tensor, Tensor]:
    """Mirror a pair so that its left-image disparity, flipped back, is the right view's.

    ``left``, ``right``: images (..., H, W) with the width last, e.g. the backends' (3, H, W)
    or (B, 3, H, W). Returns ``(flip(right), flip(left))``, flipped along the width: in the
    mirrored world the right camera is on the left, so any backend matches it as usual.
    """
    return right.flip(-1), left.flip(-1)


def unmirror(disp: Tensor) -> Tensor:
    """Flip a backend's output on :func:`right_view_pair` into the right view's disparity.

    ``disp`` (..., H, W) is flipped back along the width. The values need no change: a point
    seen at ``x_l`` and ``x_r`` has mirrored disparity ``x_l - x_r`` too, so the result is in
    the convention :func:`left_right_check` takes (subtract ``camera.doffs`` from both views'
    disparities alike, or from neither).
    """
    return disp.flip(-1)


def left_right_check(disp_left: Tensor, disp_right: Tensor, max_diff: float
                     ) -> tuple[Tensor, Tensor]:
    """Find the pixels of the left view whose disparity the right view confirms.

    ``disp_left`` (..., H, W): left-view disparity (``x_l - x_r``, pixels, NaN invalid);
    ``disp_right`` (..., H, W): right-view disparity (positive: right pixel ``x`` matches
    left ``x + d``), e.g. :func:`unmirror` of the backend's output on :func:`right_view_pair`.
    A left pixel ``x`` with disparity ``d`` is compared with the right pixel nearest to
    ``x - d`` (the one whose area holds the match: a sub-pixel match beside an occluding edge
    is judged by the occluder, as the right camera sees it); matches outside the right image
    (``x - d`` outside ``[-0.5, W - 0.5]``) are dropped. Returns ``(keep, agreement)``:
    ``keep`` (bool) where the difference is at most ``max_diff`` pixels, ``agreement``
    (float32 in [0, 1]) ``1 - difference / max_diff`` clamped: 1 where the two agree
    exactly, 0 at ``>= max_diff``, where either disparity is invalid or the match falls
    outside the right image.
    """
    max_diff = _positive('max_diff', max_diff)
    if disp_left.shape != disp_right.shape:
        raise ValueError(f'disp_left and disp_right must have the same shape, got '
                         f'{tuple(disp_left.shape)} and {tuple(disp_right.shape)}')
    disp_left = disp_left.float()
    disp_right = disp_right.float()
    width = disp_left.shape[-1]
    x = torch.arange(width, dtype=torch.float32, device=disp_left.device)
    x_right = x - disp_left                                  # NaN where disp_left is
    inside = (x_right >= -0.5) & (x_right <= width - 0.5)    # False for NaN
    column = torch.where(inside, x_right, 0.0).round_().clamp_(0, width - 1).long()
    diff = (disp_left - torch.gather(disp_right, -1, column)).abs()
    # NaN (either side invalid) and matches outside the image: infinitely far apart.
    diff = torch.where(inside & (diff >= 0.0), diff, math.inf)
    keep = diff <= max_diff
    agreement = (1.0 - diff / max_diff).clamp_(0.0, 1.0)
    return keep, agreement


def nan_where(drop: Tensor, x: Tensor) -> Tensor:
    """``x`` (floating point) with NaN where ``drop`` is true: ``torch.where(drop, nan, x)``.

    Elementwise arithmetic instead of ``torch.where``, which on CPUs runs several times slower
    than a division (1280x720, 2 threads: about 2.2 ms against 0.7 ms; ``benchmarks/
    bench_trust.py``). ``x / 1 * 1`` is ``x`` exactly; ``x / 0 * 0`` is NaN for every ``x``
    (``inf * 0``, ``0 / 0``, NaN). Returns a new tensor.
    """
    keep = (~drop).to(x.dtype)
    return x.div(keep).mul_(keep)


def flying_pixel_mask(depth: Tensor, rtol: float, window: int = 3) -> Tensor:
    """Find the pixels to drop at depth discontinuities.

    ``depth`` (..., H, W) metres, NaN invalid. True where the relative depth spread
    ``(max - min) / depth`` over the ``window`` x ``window`` neighbourhood exceeds ``rtol``
    (the convention of MoGe's and utils3d's ``depth_edge``; ``rtol`` about 0.04). Invalid
    neighbours are left out of the spread; invalid pixels are never flagged (they are dropped
    already). Separable running max and min over shifted slices: no loop over pixels.
    """
    rtol = _positive('rtol', rtol)
    if isinstance(window, bool) or int(window) != window or window < 3 or window % 2 == 0:
        raise ValueError(f'window must be an odd integer >= 3, got {window!r}')
    half = int(window) // 2
    depth = depth.float()
    # NaN (invalid) becomes the value that loses each extreme, so the fast maximum/minimum
    # kernels leave it out (fmax/fmin do that themselves but run about 3x slower on CPUs).
    spread = _window_extreme(_nan_to(depth, -math.inf), half, torch.maximum)
    spread.sub_(_window_extreme(_nan_to(depth, math.inf), half, torch.minimum))
    return spread.sub_(depth, alpha=rtol) > 0.0               # False where depth is NaN


def _nan_to(x: Tensor, value: float) -> Tensor:
    """``x`` with NaN replaced by ``value``, infinities kept."""
    return torch.nan_to_num(x, nan=value, posinf=math.inf, neginf=-math.inf)


def _window_extreme(x: Tensor, half: int, op: Callable[..., Tensor]) -> Tensor:
    """Apply ``op`` (torch.maximum or minimum) over a (2 half + 1)^2 window, separably.

    Returns a new tensor (callers update it in place). Shifted slices instead of max_pool2d:
    pooling computes indices too and is several times slower on the CPU. The 3 x 3 window
    takes two passes per axis: the extreme of each adjacent pair, then of two overlapping
    pairs.
    """
    source = x
    for dim in (-1, -2):
        size = x.shape[dim]
        if size < 2:
            continue
        if half == 1:
            pair = op(x.narrow(dim, 0, size - 1), x.narrow(dim, 1, size - 1))
            out = torch.empty_like(x)
            op(pair.narrow(dim, 0, size - 2), pair.narrow(dim, 1, size - 2),
               out=out.narrow(dim, 1, size - 2))
            out.narrow(dim, 0, 1).copy_(pair.narrow(dim, 0, 1))
            out.narrow(dim, size - 1, 1).copy_(pair.narrow(dim, size - 2, 1))
        else:
            out = x.clone()
            for shift in range(1, min(half, size - 1) + 1):
                head = out.narrow(dim, 0, size - shift)
                tail = out.narrow(dim, shift, size - shift)
                op(head, x.narrow(dim, shift, size - shift), out=head)
                op(tail, x.narrow(dim, 0, size - shift), out=tail)
        x = out
    return x.clone() if x is source else x


def _neighbour_count(points: Tensor, radius: float, half_u: int, half_v: int) -> Tensor:
    """Count the valid points (itself left out) within ``radius`` of each, over the window.

    ``points`` (3, H, W); the window is ``(2 half_v + 1) x (2 half_u + 1)`` pixels. Each pair
    of pixels is tested once: the half-plane of offsets, counted for both ends.
    """
    _, height, width = points.shape
    # int16 is plenty: the default window holds 288 candidates, one of 181 x 181 32760.
    count = torch.zeros((height, width), dtype=torch.int16, device=points.device)
    limit = radius * radius
    x, y, z = points
    for dv in range(min(half_v, height - 1) + 1):
        first_du = 1 if dv == 0 else -min(half_u, width - 1)
        for du in range(first_du, min(half_u, width - 1) + 1):
            # Pixel p = (v, u) and its partner q = (v + dv, u + du), both inside the image.
            u0, u1 = max(0, -du), width - max(0, du)
            here = (slice(0, height - dv), slice(u0, u1))
            there = (slice(dv, height), slice(u0 + du, u1 + du))
            # Per coordinate, in place: a third fewer passes over memory than on (3, h, w).
            step = x[here] - x[there]
            distance2 = step * step
            distance2.addcmul_(torch.sub(y[here], y[there], out=step), step)
            distance2.addcmul_(torch.sub(z[here], z[there], out=step), step)
            near = distance2 <= limit                              # False where a NaN is
            count[here] += near
            count[there] += near
    return count


def radius_outlier_mask(points: Tensor, radius: float, min_neighbors: int,
                        fx: float, fy: float) -> Tensor:
    """Find points with fewer than ``min_neighbors`` other valid points within ``radius`` m.

    ``points`` (H, W, 3) organized cloud in the camera frame, NaN invalid. The neighbours are
    searched in the image neighbourhood instead of in 3-D: the window's half-size is
    ``ceil(radius * f / z)`` pixels for the nearest valid point (so every point's own window
    is at least that big), capped at :data:`DENOISE_MAX_HALF_WINDOW`; the distance test
    itself is exact. This is the official demo's radius outlier removal (Open3D's
    ``remove_radius_outlier``, 30 neighbours within 0.03 m) at video rate; it can only find
    fewer neighbours than a true radius search (README, "Depth you can trust"). Returns the
    points to drop (bool (H, W)); invalid points are not flagged. Reads two things from the
    device: the nearest depth (the window size) and which points the small first window left
    short of neighbours (only those are searched further).
    """
    radius = _positive('radius', radius)
    fx = _positive('fx', fx)
    fy = _positive('fy', fy)
    if isinstance(min_neighbors, bool) or int(min_neighbors) != min_neighbors \
            or min_neighbors < 0:
        raise ValueError(f'min_neighbors must be a whole number >= 0, got {min_neighbors!r}')
    if points.ndim != 3 or points.shape[-1] != 3:
        raise ValueError(f'points must be an organized cloud (H, W, 3), got shape '
                         f'{tuple(points.shape)}')
    points = points.float()
    valid = torch.isfinite(points).all(-1)
    if min_neighbors == 0:
        return torch.zeros_like(valid)
    z = torch.where(valid, points[..., 2].abs(), math.inf)
    nearest = float(z.min())                                  # the one host read
    if not math.isfinite(nearest):
        return torch.zeros_like(valid)
    nearest = max(nearest, 1e-9)
    cap = DENOISE_MAX_HALF_WINDOW
    half_u = min(cap, math.ceil(radius * fx / nearest))
    half_v = min(cap, math.ceil(radius * fy / nearest))
    min_neighbors = int(min_neighbors)
    # First the whole image over a small window (about twice min_neighbors candidates): most
    # points on a surface have their neighbours there already, and counts only grow. Then the
    # rest of the window for the points still short of neighbours.
    inner = max(1, math.ceil((math.sqrt(2 * min_neighbors + 1) - 1) / 2))
    inner_u, inner_v = min(inner, half_u), min(inner, half_v)
    cloud = points.permute(2, 0, 1).contiguous()
    count = _neighbour_count(cloud, radius, inner_u, inner_v)
    short = valid & (count < min_neighbors)
    if (inner_u, inner_v) == (half_u, half_v):
        return short
    undecided = short.flatten().nonzero().squeeze(1)         # the second host read
    if undecided.numel() == 0:
        return short
    offsets = [(dv, du) for dv in range(-half_v, half_v + 1) for du in range(-half_u, half_u + 1)
               if abs(dv) > inner_v or abs(du) > inner_u]
    total = count.flatten()[undecided] + _ring_count(cloud, undecided, offsets, radius)
    drop = torch.zeros_like(short).flatten()
    drop[undecided] = total < min_neighbors
    return drop.view_as(short)


def _ring_count(cloud: Tensor, index: Tensor, offsets: list[tuple[int, int]],
                radius: float) -> Tensor:
    """Count, for the flat pixel indices ``index``, neighbours within ``radius`` at ``offsets``.

    ``cloud`` (3, H, W). Works on the selected points only, a chunk of offsets at a time
    (bounded memory, few kernels; index_select, which is much faster than indexing on CPUs).
    """
    _, height, width = cloud.shape
    flat = cloud.reshape(3, -1)
    here = flat.index_select(1, index)[:, :, None]
    row, col = index // width, index % width
    count = torch.zeros(index.shape, dtype=torch.int32, device=cloud.device)
    table = torch.tensor(offsets, dtype=torch.int64, device=cloud.device)
    chunk = max(1, _RING_CHUNK_BYTES // max(1, 12 * index.numel()))
    limit = radius * radius
    for start in range(0, len(offsets), chunk):
        dv, du = table[start:start + chunk].unbind(1)
        v, u = row[:, None] + dv, col[:, None] + du
        inside = (v >= 0) & (v < height) & (u >= 0) & (u < width)
        partner = (v.clamp_(0, height - 1) * width + u.clamp_(0, width - 1)).flatten()
        there = flat.index_select(1, partner).view(3, *v.shape)
        near = (there - here).square_().sum(0) <= limit        # False where a NaN is
        count += (near & inside).sum(1, dtype=torch.int32)
    return count

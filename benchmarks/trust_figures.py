#!/usr/bin/env python3
"""What the trust filters drop on generated scenes, measured against their exact ground truth.

Usage: python benchmarks/trust_figures.py [--size 640x480] [--seeds 0 1 2] [--json out.json]

Prints three tables (means over the scenes; ``--json`` also writes every figure):

(a) left-right check with SGBM (``trust.left_right_check`` on the backend's output for the
    pair and for the mirrored pair, as the pipeline runs it): of the occluded pixels (the ray
    caster's mask of left pixels the right camera cannot see) that SGBM gave an estimate,
    the share the check drops; of the visible pixels SGBM got right (within 1 px), the share
    it loses; per ``max_diff``.
(b) flying pixels (``trust.flying_pixel_mask`` on the depth at camera resolution): near depth
    boundaries of the ground truth (within 3 px of a jump of more than 5 %), the share of
    cloud points more than 5 % of their depth off the true surface (along their ray), before
    and after, the share of those bad points dropped and the share of correct points lost
    (near boundaries and over the whole image), per ``edge_rtol``; for SGBM, for SGBM at
    scale 0.5 and for a perfect disparity at scale 0.5 (the ground truth ray-cast at half
    resolution), both upsampled to camera size as the pipeline does.
(c) the organized radius outlier removal (``trust.radius_outlier_mask``) against an exact
    k-d-tree radius count (scipy's cKDTree) on the clouds of (b): the share of valid points
    on which the two agree, and how many each drops; per search-window cap.

Scenes carry image noise (``--noise`` grey levels) so that SGBM errs as it does on real
images. The k-d tree's cost grows with the neighbour count: keep ``--size`` modest.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import cv2
import numpy as np
import torch
from common import OFFICIAL_DENOISE_MIN_NEIGHBORS, OFFICIAL_DENOISE_RADIUS, parse_size
from scipy.spatial import cKDTree

from foundation_stereo_ros import geometry, trust
from foundation_stereo_ros.backends.sgbm import SgbmBackend
from foundation_stereo_ros.pipeline import _resize_disparity, _resize_images
from foundation_stereo_ros.synthetic.scenes import StereoScene, make_scene, render_depth

LR_MAX_DIFFS = (0.5, 1.0, 2.0, 3.0)
EDGE_RTOLS = (0.01, 0.02, 0.03, 0.04, 0.06, 0.08, 0.12)
DENOISE_CAPS = (4, 8, 12)
# A point is "off the surface" beyond this relative depth error; boundaries are jumps of it.
BAD_RELATIVE = 0.05
BOUNDARY_BAND_PX = 3


def _share(part: np.ndarray, whole: np.ndarray) -> float:
    total = int(whole.sum())
    return float((part & whole).sum() / total) if total else math.nan


def _tensor_pair(scene: StereoScene) -> tuple[torch.Tensor, torch.Tensor]:
    return tuple(torch.from_numpy(image).permute(2, 0, 1).float()
                 for image in (scene.left, scene.right))


def _sgbm(max_disparity: float) -> SgbmBackend:
    """SGBM searching just beyond ``max_disparity`` (a multiple of 16, as OpenCV needs)."""
    return SgbmBackend(num_disparities=max(16, int(np.ceil((max_disparity + 1.0) / 16) * 16)))


def left_right_figures(scene: StereoScene) -> list[dict[str, float]]:
    """Table (a) for one scene: one row per max_diff."""
    left, right = _tensor_pair(scene)
    backend = _sgbm(float(scene.disparity.max()))
    disp_left = backend.compute(left, right)
    disp_right = trust.unmirror(backend.compute(*trust.right_view_pair(left, right)))
    estimate = np.isfinite(disp_left.numpy())
    error = np.abs(disp_left.numpy() - scene.disparity)
    occluded = scene.occluded
    correct = ~occluded & estimate & (error <= 1.0)
    rows = []
    for max_diff in LR_MAX_DIFFS:
        keep, _ = trust.left_right_check(disp_left, disp_right, max_diff)
        dropped = estimate & ~keep.numpy()
        rows.append({
            'max_diff': max_diff,
            'occluded_estimated': _share(estimate, occluded),
            'occluded_dropped': _share(dropped, occluded & estimate),
            'occluded_left_after': _share(estimate & ~dropped, occluded),
            'correct_lost': _share(dropped, correct),
            'visible_dropped': _share(dropped, ~occluded & estimate),
        })
    return rows


def boundary_band(depth: np.ndarray) -> np.ndarray:
    """Pixels within BOUNDARY_BAND_PX of a ground-truth depth jump of more than 5 %."""
    jump = np.zeros(depth.shape, bool)
    for axis in (0, 1):
        a = depth.take(range(depth.shape[axis] - 1), axis)
        b = depth.take(range(1, depth.shape[axis]), axis)
        step = np.abs(a - b) / np.minimum(a, b) > BAD_RELATIVE
        pad = [(0, 0), (0, 0)]
        pad[axis] = (0, 1)
        jump |= np.pad(step, pad)
        pad[axis] = (1, 0)
        jump |= np.pad(step, pad)
    size = 2 * BOUNDARY_BAND_PX + 1
    return cv2.dilate(jump.astype(np.uint8), np.ones((size, size), np.uint8)).astype(bool)


def disparities(scene: StereoScene) -> dict[str, torch.Tensor]:
    """Make the camera-size disparities whose clouds (b) and (c) judge."""
    camera = scene.camera
    left, right = _tensor_pair(scene)
    out = {'sgbm': _sgbm(float(scene.disparity.max())).compute(left, right)}
    half_w, half_h = max(16, camera.width // 2), max(16, camera.height // 2)
    x_scale = camera.width / half_w
    small = _resize_images(torch.stack((left, right)), half_h, half_w)
    half_disp = _sgbm(float(scene.disparity.max()) / x_scale).compute(small[0], small[1])
    out['sgbm@0.5'] = _resize_disparity(half_disp, camera.height, camera.width) * x_scale
    # A perfect network at half resolution: the ground truth ray-cast at the half-size camera.
    half_camera = camera.resized(half_w, half_h)
    half_depth, _ = render_depth(scene.surfaces, half_camera, 'left')
    perfect = torch.from_numpy((half_camera.fx * camera.baseline / half_depth).astype(np.float32))
    out['truth@0.5'] = _resize_disparity(perfect, camera.height, camera.width) * x_scale
    return out


def depth_of(disparity: torch.Tensor, scene: StereoScene) -> torch.Tensor:
    """Depth as the pipeline makes it (invalid below zero disparity)."""
    disparity = torch.where(disparity > 0, disparity, math.nan)
    return geometry.disparity_to_depth(disparity, scene.camera)


def flying_figures(scene: StereoScene, case: str, disparity: torch.Tensor
                   ) -> list[dict[str, float]]:
    """Table (b) for one scene and disparity source: one row per rtol (0 = before)."""
    depth = depth_of(disparity, scene)
    z = depth.numpy()
    valid = np.isfinite(z)
    relative = np.abs(z - scene.depth) / scene.depth
    bad = valid & (relative > BAD_RELATIVE)
    good = valid & ~bad
    band = boundary_band(scene.depth)
    rows = [{'case': case, 'rtol': 0.0, 'band_bad': _share(bad, band & valid),
             'bad_dropped': 0.0, 'correct_lost_band': 0.0, 'correct_lost': 0.0,
             'band_valid': _share(valid, band)}]
    for rtol in EDGE_RTOLS:
        drop = trust.flying_pixel_mask(depth, rtol).numpy()
        kept = valid & ~drop
        rows.append({'case': case, 'rtol': rtol, 'band_bad': _share(bad, band & kept),
                     'bad_dropped': _share(drop, bad & band),
                     'correct_lost_band': _share(drop, good & band),
                     'correct_lost': _share(drop, good),
                     'band_valid': _share(kept, band)})
    return rows


def kd_tree_drop(points: np.ndarray, radius: float, min_neighbors: int) -> np.ndarray:
    """Exact radius outlier removal (Open3D's rule: the count includes the point itself)."""
    valid = np.isfinite(points).all(-1)
    cloud = points[valid].astype(np.float64)
    drop = np.zeros(valid.shape, bool)
    if len(cloud):
        count = cKDTree(cloud).query_ball_point(cloud, radius, return_length=True) - 1
        drop[valid] = count < min_neighbors
    return drop


def denoise_figures(scene: StereoScene, case: str, disparity: torch.Tensor
                    ) -> list[dict[str, float]]:
    """Table (c) for one scene and cloud: one row per window cap."""
    camera = scene.camera
    points = geometry.depth_to_points(depth_of(disparity, scene), camera)
    valid = torch.isfinite(points).all(-1).numpy()
    oracle = kd_tree_drop(points.numpy(), OFFICIAL_DENOISE_RADIUS, OFFICIAL_DENOISE_MIN_NEIGHBORS)
    rows = []
    default_cap = trust.DENOISE_MAX_HALF_WINDOW
    try:
        for cap in DENOISE_CAPS:
            trust.DENOISE_MAX_HALF_WINDOW = cap
            drop = trust.radius_outlier_mask(points, OFFICIAL_DENOISE_RADIUS,
                                             OFFICIAL_DENOISE_MIN_NEIGHBORS,
                                             camera.fx, camera.fy).numpy()
            rows.append({'case': case, 'cap': cap, 'agree': _share(drop == oracle, valid),
                         'dropped': _share(drop, valid), 'oracle_dropped': _share(oracle, valid),
                         'extra_dropped': _share(drop & ~oracle, valid),
                         'missed': _share(oracle & ~drop, valid)})
    finally:
        trust.DENOISE_MAX_HALF_WINDOW = default_cap
    return rows


def _mean_rows(rows: list[dict], keys: tuple[str, ...]) -> list[dict]:
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in keys), []).append(row)
    out = []
    for key, members in groups.items():
        mean = {k: v for k, v in zip(keys, key)}
        for name in members[0]:
            if name not in keys:
                mean[name] = float(np.nanmean([m[name] for m in members]))
        out.append(mean)
    return out


def _table(title: str, rows: list[dict]) -> None:
    print(f'\n{title}')
    names = list(rows[0])
    print(' '.join(f'{n:>18}' for n in names))
    for row in rows:
        print(' '.join(f'{v:>18.4f}' if isinstance(v, float) else f'{v!s:>18}'
                       for v in row.values()))


def run(size: tuple[int, int], seeds: list[int], noise: float) -> dict[str, list[dict]]:
    """Measure every table on scenes of ``size``; return the means over ``seeds``."""
    width, height = size
    lr_rows, flying_rows, denoise_rows = [], [], []
    for seed in seeds:
        scene = make_scene(width, height, seed=seed, noise=noise)
        lr_rows += left_right_figures(scene)
        for case, disparity in disparities(scene).items():
            flying_rows += flying_figures(scene, case, disparity)
            denoise_rows += denoise_figures(scene, case, disparity)
    return {'left_right': _mean_rows(lr_rows, ('max_diff',)),
            'flying': _mean_rows(flying_rows, ('case', 'rtol')),
            'denoise': _mean_rows(denoise_rows, ('case', 'cap'))}


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--size', type=parse_size, default=(640, 480))
    parser.add_argument('--seeds', nargs='+', type=int, default=[0, 1, 2])
    parser.add_argument('--noise', type=float, default=1.0, help='image noise, grey levels')
    parser.add_argument('--json', type=Path, help='also write the figures here')
    args = parser.parse_args(argv)
    figures = run(args.size, args.seeds, args.noise)
    print(f'scenes: {args.size[0]}x{args.size[1]}, seeds {args.seeds}, noise {args.noise}')
    _table('(a) left-right check with SGBM', figures['left_right'])
    _table(f'(b) flying pixels: points > {BAD_RELATIVE:.0%} off within {BOUNDARY_BAND_PX} px '
           'of a depth boundary (rtol 0 = no filter)', figures['flying'])
    _table(f'(c) organized radius outlier removal ({OFFICIAL_DENOISE_MIN_NEIGHBORS} within '
           f'{OFFICIAL_DENOISE_RADIUS} m) vs cKDTree', figures['denoise'])
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1) + '\n')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())

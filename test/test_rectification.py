"""Rectification of raw pairs: maps against the camera model, depth against scene ground truth.

Raw images are rendered here by ray casting: each raw pixel is undistorted (the lens model's
formulas, written out below, inverted by Newton steps) and rotated into the rectified frame by
the CameraInfo's R, then the generated scene is ray-cast along it. Rectifying them must give
back the scene's rectified pair, and the depth from it the scene's ground truth. The maps are
also checked pixel by pixel against the lens model's formulas.
"""
import logging
import math

import cv2
import numpy as np
import pytest
import torch
from sensor_msgs.msg import CameraInfo

from foundation_stereo_ros.backends import make_backend
from foundation_stereo_ros.camera import StereoCamera
from foundation_stereo_ros.camera_info import CameraInfoError
from foundation_stereo_ros.pipeline import StereoPipeline
from foundation_stereo_ros.rectification import (
    RectificationMaps,
    StereoRectifier,
    rectified_camera_info,
)
from foundation_stereo_ros.synthetic.scenes import make_scene, render_rays

W, H = 320, 240
# Raw intrinsics and lens of each camera, per model; P (the rectified camera) is the scene's.
K_RAW = {'left': [[300.0, 0.0, 165.0], [0.0, 298.0, 116.0], [0.0, 0.0, 1.0]],
         'right': [[296.0, 0.0, 152.0], [0.0, 297.0, 123.0], [0.0, 0.0, 1.0]]}
D_RAW = {
    'plumb_bob': {'left': [-0.12, 0.03, 0.0008, -0.0005, 0.0],
                  'right': [-0.10, 0.02, -0.0006, 0.0004, 0.001]},
    'rational_polynomial': {'left': [-0.12, 0.03, 0.0008, -0.0005, 0.0, 0.01, -0.005, 0.002],
                            'right': [-0.1, 0.02, -0.0006, 0.0004, 0.001, 0.0, 0.01, -0.003]},
    'equidistant': {'left': [0.02, -0.01, 0.004, -0.001],
                    'right': [0.015, -0.008, 0.002, 0.0]},
}
# Rectifying rotations (raw camera frame -> rectified frame), a degree or so, as calibrations
# of real rigs give.
ROTATION_VECTORS = {'left': [0.012, -0.02, 0.008], 'right': [-0.01, 0.018, -0.006]}


def rotation(side):
    return cv2.Rodrigues(np.array(ROTATION_VECTORS[side], dtype=np.float64))[0]


@pytest.fixture(scope='module')
def scene():
    return make_scene(W, H, seed=2, min_depth=1.0, max_depth=6.0)


def raw_info(scene, side, model, binning=1, roi=None):
    cam = scene.camera
    info = CameraInfo()
    info.header.frame_id = f'{side}_optical'
    info.width, info.height = W, H
    info.distortion_model = model
    info.d = [float(v) for v in D_RAW[model][side]]
    info.k = np.array(K_RAW[side]).ravel().tolist()
    info.r = rotation(side).ravel().tolist()
    tx = 0.0 if side == 'left' else -cam.fx * cam.baseline
    info.p = [cam.fx, 0.0, cam.cx, tx, 0.0, cam.fy, cam.cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    info.binning_x = info.binning_y = binning
    if roi is not None:
        info.roi.x_offset, info.roi.y_offset, info.roi.width, info.roi.height = roi
    return info


def render_raw(scene, side, model):
    """Render the raw image of one camera through its distorted, rotated pixels."""
    u, v = np.meshgrid(np.arange(W, dtype=np.float64), np.arange(H, dtype=np.float64))
    x, y = undistort(u, v, side, model)
    rays = np.stack([x, y, np.ones_like(x)], axis=-1) @ rotation(side).T
    a, b = rays[..., 0] / rays[..., 2], rays[..., 1] / rays[..., 2]
    origin_x = 0.0 if side == 'left' else scene.camera.baseline
    _, colour = render_rays(scene.surfaces, origin_x, a, b)
    return np.clip(np.rint(colour), 0, 255).astype(np.uint8)


def lens(x, y, side, model):
    """Distorted normalised coordinates of ideal ones: the model's formulas (ROS/OpenCV docs)."""
    d = D_RAW[model][side]
    if model == 'equidistant':
        r = np.hypot(x, y)
        theta = np.arctan(r)
        theta_d = theta * (1 + d[0] * theta**2 + d[1] * theta**4 + d[2] * theta**6
                           + d[3] * theta**8)
        scale = np.where(r > 0, theta_d / np.maximum(r, 1e-12), 1.0)
        return x * scale, y * scale
    k1, k2, p1, p2, k3 = d[:5]
    k4, k5, k6 = d[5:8] if len(d) == 8 else (0.0, 0.0, 0.0)
    r2 = x * x + y * y
    radial = (1 + k1 * r2 + k2 * r2**2 + k3 * r2**3) / (1 + k4 * r2 + k5 * r2**2 + k6 * r2**3)
    return (x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x),
            y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y)


def distort(x, y, side, model):
    """Raw pixel of ideal normalised raw-camera coordinates."""
    k = K_RAW[side]
    xd, yd = lens(x, y, side, model)
    return k[0][0] * xd + k[0][2], k[1][1] * yd + k[1][2]


def undistort(u, v, side, model):
    """Ideal normalised coordinates of raw pixels: the lens model inverted by Newton steps."""
    k = K_RAW[side]
    target_x, target_y = (u - k[0][2]) / k[0][0], (v - k[1][2]) / k[1][1]
    x, y = target_x.copy(), target_y.copy()
    eps = 1e-7
    for _ in range(20):
        fx, fy = lens(x, y, side, model)
        ex, ey = fx - target_x, fy - target_y
        ax, ay = lens(x + eps, y, side, model)
        bx, by = lens(x, y + eps, side, model)
        j11, j21, j12, j22 = (ax - fx) / eps, (ay - fy) / eps, (bx - fx) / eps, (by - fy) / eps
        det = j11 * j22 - j12 * j21
        x = x - (j22 * ex - j12 * ey) / det
        y = y - (j11 * ey - j21 * ex) / det
    residual = np.hypot(*(np.subtract(lens(x, y, side, model), (target_x, target_y))))
    assert residual.max() < 1e-10
    return x, y


@pytest.mark.parametrize('model', sorted(D_RAW))
def test_maps_follow_the_lens_model(scene, model):
    """Rectified pixel -> ray through P -> raw frame by R^T -> lens model -> raw pixel."""
    maps = RectificationMaps.from_camera_info(raw_info(scene, 'left', model))
    cam = scene.camera
    v, u = np.mgrid[0:H:7, 0:W:7].astype(np.float64)
    rays = np.stack([(u - cam.cx) / cam.fx, (v - cam.cy) / cam.fy, np.ones_like(u)], axis=-1)
    raw = rays @ rotation('left')  # R^T applied to row vectors
    x_raw, y_raw = distort(raw[..., 0] / raw[..., 2], raw[..., 1] / raw[..., 2], 'left', model)
    np.testing.assert_allclose(maps.map_x[0:H:7, 0:W:7], x_raw, atol=2e-3)
    np.testing.assert_allclose(maps.map_y[0:H:7, 0:W:7], y_raw, atol=2e-3)


def inside_both(pair_maps):
    """Rectified pixels whose raw sample lies inside the raw image, in both cameras."""
    ok = np.ones((H, W), bool)
    for maps in pair_maps:
        ok &= (maps.map_x >= 0) & (maps.map_x <= W - 1) & (maps.map_y >= 0) & \
            (maps.map_y <= H - 1)
    return ok


@pytest.mark.parametrize('model', sorted(D_RAW))
def test_rectified_raw_pair_gives_ground_truth_depth(scene, model):
    left_info, right_info = (raw_info(scene, side, model) for side in ('left', 'right'))
    raw_left, raw_right = render_raw(scene, 'left', model), render_raw(scene, 'right', model)
    rectifier = StereoRectifier()
    pair = rectifier.rectify(raw_left, raw_right, left_info, right_info)
    inside = inside_both(rectifier.maps(info, side)[0]
                         for side, info in (('left', left_info), ('right', right_info)))
    assert inside.mean() > 0.8
    # The rectified left image is the scene's rectified left view (up to bilinear resampling).
    diff = np.abs(pair.left.astype(int) - scene.left.astype(int)).max(axis=2)[inside]
    assert np.median(diff) <= 3

    camera = StereoCamera.from_camera_info(pair.left_info, pair.right_info)
    assert (camera.fx, camera.cx, camera.cy) == (scene.camera.fx, scene.camera.cx,
                                                 scene.camera.cy)
    assert camera.baseline == pytest.approx(scene.camera.baseline)
    result = StereoPipeline(make_backend('sgbm', num_disparities=64)).process(
        pair.left, pair.right, camera)
    good = np.isfinite(result.disparity) & ~scene.occluded & inside
    assert good.sum() > 0.6 * inside.sum()
    error = np.abs(result.disparity - scene.disparity)[good]
    assert np.median(error) < 0.3
    assert np.mean(error > 1.0) < 0.08
    np.testing.assert_allclose(np.median(result.depth[good] / scene.depth[good]), 1.0, atol=0.01)

    # Control: the raw pair itself, read as if rectified, is far off (the test can fail).
    raw = StereoPipeline(make_backend('sgbm', num_disparities=64)).process(
        raw_left, raw_right, camera)
    raw_good = np.isfinite(raw.disparity) & ~scene.occluded & inside
    raw_error = np.abs(raw.disparity - scene.disparity)[raw_good]
    assert np.mean(raw_error > 1.0) > 0.5


def test_grid_sample_matches_remap(scene):
    left_info, right_info = (raw_info(scene, side, 'plumb_bob') for side in ('left', 'right'))
    raw = render_raw(scene, 'left', 'plumb_bob'), render_raw(scene, 'right', 'plumb_bob')
    on_host = StereoRectifier(method='remap').rectify(*raw, left_info, right_info)
    on_device = StereoRectifier('cpu', method='grid_sample').rectify(
        *raw, left_info, right_info)
    assert isinstance(on_device.left, torch.Tensor) and on_device.left.dtype == torch.uint8
    for host, device in ((on_host.left, on_device.left), (on_host.right, on_device.right)):
        diff = np.abs(host.astype(int) - device.numpy().astype(int))
        # cv2.remap's fixed-point maps round sample positions to 1/32 px: a grey level or two.
        assert np.percentile(diff, 99) <= 2
        assert np.median(diff) == 0


def test_binned_roi_maps_follow_the_lens_model(scene):
    """2x2 binning of a ROI: binned pixel u is sensor pixel x_off + 2u + 0.5 (REP 104)."""
    x_off, y_off = 40, 20
    info = raw_info(scene, 'left', 'plumb_bob', binning=2, roi=(x_off, y_off, 200, 160))
    maps = RectificationMaps.from_camera_info(info)
    assert maps.size == (100, 80)
    cam = scene.camera
    v, u = np.mgrid[0:80:5, 0:100:5].astype(np.float64)
    u_sensor, v_sensor = x_off + 2 * u + 0.5, y_off + 2 * v + 0.5
    rays = np.stack([(u_sensor - cam.cx) / cam.fx, (v_sensor - cam.cy) / cam.fy,
                     np.ones_like(u)], axis=-1) @ rotation('left')
    x_raw, y_raw = distort(rays[..., 0] / rays[..., 2], rays[..., 1] / rays[..., 2], 'left',
                           'plumb_bob')
    np.testing.assert_allclose(maps.map_x[0:80:5, 0:100:5], (x_raw - x_off - 0.5) / 2,
                               atol=2e-3)
    np.testing.assert_allclose(maps.map_y[0:80:5, 0:100:5], (y_raw - y_off - 0.5) / 2,
                               atol=2e-3)


def test_rectified_camera_info(scene):
    info = raw_info(scene, 'right', 'equidistant', binning=2, roi=(40, 20, 200, 160))
    rectified = rectified_camera_info(info)
    p = np.array(info.p).reshape(3, 4)
    np.testing.assert_array_equal(np.array(rectified.k).reshape(3, 3), p[:, :3])
    assert list(rectified.d) == [0.0] * 5 and rectified.distortion_model == 'plumb_bob'
    np.testing.assert_array_equal(np.array(rectified.r).reshape(3, 3), np.eye(3))
    np.testing.assert_array_equal(rectified.p, info.p)
    assert (rectified.binning_x, rectified.roi.x_offset, rectified.roi.width) == (2, 40, 200)
    assert rectified.header.frame_id == 'right_optical'
    assert info.distortion_model == 'equidistant'  # the input is left alone


def test_maps_are_cached_until_the_camera_info_changes(scene):
    rectifier = StereoRectifier()
    info = raw_info(scene, 'left', 'plumb_bob')
    first = rectifier.maps(info, 'left')[0]
    assert rectifier.maps(raw_info(scene, 'left', 'plumb_bob'), 'left')[0] is first
    changed = raw_info(scene, 'left', 'plumb_bob')
    changed.d = [-0.2, 0.03, 0.0008, -0.0005, 0.0]
    second = rectifier.maps(changed, 'left')[0]
    assert second is not first
    assert not np.allclose(second.map_x, first.map_x)
    roi = rectifier.maps(raw_info(scene, 'left', 'plumb_bob', roi=(0, 0, 160, 120)), 'left')[0]
    assert roi.size == (160, 120)


def scaled_rotation():
    return (2.0 * rotation('left')).ravel().tolist()


def reflection():
    return (rotation('left') @ np.diag([1.0, 1.0, -1.0])).ravel().tolist()


@pytest.mark.parametrize('field, value, match', [
    ('distortion_model', 'kannala_brandt',
     "distortion_model 'kannala_brandt' cannot be rectified here; supported: plumb_bob, "
     + 'rational_polynomial, equidistant'),
    ('distortion_model', '', 'names no distortion_model.*rectify:=false'),
    ('d', [-0.1, 0.02, 0.0, 0.0], 'D has 4 coefficient.*plumb_bob needs 5.*k1 k2 t1 t2 k3'),
    ('d', [-0.1, 0.02, 0.0, 0.0, math.nan], 'plumb_bob needs 5 finite'),
    ('r', [0.0] * 9, 'R is all zeros.*calibrate the stereo pair'),
    ('r', scaled_rotation, r'R is not a rotation \(R R\^T differs from the identity by up to 3'),
    ('r', reflection, r'R is not a rotation .*det R = -1'),
    ('r', [1.0, 0.0, 0.0], 'R has 3 values, expected 9; fix the calibration file or rectify'),
    ('k', [0.0] * 9, 'K has a non-positive focal length'),
])
def test_bad_calibration_says_what_to_fix(scene, field, value, match):
    info = raw_info(scene, 'left', 'plumb_bob')
    setattr(info, field, value() if callable(value) else value)
    with pytest.raises(CameraInfoError, match=match):
        StereoRectifier().rectify(np.zeros((H, W, 3), np.uint8), np.zeros((H, W, 3), np.uint8),
                                  info, raw_info(scene, 'right', 'plumb_bob'))


def test_image_size_must_match_camera_info(scene):
    infos = raw_info(scene, 'left', 'plumb_bob'), raw_info(scene, 'right', 'plumb_bob')
    small = np.zeros((H // 2, W // 2, 3), np.uint8)
    with pytest.raises(CameraInfoError, match='left raw images are 160x120 but CameraInfo says '
                                              '320x240.*look binned'):
        StereoRectifier().rectify(small, small, *infos)


@pytest.mark.parametrize('factor, says', [
    (2, ("P's principal point (319.5, 239.5) lies far from K's (165, 116) on the 320x240 "
         'images, so P is for another resolution (its principal point suggests about '
         '640x480)')),
    (3, ('the principal point (479.5, 359.5) lies outside the 320x240 images, so P is for '
         'another resolution (its principal point suggests about 960x720)')),
])
def test_projection_of_another_resolution_is_warned_about(scene, caplog, factor, says):
    """P of a rectification at 2x or 3x the images' size: warned once per CameraInfo."""
    info = raw_info(scene, 'left', 'plumb_bob')
    p = list(info.p)
    # Pixel centres: c' = f * (c + 0.5) - 0.5 at f times the resolution.
    p[2], p[6] = factor * (p[2] + 0.5) - 0.5, factor * (p[6] + 0.5) - 0.5
    info.p = p
    rectifier = StereoRectifier()
    with caplog.at_level(logging.WARNING, logger='foundation_stereo_ros'):
        for _ in range(3):
            rectifier.maps(info, 'left')
        rectifier.maps(raw_info(scene, 'left', 'plumb_bob'), 'left')  # this one is fine
    (record,) = caplog.records
    assert record.getMessage().startswith(f'the left CameraInfo: {says}'), record.getMessage()

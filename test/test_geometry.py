"""Disparity / depth / points against the official post-processing and an analytic plane.

The geometry works on tensors; the expected values are numpy arrays, so the helpers below
wrap each call (numpy in, numpy out).
"""
import math

import numpy as np
import pytest
import torch
from conftest import DATA_DIR

from foundation_stereo_ros import geometry
from foundation_stereo_ros.camera import StereoCamera

GOLDEN = np.load(DATA_DIR / 'utils_postprocess.npz')


def invisible_mask(disp, doffs=0.0):
    return geometry.invisible_mask(torch.from_numpy(disp), doffs).numpy()


def disparity_to_depth(disp, camera):
    return geometry.disparity_to_depth(torch.from_numpy(disp), camera).numpy()


def depth_to_points(depth, camera):
    return geometry.depth_to_points(torch.from_numpy(depth), camera).numpy()


def apply_z_range(depth, z_near, z_far):
    return geometry.apply_z_range(torch.from_numpy(depth), z_near, z_far).numpy()


@pytest.fixture(scope='module')
def golden_camera():
    """Return the official demo's camera.

    K.txt scaled by 0.1 the official way (``K[:2] *= scale``).
    """
    k = GOLDEN['K_scaled']
    return StereoCamera(width=96, height=54, fx=k[0, 0], fy=k[1, 1], cx=k[0, 2], cy=k[1, 2],
                        baseline=float(GOLDEN['baseline']))


def our_depth(camera):
    disp = GOLDEN['disp'].copy()
    disp[invisible_mask(disp)] = np.nan  # the pipeline's remove_invisible step
    return disparity_to_depth(disp, camera)


def test_invisible_mask_matches_official():
    mask = invisible_mask(GOLDEN['disp'])
    assert mask.dtype == bool
    np.testing.assert_array_equal(mask, GOLDEN['invisible'])
    assert mask.any() and not mask.all()


def test_depth_matches_official(golden_camera):
    depth = our_depth(golden_camera)
    official = GOLDEN['depth']
    assert depth.dtype == np.float32 and depth.shape == official.shape
    # official: 0 where invisible (disp = inf), inf where disp == 0, negative where disp < 0
    official_invalid = GOLDEN['invisible'] | (GOLDEN['disp'] <= 0)
    assert official_invalid.any()
    np.testing.assert_array_equal(np.isnan(depth), official_invalid)
    np.testing.assert_array_equal(official_invalid, ~np.isfinite(official) | (official <= 0))
    valid = ~official_invalid
    np.testing.assert_allclose(depth[valid], official[valid], atol=1e-5, rtol=1e-6)


def test_points_match_official(golden_camera):
    points = depth_to_points(our_depth(golden_camera), golden_camera)
    official = GOLDEN['xyz_map']
    depth = GOLDEN['depth']
    assert points.dtype == np.float32 and points.shape == (54, 96, 3)
    # official depth2xyzmap zeroes depth < zmin=0.1 and keeps inf/negative-free rest
    official_valid = np.isfinite(depth) & (depth >= 0.1)
    np.testing.assert_array_equal(np.isfinite(points).all(-1), official_valid)
    np.testing.assert_array_equal(np.isnan(points).all(-1), ~official_valid)
    np.testing.assert_allclose(points[official_valid], official[official_valid],
                               atol=1e-5, rtol=1e-6)


def test_z_range_matches_official_keep_mask(golden_camera):
    depth = our_depth(golden_camera)
    # official: keep 0 < z <= z_far on the xyz map, whose z is 0 below zmin = 0.1
    kept = apply_z_range(depth, 0.1, float(GOLDEN['z_far']))
    np.testing.assert_array_equal(~np.isnan(kept).ravel(), GOLDEN['keep_mask'])
    assert GOLDEN['keep_mask'].sum() < (~np.isnan(depth)).sum()  # z_far really removes points


# ---------------------------------------------------------------------- analytic plane

def plane_scene():
    """Make a fronto-parallel-tilted plane Z(u, v) = 2 + 0.004 u + 0.002 v seen by a known pair."""
    camera = StereoCamera(width=80, height=60, fx=90.0, fy=95.0, cx=41.3, cy=28.7,
                          baseline=0.25, cx_right=37.3)
    v, u = np.mgrid[0:60, 0:80].astype(np.float64)
    z = 2.0 + 0.004 * u + 0.002 * v
    disp = camera.fx_baseline / z  # DisparityImage convention: independent of doffs
    return camera, u, v, z, disp.astype(np.float32)


def test_plane_depth_and_points():
    camera, u, v, z, disp = plane_scene()
    depth = disparity_to_depth(disp, camera)
    np.testing.assert_allclose(depth, z, rtol=1e-6)
    points = depth_to_points(depth, camera)
    np.testing.assert_allclose(points[..., 0], (u - camera.cx) * z / camera.fx, rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(points[..., 1], (v - camera.cy) * z / camera.fy, rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(points[..., 2], z, rtol=1e-6)
    # REP 103 optical frame: right of the principal point is +x, below it is +y
    assert points[0, -1, 0] > 0 and points[-1, 0, 1] > 0


def test_invisible_mask_uses_doffs():
    camera, _, _, _, disp = plane_scene()
    # raw right column x_r = x - d - doffs; with doffs = 4 the first few columns drop out
    x = np.arange(camera.width)
    expected = (x - disp - camera.doffs) < 0
    np.testing.assert_array_equal(invisible_mask(disp, camera.doffs), expected)
    assert invisible_mask(disp, camera.doffs).sum() > invisible_mask(disp).sum()


def test_invalid_disparities_give_nan_depth():
    camera, _, _, _, _ = plane_scene()
    disp = np.array([[0.0, -1.0, np.nan, np.inf, 1e-45, 10.0]], dtype=np.float32)
    depth = disparity_to_depth(disp, camera)
    assert np.isnan(depth[0, :5]).all()
    assert depth[0, 5] == pytest.approx(camera.fx_baseline / 10.0)


def test_depth_to_points_checks_size():
    camera, *_ = plane_scene()
    with pytest.raises(ValueError, match='compute the depth at the camera size'):
        depth_to_points(np.ones((10, 10), np.float32), camera)


def test_apply_z_range():
    camera, _, _, _z, disp = plane_scene()
    depth = disparity_to_depth(disp, camera)
    kept = apply_z_range(depth, 2.1, 2.3)
    inside = (depth >= 2.1) & (depth <= 2.3)
    assert inside.any() and not inside.all()
    np.testing.assert_array_equal(~np.isnan(kept), inside)
    np.testing.assert_array_equal(kept[inside], depth[inside])
    assert kept.dtype == np.float32


# ---------------------------------------------------------------------- tensor types

def test_output_types_and_batched_input(golden_camera):
    disp = torch.from_numpy(GOLDEN['disp'].copy())
    disp[3, 4] = math.nan
    mask = geometry.invisible_mask(disp)
    assert mask.dtype == torch.bool and not mask[3, 4]
    batched = geometry.invisible_mask(torch.stack((disp, disp + 100.0)))
    assert batched.shape == (2, 54, 96)
    assert torch.equal(batched[0], mask) and batched[1].sum() > mask.sum()

    depth = geometry.disparity_to_depth(disp, golden_camera)
    assert depth.dtype == torch.float32 and math.isnan(depth[3, 4].item())
    points = geometry.depth_to_points(depth, golden_camera)
    assert points.shape == (54, 96, 3) and points.dtype == torch.float32
    assert torch.isnan(points[3, 4]).all()


def test_torch_half_input_gives_float32_depth(golden_camera):
    disp = torch.tensor([[2.0, 0.0, 4.0]], dtype=torch.float16)
    camera = StereoCamera(width=3, height=1, fx=10.0, fy=10.0, cx=1.0, cy=0.0, baseline=0.1)
    depth = geometry.disparity_to_depth(disp, camera)
    assert depth.dtype == torch.float32
    assert depth[0, 0].item() == pytest.approx(0.5) and math.isnan(depth[0, 1].item())

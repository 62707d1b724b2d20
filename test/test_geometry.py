"""Disparity / depth / points against the official post-processing and an analytic plane."""
import math

import numpy as np
import pytest
import torch
from conftest import DATA_DIR

from foundation_stereo_ros import geometry
from foundation_stereo_ros.camera import StereoCamera

GOLDEN = np.load(DATA_DIR / 'utils_postprocess.npz')


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
    disp[geometry.invisible_mask(disp)] = np.nan  # the pipeline's remove_invisible step
    return geometry.disparity_to_depth(disp, camera)


def test_invisible_mask_matches_official():
    mask = geometry.invisible_mask(GOLDEN['disp'])
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
    points = geometry.depth_to_points(our_depth(golden_camera), golden_camera)
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
    kept = geometry.apply_z_range(depth, 0.1, float(GOLDEN['z_far']))
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
    depth = geometry.disparity_to_depth(disp, camera)
    np.testing.assert_allclose(depth, z, rtol=1e-6)
    points = geometry.depth_to_points(depth, camera)
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
    np.testing.assert_array_equal(geometry.invisible_mask(disp, camera.doffs), expected)
    assert geometry.invisible_mask(disp, camera.doffs).sum() > geometry.invisible_mask(disp).sum()


def test_invalid_disparities_give_nan_depth():
    camera, _, _, _, _ = plane_scene()
    disp = np.array([[0.0, -1.0, np.nan, np.inf, 1e-45, 10.0]], dtype=np.float32)
    depth = geometry.disparity_to_depth(disp, camera)
    assert np.isnan(depth[0, :5]).all()
    assert depth[0, 5] == pytest.approx(camera.fx_baseline / 10.0)


def test_depth_to_points_checks_size():
    camera, *_ = plane_scene()
    with pytest.raises(ValueError, match='resize the camera'):
        geometry.depth_to_points(np.ones((10, 10), np.float32), camera)


def test_valid_disparity_mask():
    disp = np.array([np.nan, -np.inf, 0.5, 1.0, 5.0, 9.0, 10.0, np.inf], dtype=np.float32)
    np.testing.assert_array_equal(geometry.valid_disparity_mask(disp, 1.0, 9.0),
                                  [0, 0, 0, 1, 1, 1, 0, 0])
    np.testing.assert_array_equal(geometry.valid_disparity_mask(disp, None, None),
                                  [0, 0, 1, 1, 1, 1, 1, 0])
    np.testing.assert_array_equal(geometry.valid_disparity_mask(disp, 1.0, None),
                                  [0, 0, 0, 1, 1, 1, 1, 0])


def test_apply_z_range_and_disparity_range():
    camera, _, _, _z, disp = plane_scene()
    depth = geometry.disparity_to_depth(disp, camera)
    kept = geometry.apply_z_range(depth, 2.1, 2.3)
    inside = (depth >= 2.1) & (depth <= 2.3)
    assert inside.any() and not inside.all()
    np.testing.assert_array_equal(~np.isnan(kept), inside)
    np.testing.assert_array_equal(kept[inside], depth[inside])
    assert kept.dtype == np.float32
    d_min, d_max = geometry.disparity_range_for_depth(camera, 2.1, 2.3)
    assert (d_min, d_max) == (camera.fx_baseline / 2.3, camera.fx_baseline / 2.1)
    assert geometry.disparity_range_for_depth(camera, 0.0, math.inf) == (0.0, math.inf)
    with pytest.raises(ValueError, match='z_near < z_far'):
        geometry.disparity_range_for_depth(camera, 3.0, 2.0)


# ---------------------------------------------------------------------- torch == numpy

def test_torch_matches_numpy(golden_camera):
    disp = GOLDEN['disp'].copy()
    disp[3, 4] = np.nan
    disp_t = torch.from_numpy(disp)

    mask = geometry.invisible_mask(disp_t)
    assert isinstance(mask, torch.Tensor) and mask.dtype == torch.bool
    np.testing.assert_array_equal(mask.numpy(), geometry.invisible_mask(disp))

    valid = geometry.valid_disparity_mask(disp_t, 0.5, 30.0)
    np.testing.assert_array_equal(valid.numpy(), geometry.valid_disparity_mask(disp, 0.5, 30.0))

    depth_t = geometry.disparity_to_depth(disp_t, golden_camera)
    depth = geometry.disparity_to_depth(disp, golden_camera)
    assert depth_t.dtype == torch.float32
    np.testing.assert_array_equal(depth_t.numpy(), depth)

    points_t = geometry.depth_to_points(depth_t, golden_camera)
    assert points_t.shape == (54, 96, 3) and points_t.dtype == torch.float32
    np.testing.assert_allclose(points_t.numpy(), geometry.depth_to_points(depth, golden_camera),
                               rtol=1e-6, atol=1e-7, equal_nan=True)

    kept_t = geometry.apply_z_range(depth_t, 0.2, 5.0)
    np.testing.assert_array_equal(kept_t.numpy(), geometry.apply_z_range(depth, 0.2, 5.0))


def test_torch_half_input_gives_float32_depth(golden_camera):
    disp = torch.tensor([[2.0, 0.0, 4.0]], dtype=torch.float16)
    camera = StereoCamera(width=3, height=1, fx=10.0, fy=10.0, cx=1.0, cy=0.0, baseline=0.1)
    depth = geometry.disparity_to_depth(disp, camera)
    assert depth.dtype == torch.float32
    assert depth[0, 0].item() == pytest.approx(0.5) and math.isnan(depth[0, 1].item())

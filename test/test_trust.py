"""The trust filters against hand-built cases, independent numpy loops and a k-d-tree oracle."""
import math

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from foundation_stereo_ros import geometry, trust
from foundation_stereo_ros.synthetic.scenes import make_scene

NAN = math.nan


# --------------------------------------------------------------------------------------------
# left_right_check


def _lr_reference(disp_left: np.ndarray, disp_right: np.ndarray, max_diff: float):
    """Pixel-by-pixel reading of the documented rule (independent of the torch code)."""
    height, width = disp_left.shape
    keep = np.zeros((height, width), bool)
    agreement = np.zeros((height, width), np.float32)
    for y in range(height):
        for x in range(width):
            d = disp_left[y, x]
            if not np.isfinite(d):
                continue
            x_right = x - d
            if not -0.5 <= x_right <= width - 0.5:
                continue
            c = min(max(int(np.rint(x_right)), 0), width - 1)
            gap = abs(d - disp_right[y, c])
            if not np.isfinite(gap):
                continue
            keep[y, x] = gap <= max_diff
            agreement[y, x] = max(0.0, 1.0 - gap / max_diff)
    return keep, agreement


def test_left_right_check_constant_plane_agrees_everywhere_it_can():
    width = 20
    left = torch.full((2, width), 4.0)
    right = torch.full((2, width), 4.0)
    keep, agreement = trust.left_right_check(left, right, 1.0)
    # x - 4 < -0.5 for x < 4: the match falls left of the right image.
    expected = torch.arange(width) >= 4
    assert torch.equal(keep, expected.expand(2, width))
    assert torch.equal(agreement, expected.float().expand(2, width))
    assert keep.dtype == torch.bool and agreement.dtype == torch.float32


def test_left_right_check_occlusion_and_partial_agreement():
    # A foreground (d = 6) in front of a background (d = 2) on one row. The right view sees
    # the foreground 6 px further left; the background just left of it in the left image is
    # hidden from the right camera: its match lands on foreground pixels.
    width = 30
    left = np.full((1, width), 2.0, np.float32)
    left[0, 15:22] = 6.0
    right = np.full((1, width), 2.0, np.float32)
    right[0, 9:16] = 6.0
    keep, agreement = trust.left_right_check(torch.from_numpy(left), torch.from_numpy(right),
                                             1.0)
    keep = keep.numpy()[0]
    # x = 11..14 (background) land on right x 9..12 (foreground): disagreement of 4 px.
    assert not keep[11:15].any()
    assert keep[15:22].all() and keep[3:11].all() and keep[22:].all()
    # A 0.5 px disagreement gives agreement 0.5 with max_diff 1.
    right_off = right.copy()
    right_off[0, 9:16] = 6.5
    keep, agreement = trust.left_right_check(torch.from_numpy(left),
                                             torch.from_numpy(right_off), 1.0)
    assert agreement[0, 15:22].numpy() == pytest.approx(0.5)
    assert keep[0, 15:22].all()


def test_left_right_check_invalid_inputs_are_dropped():
    left = torch.tensor([[NAN, 1.0, 1.0, 1.0, 1.0]])
    right = torch.tensor([[1.0, 1.0, NAN, NAN, 1.0]])
    keep, agreement = trust.left_right_check(left, right, 0.5)
    # x=0 invalid; x=1 -> right x 0 (valid); x=2 -> right 1; x=3, 4 -> right 2, 3 invalid.
    assert keep.tolist() == [[False, True, True, False, False]]
    assert agreement[0, 0] == 0 and agreement[0, 3] == 0 and agreement[0, 4] == 0


def test_left_right_check_matches_a_numpy_loop_on_random_disparities():
    rng = np.random.default_rng(3)
    shape = (2, 7, 41)
    left = rng.uniform(-2.0, 12.0, shape).astype(np.float32)
    right = left + rng.normal(0.0, 0.8, shape).astype(np.float32)
    left[rng.random(shape) < 0.1] = np.nan
    right[rng.random(shape) < 0.1] = np.nan
    keep, agreement = trust.left_right_check(torch.from_numpy(left), torch.from_numpy(right),
                                             1.5)
    assert keep.shape == shape
    for b in range(shape[0]):
        want_keep, want_agreement = _lr_reference(left[b], right[b], 1.5)
        np.testing.assert_array_equal(keep[b].numpy(), want_keep)
        np.testing.assert_allclose(agreement[b].numpy(), want_agreement, atol=1e-6)


def test_left_right_check_on_a_scene_rejects_occlusion_with_ground_truth_views():
    scene = make_scene(160, 120, seed=1)
    camera = scene.camera
    # The right view's exact disparity, from its own ray-cast depth.
    right = camera.fx * camera.baseline / scene.right_depth
    keep, _ = trust.left_right_check(torch.from_numpy(scene.disparity),
                                     torch.from_numpy(right.astype(np.float32)), 1.0)
    keep = keep.numpy()
    assert keep[~scene.occluded].mean() > 0.99
    assert (~keep[scene.occluded]).mean() > 0.95


def test_mirror_helpers_give_the_right_views_disparity():
    scene = make_scene(160, 120, seed=2)
    left = torch.from_numpy(scene.left).permute(2, 0, 1).float()
    right = torch.from_numpy(scene.right).permute(2, 0, 1).float()
    mirrored_left, mirrored_right = trust.right_view_pair(left, right)
    assert torch.equal(mirrored_left, right.flip(-1))
    assert torch.equal(mirrored_right, left.flip(-1))
    # The mirrored pair's exact left disparity, mirrored back, is the right view's disparity.
    camera = scene.camera
    mirrored_truth = torch.from_numpy(camera.fx * camera.baseline / scene.right_depth).flip(-1)
    np.testing.assert_allclose(trust.unmirror(mirrored_truth).numpy(),
                               camera.fx * camera.baseline / scene.right_depth)


@pytest.mark.parametrize('max_diff', [0.0, -1.0, NAN])
def test_left_right_check_rejects_a_bad_tolerance(max_diff):
    with pytest.raises(ValueError, match='max_diff must be a positive'):
        trust.left_right_check(torch.zeros(2, 2), torch.zeros(2, 2), max_diff)


def test_left_right_check_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match='same shape'):
        trust.left_right_check(torch.zeros(2, 3), torch.zeros(2, 4), 1.0)


# --------------------------------------------------------------------------------------------
# nan_where


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64, torch.float16])
def test_nan_where_is_torch_where_bit_for_bit(dtype):
    rng = np.random.default_rng(3)
    values = rng.normal(0.0, 50.0, (7, 11)).astype(np.float64)
    values.flat[:8] = [0.0, -0.0, math.inf, -math.inf, math.nan, 1e-30, -1e30, 6.5e4]
    x = torch.from_numpy(values).to(dtype)
    drop = torch.from_numpy(rng.random((7, 11)) < 0.4)
    drop[0, :8] = torch.tensor([True, False] * 4)
    before = x.clone()
    got = trust.nan_where(drop, x)
    expected = torch.where(drop, math.nan, x)
    assert got.dtype == dtype and got.shape == x.shape
    assert torch.equal(got.isnan(), expected.isnan())
    keep = ~expected.isnan()
    # Bit for bit where kept (-0.0 stays -0.0): compare the raw bits.
    bits = {torch.float16: torch.int16, torch.float32: torch.int32, torch.float64: torch.int64}
    assert torch.equal(got[keep].view(bits[dtype]), expected[keep].view(bits[dtype]))
    assert torch.equal(x.view(bits[dtype]), before.view(bits[dtype]))  # input left alone


def test_nan_where_broadcasts_a_pixel_mask_over_points():
    points = torch.arange(24, dtype=torch.float32).view(2, 4, 3)
    drop = torch.zeros(2, 4, dtype=torch.bool)
    drop[1, 2] = True
    got = trust.nan_where(drop[..., None], points)
    assert got[1, 2].isnan().all() and got.isnan().sum() == 3
    assert torch.equal(got[0], points[0])


# flying_pixel_mask


def _edge_reference(depth: np.ndarray, rtol: float, window: int) -> np.ndarray:
    """Pixel loop over the window, invalid neighbours left out."""
    height, width = depth.shape
    half = window // 2
    out = np.zeros((height, width), bool)
    for y in range(height):
        for x in range(width):
            z = depth[y, x]
            if not np.isfinite(z):
                continue
            patch = depth[max(0, y - half):y + half + 1, max(0, x - half):x + half + 1]
            patch = patch[np.isfinite(patch)]
            out[y, x] = (patch.max() - patch.min()) / z > rtol
    return out


def test_flying_pixel_mask_marks_both_sides_of_a_step_only():
    depth = torch.full((5, 10), 2.0)
    depth[:, 5:] = 3.0
    mask = trust.flying_pixel_mask(depth, 0.04)
    expected = torch.zeros(5, 10, dtype=torch.bool)
    expected[:, 4:6] = True
    assert torch.equal(mask, expected)
    # A gentle slope (1 % per pixel) stays.
    ramp = 2.0 * (1.0 + 0.01 * torch.arange(10.0)).expand(5, 10)
    assert not trust.flying_pixel_mask(ramp, 0.04).any()
    # A wider window reaches further.
    assert trust.flying_pixel_mask(depth, 0.04, window=5)[:, 3:7].all()


def test_flying_pixel_mask_ignores_invalid_neighbours_and_never_flags_invalid():
    depth = torch.full((4, 4), 2.0)
    depth[1, 1] = NAN
    depth[2, 2] = 100.0
    mask = trust.flying_pixel_mask(depth, 0.04)
    assert not mask[1, 1]
    assert mask[2, 2] and mask[1, 2] and not mask[0, 0]
    lone = torch.full((3, 3), NAN)
    lone[1, 1] = 5.0
    assert not trust.flying_pixel_mask(lone, 0.04).any()


def test_flying_pixel_mask_matches_a_numpy_loop():
    rng = np.random.default_rng(5)
    depth = rng.choice([1.0, 1.02, 1.5, 4.0], size=(3, 9, 13)).astype(np.float32)
    depth *= rng.uniform(0.99, 1.01, depth.shape).astype(np.float32)
    depth[rng.random(depth.shape) < 0.15] = np.nan
    for window in (3, 5):
        mask = trust.flying_pixel_mask(torch.from_numpy(depth), 0.04, window)
        assert mask.shape == depth.shape and mask.dtype == torch.bool
        for b in range(depth.shape[0]):
            np.testing.assert_array_equal(mask[b].numpy(), _edge_reference(depth[b], 0.04,
                                                                           window))


@pytest.mark.parametrize('rtol, window, message', [
    (0.0, 3, 'rtol must be a positive'), (0.04, 4, 'window must be an odd'),
    (0.04, 1, 'window must be an odd')])
def test_flying_pixel_mask_rejects_bad_arguments(rtol, window, message):
    with pytest.raises(ValueError, match=message):
        trust.flying_pixel_mask(torch.ones(4, 4), rtol, window)


# --------------------------------------------------------------------------------------------
# radius_outlier_mask


def _oracle_drop(points: np.ndarray, radius: float, min_neighbors: int) -> np.ndarray:
    """Exact radius count over the whole cloud (k-d tree), the same rule as Open3D's."""
    valid = np.isfinite(points).all(-1)
    cloud = points[valid].astype(np.float64)
    tree = cKDTree(cloud)
    # The count includes the point itself.
    count = tree.query_ball_point(cloud, radius, return_length=True) - 1
    drop = np.zeros(valid.shape, bool)
    drop[valid] = count < min_neighbors
    return drop


def _scene_cloud(seed: int, width: int = 96, height: int = 72):
    scene = make_scene(width, height, seed=seed, min_depth=0.5, max_depth=3.0)
    depth = torch.from_numpy(scene.depth)
    points = geometry.depth_to_points(depth, scene.camera).numpy()
    return scene, points


def test_radius_outlier_mask_hand_built():
    # A fronto-parallel 9x9 patch 1 m away with 1 cm spacing and one stray point.
    fx = fy = 100.0
    points = np.full((9, 9, 3), np.nan, np.float32)
    v, u = np.mgrid[0:9, 0:9]
    points[..., 0] = (u - 4) / fx
    points[..., 1] = (v - 4) / fy
    points[..., 2] = 1.0
    points[4, 4] = (0.04, 0.04, 4.0)   # a flying pixel, far from everything
    points[0, 0] = np.nan
    drop = trust.radius_outlier_mask(torch.from_numpy(points), 0.0151, 4, fx, fy).numpy()
    # Within 1.51 cm of a grid point: the 8 around it (diagonal 1.414 cm); a corner has 3,
    # an edge point 5 (the stray point and the NaN take neighbours away).
    np.testing.assert_array_equal(drop, _oracle_drop(points, 0.0151, 4))
    assert drop[4, 4] and not drop[0, 0] and drop[0, 8] and not drop[2, 2]


def test_radius_outlier_mask_agrees_with_a_kd_tree_on_scenes():
    rng = np.random.default_rng(0)
    for seed in (0, 3):
        scene, points = _scene_cloud(seed)
        # Scatter 2 % of the points along their rays (flying pixels) and drop 5 %.
        noisy = points.copy()
        flying = rng.random(points.shape[:2]) < 0.02
        noisy[flying] *= rng.uniform(0.7, 1.3, (flying.sum(), 1)).astype(np.float32)
        noisy[rng.random(points.shape[:2]) < 0.05] = np.nan
        camera = scene.camera
        drop = trust.radius_outlier_mask(torch.from_numpy(noisy), 0.03, 10, camera.fx,
                                         camera.fy).numpy()
        want = _oracle_drop(noisy, 0.03, 10)
        valid = np.isfinite(noisy).all(-1)
        agree = (drop == want)[valid].mean()
        assert agree > 0.99, agree
        # The organized search can only miss neighbours: it never keeps what the tree drops.
        assert not (want & ~drop).any()
        assert drop[flying & valid].mean() > 0.9


def test_radius_outlier_mask_edge_cases():
    empty = torch.full((4, 5, 3), NAN)
    assert not trust.radius_outlier_mask(empty, 0.03, 30, 500.0, 500.0).any()
    one = torch.full((4, 5, 3), NAN)
    one[2, 2] = torch.tensor([0.0, 0.0, 1.0])
    assert trust.radius_outlier_mask(one, 0.03, 1, 500.0, 500.0).tolist() == (
        (torch.arange(20).reshape(4, 5) == 12).tolist())
    assert not trust.radius_outlier_mask(one, 0.03, 0, 500.0, 500.0).any()


@pytest.mark.parametrize('kwargs, message', [
    ({'radius': 0.0}, 'radius must be a positive'),
    ({'min_neighbors': 2.5}, 'min_neighbors must be a whole number'),
    ({'fx': -1.0}, 'fx must be a positive'),
    ({'points': torch.zeros(4, 4)}, 'organized cloud'),
])
def test_radius_outlier_mask_rejects_bad_arguments(kwargs, message):
    arguments = {'points': torch.ones(4, 4, 3), 'radius': 0.03, 'min_neighbors': 30,
                 'fx': 500.0, 'fy': 500.0, **kwargs}
    with pytest.raises(ValueError, match=message):
        trust.radius_outlier_mask(**arguments)


def test_flying_pixel_mask_on_thin_images_leaves_the_input_alone():
    for shape in ((1, 1), (1, 6), (6, 1), (2, 2)):
        depth = torch.full(shape, 2.0)
        depth.view(-1)[-1] = 3.0
        before = depth.clone()
        mask = trust.flying_pixel_mask(depth, 0.04)
        assert torch.equal(depth, before)
        np.testing.assert_array_equal(mask.numpy(), _edge_reference(depth.numpy(), 0.04, 3))

"""Generated stereo scenes: exact ground truth, occlusion mask, determinism and files on disk."""
import cv2
import numpy as np
import pytest

from foundation_stereo_ros.calibration_files import load_k_file
from foundation_stereo_ros.camera import StereoCamera
from foundation_stereo_ros.synthetic.scenes import (
    StereoScene,
    make_scene,
    occlusion_mask,
    render_depth,
    render_image,
    render_rays,
    save_scene,
)


@pytest.fixture(scope='module')
def scenes() -> dict:
    """Make a few layouts, one of them with different principal points (doffs)."""
    return {(seed, doffs): make_scene(320, 240, seed=seed, doffs=doffs)
            for seed, doffs in ((0, 0.0), (1, 0.0), (2, 6.5))}


def _right_samples(scene: StereoScene, mask: np.ndarray):
    """Find the left pixels in ``mask`` and where their 3D point projects in the right image.

    Only those with both horizontal neighbours of that projection inside the image are kept.
    """
    camera = scene.camera
    depth_left, _ = render_depth(scene.surfaces, camera, 'left')
    ys, xs = np.nonzero(mask)
    z = depth_left[ys, xs]
    x_right = xs - camera.fx * camera.baseline / z - camera.doffs
    i0 = np.floor(x_right).astype(int)
    inside = (i0 >= 0) & (i0 + 1 < camera.width)
    return ys[inside], xs[inside], z[inside], x_right[inside], i0[inside]


def test_arrays_have_documented_types_and_shapes():
    scene = make_scene(200, 120, seed=4)
    assert isinstance(scene.camera, StereoCamera)
    assert (scene.camera.width, scene.camera.height) == (200, 120)
    assert scene.camera.fx == scene.camera.fy == pytest.approx(0.9 * 200)
    for image in (scene.left, scene.right):
        assert image.shape == (120, 200, 3) and image.dtype == np.uint8
    for array in (scene.disparity, scene.depth, scene.right_depth):
        assert array.shape == (120, 200) and array.dtype == np.float32
        assert np.isfinite(array).all()
    assert scene.occluded.shape == (120, 200) and scene.occluded.dtype == bool


def test_depth_range_and_disparity_convention():
    scene = make_scene(320, 240, seed=5, baseline=0.2, min_depth=1.5, max_depth=6.0, fx=300.0)
    camera = scene.camera
    assert camera.fx == 300.0 and camera.baseline == 0.2
    assert scene.depth.min() >= 1.5 * (1 - 1e-6) and scene.depth.max() <= 6.0 * (1 + 1e-6)
    # The nearest box touches min_depth, so disparities span a wide range.
    assert scene.depth.min() < 1.5 * 1.2
    np.testing.assert_allclose(scene.disparity, 300.0 * 0.2 / scene.depth, rtol=1e-6)


@pytest.mark.parametrize('key', [(0, 0.0), (1, 0.0), (2, 6.5)])
def test_left_depth_reprojects_exactly_onto_right_depth(scenes, key):
    """Each visible left point lands where the right camera's own ray casting sees it.

    On a plane inverse depth is affine in x, so interpolating it between the two right pixels
    around the projection is exact.
    """
    scene = scenes[key]
    camera = scene.camera
    depth_left, index_left = render_depth(scene.surfaces, camera, 'left')
    depth_right, index_right = render_depth(scene.surfaces, camera, 'right')
    np.testing.assert_array_equal(depth_left.astype(np.float32), scene.depth)
    np.testing.assert_array_equal(depth_right.astype(np.float32), scene.right_depth)

    ys, xs, z, x_right, i0 = _right_samples(scene, ~scene.occluded)
    same = ((index_right[ys, i0] == index_left[ys, xs])
            & (index_right[ys, i0 + 1] == index_left[ys, xs]))
    # Only pixels next to a depth edge in the right view may see another patch beside them.
    assert same.mean() > 0.98
    w = x_right - i0
    inverse = (1 - w) / depth_right[ys, i0] + w / depth_right[ys, i0 + 1]
    error_px = camera.fx * camera.baseline * np.abs(inverse - 1.0 / z)
    assert error_px[same].max() < 1e-6


@pytest.mark.parametrize('key', [(0, 0.0), (2, 6.5)])
def test_right_image_warped_by_gt_disparity_matches_left(scenes, key):
    scene = scenes[key]
    camera = scene.camera
    h, w = scene.disparity.shape
    map_x = (np.arange(w)[None, :] - scene.disparity - camera.doffs).astype(np.float32)
    map_y = np.repeat(np.arange(h, dtype=np.float32)[:, None], w, axis=1)
    warped = cv2.remap(scene.right, map_x, map_y, cv2.INTER_CUBIC).astype(np.float32)
    diff = np.abs(warped - scene.left.astype(np.float32)).max(axis=2)
    inside = (map_x >= 1) & (map_x <= w - 2)
    visible = ~scene.occluded & inside
    hidden = scene.occluded & inside
    # Sub-pixel exact texture: the residual is interpolation and rounding to uint8.
    assert np.median(diff[visible]) <= 1.0
    assert np.mean(diff[visible]) < 1.5
    # Hidden pixels see something else in the right view.
    assert np.mean(diff[hidden]) > 10 * np.mean(diff[visible])


@pytest.mark.parametrize('key', [(0, 0.0), (1, 0.0), (2, 6.5)])
def test_occlusion_mask_marks_points_the_right_camera_cannot_see(scenes, key):
    scene = scenes[key]
    camera = scene.camera
    assert 0.01 < scene.occluded.mean() < 0.3
    # Left border: points whose projection leaves the right image.
    xs = np.arange(camera.width)[None, :]
    x_right = xs - scene.disparity - camera.doffs
    np.testing.assert_array_equal(scene.occluded[x_right < -0.5], True)
    # Inside the right image, a hidden point has something nearer at its projection.
    depth_right, index_right = render_depth(scene.surfaces, camera, 'right')
    ys, xs, z, _, i0 = _right_samples(scene, scene.occluded)
    nearer = np.minimum(depth_right[ys, i0], depth_right[ys, i0 + 1]) < z * (1 - 1e-6)
    assert nearer.mean() > 0.995
    # A visible point's own patch is what the right camera sees beside its projection.
    _, index_left = render_depth(scene.surfaces, camera, 'left')
    ys, xs, z, _, i0 = _right_samples(scene, ~scene.occluded)
    own = index_left[ys, xs]
    seen = (index_right[ys, i0] == own) | (index_right[ys, i0 + 1] == own)
    assert seen.mean() > 0.999


def test_windowed_ray_casting_matches_brute_force():
    """Windowed ray casting agrees with a brute-force cast against every patch at every pixel.

    render_depth and occlusion_mask test each patch only inside its projected bounding box.
    """
    scene = make_scene(96, 64, seed=7, doffs=3.0)
    camera = scene.camera
    for eye, origin_x, cx in (('left', 0.0, camera.cx),
                              ('right', camera.baseline, camera.cx_right)):
        a = ((np.arange(camera.width) - cx) / camera.fx)[None, :]
        b = ((np.arange(camera.height) - camera.cy) / camera.fy)[:, None]
        hits = np.stack([s.intersect(origin_x, a, b) for s in scene.surfaces])
        depth, index = render_depth(scene.surfaces, camera, eye)
        np.testing.assert_array_equal(depth, hits.min(axis=0))
        np.testing.assert_array_equal(index, hits.argmin(axis=0))

    depth, index = render_depth(scene.surfaces, camera, 'left')
    a_right = (np.arange(camera.width) - camera.cx) / camera.fx - camera.baseline / depth
    b = ((np.arange(camera.height) - camera.cy) / camera.fy)[:, None]
    hits = np.stack([np.where(index == i, np.inf, s.intersect(camera.baseline, a_right, b))
                     for i, s in enumerate(scene.surfaces)])
    x_right = camera.fx * a_right + camera.cx_right
    expected = ((hits.min(axis=0) < depth * (1 - 1e-7)) | (x_right < -0.5)
                | (x_right > camera.width - 0.5))
    np.testing.assert_array_equal(occlusion_mask(scene.surfaces, camera, depth, index), expected)


def test_render_rays_through_pixel_centres_is_the_pinhole_render():
    """render_rays on the rectified camera's own rays gives its depth and image exactly."""
    scene = make_scene(96, 64, seed=7, doffs=3.0)
    camera = scene.camera
    for eye, origin_x, cx in (('left', 0.0, camera.cx),
                              ('right', camera.baseline, camera.cx_right)):
        a = ((np.arange(camera.width) - cx) / camera.fx)[None, :]
        b = ((np.arange(camera.height) - camera.cy) / camera.fy)[:, None]
        depth, colour = render_rays(scene.surfaces, origin_x, a, b)
        expected_depth, index = render_depth(scene.surfaces, camera, eye)
        np.testing.assert_array_equal(depth, expected_depth)
        np.testing.assert_allclose(colour, render_image(scene.surfaces, camera, expected_depth,
                                                        index, eye), atol=1e-3)


def test_same_seed_same_scene_other_seed_other_scene():
    first = make_scene(160, 120, seed=11, noise=2.0)
    again = make_scene(160, 120, seed=11, noise=2.0)
    other = make_scene(160, 120, seed=12, noise=2.0)
    for name in ('left', 'right', 'disparity', 'depth', 'occluded'):
        np.testing.assert_array_equal(getattr(first, name), getattr(again, name))
    assert not np.array_equal(first.depth, other.depth)
    assert not np.array_equal(first.left, other.left)


def test_noise_is_added_independently_to_each_view():
    clean = make_scene(160, 120, seed=3)
    noisy = make_scene(160, 120, seed=3, noise=4.0)
    np.testing.assert_array_equal(clean.depth, noisy.depth)
    for view in ('left', 'right'):
        diff = getattr(noisy, view).astype(float) - getattr(clean, view).astype(float)
        assert 3.0 < diff.std() < 5.0
    assert not np.array_equal(noisy.left - clean.left, noisy.right - clean.right)


def test_texture_is_rich_enough_to_match():
    """No flat areas: local contrast everywhere, so a matcher has something to lock onto."""
    scene = make_scene(320, 240, seed=0)
    grey = cv2.cvtColor(scene.left, cv2.COLOR_RGB2GRAY).astype(np.float32)
    mean = cv2.blur(grey, (7, 7))
    local_std = np.sqrt(np.maximum(cv2.blur(grey * grey, (7, 7)) - mean * mean, 0))
    assert np.percentile(local_std, 5) > 4.0


def test_save_scene_writes_official_demo_layout(tmp_path):
    scene = make_scene(160, 96, seed=1)
    out = save_scene(scene, tmp_path / 'scene')
    for name, image in (('left.png', scene.left), ('right.png', scene.right)):
        on_disk = cv2.imread(str(out / name), cv2.IMREAD_COLOR)
        np.testing.assert_array_equal(cv2.cvtColor(on_disk, cv2.COLOR_BGR2RGB), image)
    lines = (out / 'K.txt').read_text().splitlines()
    k = np.array(lines[0].split(), dtype=float).reshape(3, 3)
    np.testing.assert_array_equal(k, scene.camera.K)
    assert float(lines[1]) == scene.camera.baseline
    camera = load_k_file(out / 'K.txt', 160, 96)
    assert (camera.fx, camera.cx, camera.cy, camera.baseline) == (
        scene.camera.fx, scene.camera.cx, scene.camera.cy, scene.camera.baseline)
    np.testing.assert_array_equal(np.load(out / 'disparity_gt.npy'), scene.disparity)
    np.testing.assert_array_equal(np.load(out / 'depth_gt.npy'), scene.depth)
    np.testing.assert_array_equal(np.load(out / 'occluded_gt.npy'), scene.occluded)


def test_save_scene_refuses_a_right_principal_point_k_txt_cannot_hold(tmp_path):
    with pytest.raises(ValueError, match='cx_right'):
        save_scene(make_scene(64, 48, seed=0, doffs=2.0), tmp_path)


@pytest.mark.parametrize('kwargs, message', [
    ({'min_depth': 5.0, 'max_depth': 2.0}, 'min_depth'),
    ({'baseline': 0.0}, 'baseline'),
    ({'noise': -1.0}, 'noise'),
    ({'fx': -10.0}, 'fx'),
    ({'width': 8}, 'size'),
])
def test_bad_arguments_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_scene(**kwargs)


def test_score_against_ground_truth():
    scene = make_scene(96, 64, seed=2)
    perfect = scene.score(np.where(scene.occluded, np.nan, scene.disparity))
    assert perfect == {'coverage': 1.0, 'bad1': 0.0, 'bad3': 0.0, 'mae': 0.0,
                       'hidden_estimated': 0.0}
    shifted = scene.score(scene.disparity + 2.0)
    assert shifted['bad1'] == 1.0 and shifted['bad3'] == 0.0
    assert shifted['mae'] == pytest.approx(2.0) and shifted['hidden_estimated'] == 1.0
    nothing = scene.score(np.full_like(scene.disparity, np.nan))
    assert nothing['coverage'] == 0.0 and nothing['bad1'] == 1.0

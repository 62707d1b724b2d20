"""PairDecoder: the camera follows binning and ROI (REP 104), checked against scene ground truth.

A scene is rendered at the sensor's full resolution; a camera with a ROI sends a crop of it, a
binning camera the mean of each block of sensor pixels. The ground truth for those images comes
from the full scene (the crop of its depth) or from ray casting through the centres of the
blocks, worked out here from the sensor geometry, not from the code under test.
"""
import cv2
import numpy as np
import pytest

from foundation_stereo_ros.backends import make_backend
from foundation_stereo_ros.camera import StereoCamera
from foundation_stereo_ros.pipeline import StereoPipeline
from foundation_stereo_ros.ros import conversions
from foundation_stereo_ros.ros.stereo_io import (
    PairDecoder,
    PairError,
    StereoSetProcessor,
    process_sets,
)
from foundation_stereo_ros.ros.synthetic_camera import scene_to_messages
from foundation_stereo_ros.synthetic.scenes import make_scene, render_depth

FULL_W, FULL_H = 320, 240
ROI = (64, 32, 192, 160)  # x_offset, y_offset, width, height in sensor pixels


@pytest.fixture(scope='module')
def scene():
    return make_scene(FULL_W, FULL_H, seed=5, min_depth=1.5, max_depth=8.0)


@pytest.fixture(scope='module')
def pipeline():
    return StereoPipeline(make_backend('sgbm', num_disparities=64))


def full_frame(scene):
    return list(scene_to_messages(scene, 'rgb8', 'left_cam', 'right_cam'))


def with_roi(messages, scene, roi, binning=1):
    """Make the four messages of a camera sending ``roi`` (sensor pixels), binned."""
    _, left_info, _, right_info = messages
    x, y, w, h = roi
    out = []
    for rgb, info in ((scene.left, left_info), (scene.right, right_info)):
        crop = rgb[y:y + h, x:x + w]
        if binning > 1:
            # Each output pixel is the mean of a binning x binning block (what sensors do);
            # INTER_AREA with an integer factor computes exactly that mean.
            crop = cv2.resize(crop, (w // binning, h // binning), interpolation=cv2.INTER_AREA)
        image = conversions.array_to_image(np.ascontiguousarray(crop), 'rgb8')
        image.header.frame_id = info.header.frame_id
        new_info = type(info)()
        new_info.header.frame_id = info.header.frame_id
        new_info.width, new_info.height = info.width, info.height
        new_info.k, new_info.p, new_info.r, new_info.d = info.k, info.p, info.r, info.d
        new_info.distortion_model = info.distortion_model
        new_info.binning_x = new_info.binning_y = binning
        new_info.roi.x_offset, new_info.roi.y_offset = x, y
        new_info.roi.width, new_info.roi.height = w, h
        out += [image, new_info]
    return out


def column_of_points(points, camera):
    """Image column each point projects to with ``camera``'s intrinsics: u = fx X / Z + cx."""
    with np.errstate(invalid='ignore'):
        return camera.fx * points[..., 0] / points[..., 2] + camera.cx


def test_roi_camera_info_after_full_frames_on_one_decoder(scene):
    """Same K/P, new ROI: the decoder must rebuild the camera, not reuse the full-frame one."""
    decoder = PairDecoder()
    full = full_frame(scene)
    _, _, camera = decoder.decode(*full)
    assert (camera.width, camera.height) == (FULL_W, FULL_H)
    left, _, camera = decoder.decode(*with_roi(full, scene, ROI))
    assert left.shape == (ROI[3], ROI[2], 3)
    assert (camera.width, camera.height) == (ROI[2], ROI[3])
    assert camera.cx == pytest.approx(scene.camera.cx - ROI[0])
    assert camera.cy == pytest.approx(scene.camera.cy - ROI[1])


def test_binning_camera_info_after_full_frames_on_one_decoder(scene):
    decoder = PairDecoder()
    full = full_frame(scene)
    decoder.decode(*full)
    binned = with_roi(full, scene, (0, 0, FULL_W, FULL_H), binning=2)
    left, _, camera = decoder.decode(*binned)
    assert left.shape == (FULL_H // 2, FULL_W // 2, 3)
    assert (camera.width, camera.height) == (FULL_W // 2, FULL_H // 2)
    assert camera.fx == pytest.approx(scene.camera.fx / 2)


def test_roi_offset_change_moves_the_cloud(scene, pipeline):
    """Two ROIs of one size at different offsets: the second cloud must use its own offset."""
    decoder = PairDecoder()
    full = full_frame(scene)
    first = (0, 0) + ROI[2:]
    decoder.decode(*with_roi(full, scene, first))
    left, right, camera = decoder.decode(*with_roi(full, scene, ROI))
    result = pipeline.process(left, right, camera)
    x, y, w, h = ROI
    depth_gt = scene.depth[y:y + h, x:x + w]
    visible = ~scene.occluded[y:y + h, x:x + w]
    good = np.isfinite(result.depth) & visible
    assert good.mean() > 0.5
    # Disparity from the cropped pair matches the full scene's ground truth.
    error = np.abs(result.disparity - scene.disparity[y:y + h, x:x + w])[good]
    assert np.median(error) < 0.3
    # Each point lies on the ray of its sensor pixel: column x + u of the full image.
    u_sensor = column_of_points(result.points, scene.camera)[good]
    columns = np.broadcast_to(np.arange(w) + x, (h, w))[good]
    np.testing.assert_allclose(u_sensor, columns, atol=1e-3)
    # Lateral position against ground truth: X = (u - cx) Z / fx with the sensor's cx.
    x_gt = (columns - scene.camera.cx) * depth_gt[good] / scene.camera.fx
    lateral = np.abs(result.points[..., 0][good] - x_gt)
    assert np.median(lateral) < 0.02


def test_binned_roi_cloud_lies_on_the_rays_of_the_block_centres(scene, pipeline):
    """2x2 binning with a ROI, against ray casting through the centres of the sensor blocks."""
    decoder = PairDecoder()
    left, right, camera = decoder.decode(*with_roi(full_frame(scene), scene, ROI, binning=2))
    x, y, w, h = ROI
    # Binned pixel (u, v) averages sensor pixels x + 2u .. x + 2u + 1: its centre is sensor
    # column x + 2u + 0.5, so in binned pixels the sensor's cx lies at (cx - x - 0.5) / 2.
    full = scene.camera
    truth_camera = StereoCamera(width=w // 2, height=h // 2, fx=full.fx / 2, fy=full.fy / 2,
                                cx=(full.cx - x - 0.5) / 2, cy=(full.cy - y - 0.5) / 2,
                                baseline=full.baseline)
    # Same camera centre, another pixel grid: ray-cast the scene through it.
    depth_gt, _ = render_depth(scene.surfaces, truth_camera)
    result = pipeline.process(left, right, camera)
    good = np.isfinite(result.depth)
    assert good.mean() > 0.5
    disparity_gt = truth_camera.fx * truth_camera.baseline / depth_gt
    assert np.median(np.abs(result.disparity - disparity_gt)[good]) < 0.3
    u = column_of_points(result.points, truth_camera)[good]
    columns = np.broadcast_to(np.arange(w // 2), (h // 2, w // 2))[good]
    np.testing.assert_allclose(u, columns, atol=1e-3)
    with np.errstate(invalid='ignore'):
        v = truth_camera.fy * result.points[..., 1] / result.points[..., 2] + truth_camera.cy
    rows = np.broadcast_to(np.arange(h // 2)[:, None], (h // 2, w // 2))[good]
    np.testing.assert_allclose(v[good], rows, atol=1e-3)


@pytest.mark.parametrize('case, words', [
    ('full_frames_with_roi_info', ['ROI 192x160 at (64, 32)', 'full frames']),
    ('unbinned_roi_images', ['binning 2x2', 'ROI size without the binning']),
    ('binned_full_frames', ['ROI', 'binned full frames']),
    ('binned_without_info', ['look binned', 'binning_x']),
])
def test_size_mismatch_names_binning_and_roi(scene, case, words):
    decoder = PairDecoder()
    full = full_frame(scene)
    if case == 'full_frames_with_roi_info':
        infos = with_roi(full, scene, ROI)
        messages = [full[0], infos[1], full[2], infos[3]]
    elif case == 'unbinned_roi_images':
        images = with_roi(full, scene, ROI)
        infos = with_roi(full, scene, ROI, binning=2)
        messages = [images[0], infos[1], images[2], infos[3]]
    elif case == 'binned_full_frames':
        images = with_roi(full, scene, (0, 0, FULL_W, FULL_H), binning=2)
        infos = with_roi(full, scene, ROI, binning=2)
        messages = [images[0], infos[1], images[2], infos[3]]
    else:
        images = with_roi(full, scene, (0, 0, FULL_W, FULL_H), binning=2)
        messages = [images[0], full[1], images[2], full[3]]
    with pytest.raises(PairError) as error:
        decoder.decode(*messages)
    assert error.value.kind == 'info_size'
    for word in words:
        assert word in str(error.value)


def test_sets_of_several_cameras_share_a_batch_by_size(scene):
    """Two cameras of one size: one batch; a third of another size: its own; bad input: alone."""
    pipeline = StereoPipeline(make_backend('sgbm', num_disparities=64))
    batches = []
    original = pipeline.backend.compute_batch
    pipeline.backend.compute_batch = lambda left, right, **k: (
        batches.append(tuple(left.shape)) or original(left, right, **k))
    other = make_scene(FULL_W, FULL_H, fx=200.0, baseline=0.2, seed=9, min_depth=1.5)
    small = make_scene(160, 120, seed=4, min_depth=1.5)
    sets = {'a': full_frame(scene), 'b': full_frame(other), 'c': full_frame(small)}
    for name, messages in sets.items():
        messages[0].header.frame_id = f'{name}_left'
        messages[0].header.stamp.sec = ord(name)
    broken = full_frame(scene)
    broken[2] = conversions.array_to_image(np.zeros((10, 10, 3), np.uint8), 'rgb8')
    processors = [StereoSetProcessor(pipeline) for _ in range(4)]
    jobs = [(processors[0], sets['a'], ['disparity', 'depth/image_rect']),
            (processors[1], sets['c'], ['disparity']),
            (processors[2], broken, ['disparity']),
            (processors[3], sets['b'], ['disparity'])]
    outcomes = process_sets(pipeline, jobs)
    assert sorted(batches) == sorted([(2, 3, FULL_H, FULL_W), (1, 3, 120, 160)])
    assert isinstance(outcomes[2], PairError) and outcomes[2].event == 'bad_input'
    for outcome, name, truth in ((outcomes[0], 'a', scene), (outcomes[1], 'c', small),
                                 (outcomes[3], 'b', other)):
        d = outcome.messages['disparity']
        assert d.header.frame_id == f'{name}_left' and d.header.stamp.sec == ord(name)
        assert d.f == pytest.approx(truth.camera.fx) and d.t == pytest.approx(
            truth.camera.baseline, rel=1e-6)
        disparity = conversions.image_to_array(d.image)
        both = ~truth.occluded & np.isfinite(truth.disparity) & (disparity >= 0)
        assert np.median(np.abs(disparity[both] - truth.disparity[both])) < 0.5, name
    assert set(outcomes[0].messages) == {'disparity', 'depth/image_rect'}
    assert set(outcomes[3].messages) == {'disparity'}, 'each set gets what it asked for'

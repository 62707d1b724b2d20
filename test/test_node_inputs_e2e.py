"""The node over real DDS with raw cameras (rectify:=true) and compressed images.

The node runs as a subprocess (sgbm backend) and a test node plays generated scenes: raw views
rendered through a known lens distortion and rectifying rotation (see test_rectification), or
the rectified views as PNG/JPEG CompressedImage. Outputs are compared with the scene's ground
truth.
"""
from __future__ import annotations

import os

import cv2
import numpy as np
import pytest
from node_harness import NodeProcess, Rig, as_float_image, play_until_outputs, wait_until
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from stereo_msgs.msg import DisparityImage
from test_rectification import inside_both, raw_info, render_raw

from foundation_stereo_ros.rectification import RectificationMaps
from foundation_stereo_ros.ros import conversions
from foundation_stereo_ros.ros.synthetic_camera import camera_info_pair
from foundation_stereo_ros.synthetic.scenes import make_scene

NUM_DISPARITIES = 64
OUTPUTS = (('disparity', DisparityImage), ('depth/image_rect', Image),
           ('depth/camera_info', CameraInfo))


def start(namespace, params=(), remaps=()):
    args = ['-p', 'backend:=sgbm', '-p', f'num_disparities:={NUM_DISPARITIES}',
            '-r', f'__ns:={namespace}']
    for param in params:
        args += ['-p', param]
    for remap in remaps:
        args += ['-r', remap]
    return NodeProcess(*args)


def make_rig(context, namespace, inputs):
    """Make a Rig publishing on ``inputs`` ((topic, type) in INPUT_TOPICS order)."""
    rig = Rig(context, namespace)
    for pub in rig.pubs:
        rig.node.destroy_publisher(pub)
    rig.pubs = [rig.node.create_publisher(t, name, qos_profile_sensor_data)
                for name, t in inputs]
    for name, msg_type in OUTPUTS:
        rig.subscribe(name, msg_type)
    return rig


def disparity_errors(out, scene, mask):
    d = out['disparity']
    disparity = as_float_image(d.image)
    valid = disparity >= d.min_disparity
    good = valid & mask & ~scene.occluded
    return good, np.abs(disparity - scene.disparity)[good]


# ---------------------------------------------------------------------------------------------
# rectify:=true: raw images in, rectified outputs out


RAW_SCENE = {'seed': 2, 'min_depth': 1.0, 'max_depth': 6.0}


@pytest.fixture(scope='module')
def raw_scene():
    return make_scene(320, 240, **RAW_SCENE)


def test_rectify_raw_cameras_end_to_end(ros_context, raw_scene):
    namespace = f'/raw{os.getpid()}'
    node = start(namespace, ['rectify:=true'])
    rig = make_rig(ros_context, namespace, (
        ('left/image_raw', Image), ('left/camera_info', CameraInfo),
        ('right/image_raw', Image), ('right/camera_info', CameraInfo)))
    try:
        model = 'rational_polynomial'
        infos = [raw_info(raw_scene, side, model) for side in ('left', 'right')]
        images = [conversions.array_to_image(render_raw(raw_scene, side, model), 'rgb8')
                  for side in ('left', 'right')]
        for image, info in zip(images, infos):
            image.header.frame_id = info.header.frame_id
        frame = [images[0], infos[0], images[1], infos[1]]
        out = play_until_outputs(rig, frame, [name for name, _ in OUTPUTS], node)

        inside = inside_both(RectificationMaps.from_camera_info(info) for info in infos)
        good, error = disparity_errors(out, raw_scene, inside)
        assert good.sum() > 0.6 * inside.sum()
        assert np.median(error) < 0.3 and np.mean(error > 1.0) < 0.08
        depth = as_float_image(out['depth/image_rect'])
        np.testing.assert_allclose(np.median(depth[good] / raw_scene.depth[good]), 1.0,
                                   atol=0.01)
        # depth/camera_info is the rectified left camera: K from P, no distortion, R = I.
        info = out['depth/camera_info']
        cam = raw_scene.camera
        np.testing.assert_allclose(np.reshape(info.k, (3, 3)), cam.K)
        assert list(info.d) == [0.0] * 5 and info.distortion_model == 'plumb_bob'
        np.testing.assert_array_equal(np.reshape(info.r, (3, 3)), np.eye(3))
        assert info.header.frame_id == 'left_optical'
        assert out['disparity'].header.frame_id == 'left_optical'
    finally:
        rig.close()
        assert node.stop() == 0, node.output


def at_twice_the_resolution(info):
    """Return ``info`` with the P of a rectification at twice its resolution."""
    p = list(info.p)
    for index in (0, 3, 5):  # fx, Tx = -fx * B, fy
        p[index] *= 2.0
    p[2], p[6] = 2.0 * p[2] + 0.5, 2.0 * p[6] + 0.5  # pixel centres: c' = 2 (c + 0.5) - 0.5
    info.p = p
    return info


def test_rectify_with_a_projection_of_another_resolution_warns(ros_context, raw_scene):
    """A P made at 640x480 for 320x240 raw images: a warning naming P, and the node runs on."""
    namespace = f'/rawp{os.getpid()}'
    node = start(namespace, ['rectify:=true'])
    rig = make_rig(ros_context, namespace, (
        ('left/image_raw', Image), ('left/camera_info', CameraInfo),
        ('right/image_raw', Image), ('right/camera_info', CameraInfo)))
    try:
        model = 'plumb_bob'
        infos = [at_twice_the_resolution(raw_info(raw_scene, side, model))
                 for side in ('left', 'right')]
        images = [conversions.array_to_image(render_raw(raw_scene, side, model), 'rgb8')
                  for side in ('left', 'right')]
        frame = [images[0], infos[0], images[1], infos[1]]
        play_until_outputs(rig, frame, ['disparity'], node)
        assert node.wait_for('so P is for another resolution'), node.output
    finally:
        rig.close()
        assert node.stop() == 0, node.output
    assert "the left CameraInfo: P's principal point (319.5, 239.5) lies far from K's" \
        in node.output, node.output
    assert 'about 640x480' in node.output


# ---------------------------------------------------------------------------------------------
# image_transport:=compressed


@pytest.fixture(scope='module')
def scene():
    return make_scene(320, 240, seed=3)


def compressed_frame(scene, extension='.png'):
    left_info, right_info = camera_info_pair(scene.camera, 'left_cam', 'right_cam')
    frame = []
    for rgb, info in ((scene.left, left_info), (scene.right, right_info)):
        ok, data = cv2.imencode(extension, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        assert ok
        codec = 'png' if extension == '.png' else 'jpeg'
        msg = CompressedImage(format=f'rgb8; {codec} compressed bgr8', data=data.tobytes())
        msg.header.frame_id = info.header.frame_id
        frame += [msg, info]
    return frame


def test_compressed_images_end_to_end_with_remapped_image_topics(ros_context, scene):
    """image_transport's naming: the image topic is remapped, then '/compressed' is added."""
    namespace = f'/compressed{os.getpid()}'
    node = start(namespace, ['image_transport:=compressed'],
                 ['left/image_rect:=cam/left/image', 'right/image_rect:=cam/right/image'])
    rig = make_rig(ros_context, namespace, (
        ('cam/left/image/compressed', CompressedImage), ('left/camera_info', CameraInfo),
        ('cam/right/image/compressed', CompressedImage), ('right/camera_info', CameraInfo)))
    try:
        out = play_until_outputs(rig, compressed_frame(scene), [name for name, _ in OUTPUTS],
                                 node)
        visible = ~scene.occluded & np.isfinite(scene.disparity)
        good, error = disparity_errors(out, scene, visible)
        assert good.sum() / visible.sum() > 0.9
        assert np.median(error) < 0.5 and np.mean(error > 1.0) < 0.05
        assert out['disparity'].header.frame_id == 'left_cam'

        # JPEG too (lossy: a little less exact).
        out = play_until_outputs(rig, compressed_frame(scene, '.jpg'), ['disparity'], node)
        good, error = disparity_errors(out, scene, visible)
        assert good.sum() / visible.sum() > 0.85 and np.median(error) < 0.5

        # Undecodable data: a warning naming the cause, the pair skipped, the node goes on.
        broken = compressed_frame(scene)
        broken[0].data = bytes(broken[0].data)[:200]
        sent = [rig.publish(broken) for _ in range(3)]
        assert wait_until(lambda: 'does not decode as png' in node.output), node.output
        play_until_outputs(rig, compressed_frame(scene), ['disparity'], node)
        assert not any(rig.outputs_with_stamp(sec, ['disparity']) for sec in sent)
        assert 'cam/left/image/compressed' in node.output  # the startup line names the inputs
    finally:
        rig.close()
        assert node.stop() == 0, node.output

"""Tests of the synthetic stereo camera: messages, calibration, feeding the stereo node."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo, Image
from stereo_msgs.msg import DisparityImage

from foundation_stereo_ros.camera import StereoCamera
from foundation_stereo_ros.ros import conversions
from foundation_stereo_ros.ros.synthetic_camera import (
    SyntheticStereoCamera,
    camera_info_pair,
    scene_to_messages,
)
from foundation_stereo_ros.synthetic.scenes import make_scene

ROOT = Path(__file__).resolve().parent.parent
TOPICS = (('left/image_rect', Image), ('left/camera_info', CameraInfo),
          ('right/image_rect', Image), ('right/camera_info', CameraInfo))


@pytest.fixture(scope='module')
def scene():
    return make_scene(96, 64, seed=5, doffs=3.0, baseline=0.2)


@pytest.mark.parametrize('encoding', ['rgb8', 'bgr8', 'mono8'])
def test_scene_messages_round_trip(scene, encoding):
    left, left_info, right, right_info = scene_to_messages(scene, encoding, 'l_frame', 'r_frame')
    assert left.encoding == right.encoding == encoding
    assert (left.width, left.height) == (96, 64)
    assert left.header.frame_id == left_info.header.frame_id == 'l_frame'
    assert right.header.frame_id == right_info.header.frame_id == 'r_frame'
    expected = scene.left
    if encoding == 'mono8':
        expected = cv2.cvtColor(cv2.cvtColor(scene.left, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    assert np.array_equal(conversions.image_to_rgb8(left), expected)


def test_camera_info_pair_is_rectified_with_baseline(scene):
    cam = scene.camera
    left, right = camera_info_pair(cam, 'l', 'r')
    assert right.p[3] == pytest.approx(-cam.fx * cam.baseline)
    assert left.p[3] == 0.0
    assert right.p[2] == pytest.approx(cam.cx - 3.0) and left.p[2] == pytest.approx(cam.cx)
    assert (left.p[0], left.p[5], left.p[6]) == (right.p[0], right.p[5], right.p[6])
    back = StereoCamera.from_camera_info(left, right)
    assert back.baseline == pytest.approx(cam.baseline)
    assert back.doffs == pytest.approx(3.0)
    assert (back.fx, back.cx, back.cy, back.width) == (cam.fx, cam.cx, cam.cy, cam.width)


def test_bad_encoding_rejected(scene):
    with pytest.raises(ValueError, match='rgb8'):
        scene_to_messages(scene, 'yuv422', 'l', 'r')


@pytest.fixture
def context():
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    yield ctx
    rclpy.try_shutdown(context=ctx)


def test_node_publishes_four_topics_with_one_stamp(context):
    ns = f'/synth{os.getpid()}'
    camera = SyntheticStereoCamera(context=context, namespace=ns, parameter_overrides=[
        Parameter('width', value=64), Parameter('height', value=48),
        Parameter('rate', value=50.0), Parameter('moving', value=True),
        Parameter('num_scenes', value=2), Parameter('encoding', value='bgr8')])
    listener = rclpy.create_node('listener', namespace=ns, context=context)
    received = {name: [] for name, _ in TOPICS}
    for name, msg_type in TOPICS:
        listener.create_subscription(msg_type, name, received[name].append,
                                     rclpy.qos.qos_profile_sensor_data)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(camera)
    executor.add_node(listener)
    deadline = time.monotonic() + 20.0
    try:
        while time.monotonic() < deadline and min(len(v) for v in received.values()) < 4:
            executor.spin_once(timeout_sec=0.05)
    finally:
        executor.shutdown()
        camera.destroy_node()
        listener.destroy_node()
    assert min(len(v) for v in received.values()) >= 4, {k: len(v) for k, v in received.items()}
    stamps = [{(m.header.stamp.sec, m.header.stamp.nanosec) for m in received[name]}
              for name, _ in TOPICS]
    common = set.intersection(*stamps)
    assert common, 'the four messages of a frame share one stamp'
    left = received['left/image_rect']
    assert left[0].encoding == 'bgr8' and (left[0].width, left[0].height) == (64, 48)
    assert received['left/camera_info'][0].header.frame_id == 'left_camera_optical_frame'
    assert received['right/camera_info'][0].p[3] < 0.0
    # moving: consecutive frames show different scenes
    assert bytes(left[0].data) != bytes(left[1].data)


def node_env():
    env = dict(os.environ)  # ROS_DOMAIN_ID and ROS_AUTOMATIC_DISCOVERY_RANGE from conftest
    env['PYTHONPATH'] = os.pathsep.join(p for p in (str(ROOT), env.get('PYTHONPATH')) if p)
    return env


def test_synthetic_camera_feeds_stereo_node(context):
    """What launch/synthetic_demo.launch.py starts: camera and stereo node in one namespace."""
    ns = f'/demo{os.getpid()}'
    camera = subprocess.Popen(
        [sys.executable, '-m', 'foundation_stereo_ros.synthetic.camera_node', '--ros-args',
         '--params-file', str(ROOT / 'config' / 'synthetic_camera.yaml'),
         '-p', 'width:=160', '-p', 'height:=120', '-p', 'num_scenes:=2', '-r', f'__ns:={ns}'],
        env=node_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    stereo = subprocess.Popen(
        [sys.executable, '-m', 'foundation_stereo_ros.node', '--ros-args',
         '--params-file', str(ROOT / 'config' / 'foundation_stereo.yaml'),
         '-p', 'backend:=sgbm', '-p', 'num_disparities:=48', '-r', f'__ns:={ns}'],
        env=node_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    listener = rclpy.create_node('listener', namespace=ns, context=context)
    got = []
    listener.create_subscription(DisparityImage, 'disparity', got.append, 10)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(listener)
    try:
        deadline = time.monotonic() + 30.0
        while not got and time.monotonic() < deadline:
            assert camera.poll() is None and stereo.poll() is None
            executor.spin_once(timeout_sec=0.1)
    finally:
        executor.shutdown()
        listener.destroy_node()
        outputs = []
        for proc in (camera, stereo):
            proc.send_signal(signal.SIGINT)
        for proc in (camera, stereo):
            try:
                outputs.append(proc.communicate(timeout=15)[0])
            except subprocess.TimeoutExpired:
                proc.kill()
                outputs.append(proc.communicate()[0])
    assert got, 'no disparity from the demo pair of nodes:\n' + '\n'.join(outputs)
    assert got[0].header.frame_id == 'left_camera_optical_frame'
    assert (got[0].image.width, got[0].image.height) == (160, 120)
    assert got[0].t == pytest.approx(0.12)
    assert camera.returncode == 0 and stereo.returncode == 0, outputs


def test_invalid_encoding_parameter_exits_with_reason():
    proc = subprocess.run(
        [sys.executable, '-m', 'foundation_stereo_ros.synthetic.camera_node', '--ros-args',
         '-p', 'encoding:=yuv422', '-p', 'width:=32', '-p', 'height:=32'],
        env=node_env(), capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 1
    assert 'encoding must be one of' in proc.stderr + proc.stdout
    assert 'Traceback' not in proc.stderr

"""Depth you can trust, end to end over DDS: the confidence topic, the filters, empty outputs.

The node runs as a subprocess (localhost, this run's ROS_DOMAIN_ID), played a generated scene
with exact ground truth by a test node. Every wait is on a condition, with a timeout.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from node_harness import (
    NETWORK_TIMEOUT,
    TIMEOUT,
    NodeProcess,
    Rig,
    as_float_image,
    diagnostics_of,
    play_until_outputs,
    wait_until,
)
from param_client import set_parameters as set_remote_parameters
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image
from test_node_e2e import (  # noqa: F401
    NUM_DISPARITIES,
    frame,
    scene,
)

from foundation_stereo_ros.ros.synthetic_camera import camera_info_pair

SGBM = ('-p', 'backend:=sgbm', '-p', f'num_disparities:={NUM_DISPARITIES}',
        '-p', 'diagnostics_period:=0.3')


def set_parameter(rig, namespace, name, value):
    (result,) = set_remote_parameters(rig.node, f'{namespace}/foundation_stereo',
                                      [Parameter(name, value=value)], timeout=TIMEOUT)
    assert result.successful, result.reason


def removed_shares(rig, namespace):
    """Return the 'removed ... (%)' values of the latest processing status that has them."""
    for array_msg in reversed(rig.messages('/diagnostics')):
        status, values = diagnostics_of(array_msg, 'processing', namespace)
        if status is not None and 'removed left right (%)' in values:
            return status, values
    return None, None


@pytest.fixture(scope='module')
def nodes():
    """Start two SGBM nodes: with the left-right check (and a former parameter name), without."""
    base = f'/trust{os.getpid()}'
    started = {
        'checked': NodeProcess(*SGBM, '-p', 'left_right_check:=true', '-p', 'lr_check:=true',
                               '-r', f'__ns:={base}checked'),
        'plain': NodeProcess(*SGBM, '-r', f'__ns:={base}plain'),
    }
    yield {name: (node, f'{base}{name}') for name, node in started.items()}
    for node in started.values():
        assert node.stop() == 0, node.output
        assert 'Traceback' not in node.output, node.output


def test_sgbm_with_the_left_right_check_publishes_confidence(
        nodes, ros_context, scene, frame):  # noqa: F811
    node, namespace = nodes['checked']
    rig = Rig(ros_context, namespace)
    try:
        for topic in ('confidence', 'depth/image_rect'):
            rig.subscribe(topic, Image)
        rig.subscribe('/diagnostics', DiagnosticArray)
        out = play_until_outputs(rig, frame, ['confidence', 'depth/image_rect'], node)
        conf_msg, depth_msg = out['confidence'], out['depth/image_rect']
        assert conf_msg.encoding == '32FC1' and conf_msg.header == depth_msg.header
        assert (conf_msg.width, conf_msg.height) == (scene.camera.width, scene.camera.height)
        confidence, depth = as_float_image(conf_msg), as_float_image(depth_msg)
        assert 0.0 <= confidence.min() and confidence.max() <= 1.0
        assert (confidence[~np.isfinite(depth)] == 0.0).all()
        # The check drops most pixels the right camera cannot see (ray-cast ground truth).
        assert np.isfinite(depth)[scene.occluded].mean() < 0.3
        assert wait_until(lambda: removed_shares(rig, namespace)[0] is not None,
                          action=lambda: rig.publish(frame)), node.output
        _, values = removed_shares(rig, namespace)
        assert float(values['removed left right (%)']) > 0.5
        assert float(values['removed invalid (%)']) > 0.5
        model = next(diagnostics_of(a, 'model', namespace)[1] for a in rig.messages(
            '/diagnostics') if diagnostics_of(a, 'model', namespace)[0])
        assert model['left_right_check'] == 'True' and model['edge_rtol'] == '0.0'

        # A threshold set at runtime drops the unsure pixels from the next pairs.
        set_parameter(rig, namespace, 'confidence_threshold', 0.9)
        rig.clear()
        sent = []

        def thresholded():
            got = play_outputs(rig, sent)
            if got is None:
                return False
            conf, dep = got
            return np.isfinite(dep).any() and not np.isfinite(dep[conf < 0.9]).any()

        assert wait_until(thresholded, action=lambda: sent.append(rig.publish(frame))), \
            node.output
    finally:
        rig.close()
    assert 'lr_check (did you mean left_right_check?)' in node.output


def play_outputs(rig, sent):
    for sec in reversed(sent):
        out = rig.outputs_with_stamp(sec, ['confidence', 'depth/image_rect'])
        if out:
            return as_float_image(out['confidence']), as_float_image(out['depth/image_rect'])
    return None


def test_no_confidence_and_an_empty_output_are_said_once(
        nodes, ros_context, scene, frame):  # noqa: F811
    node, namespace = nodes['plain']
    rig = Rig(ros_context, namespace)
    # The same scene with a baseline in millimetres: every depth beyond z_far.
    millimetres = dataclasses.replace(scene.camera, baseline=scene.camera.baseline * 1000.0)
    wrong = [frame[0], *camera_info_pair(millimetres, 'left_cam', 'right_cam')[:1], frame[2],
             camera_info_pair(millimetres, 'left_cam', 'right_cam')[1]]
    try:
        rig.subscribe('confidence', Image)
        rig.subscribe('depth/image_rect', Image)
        rig.subscribe('/diagnostics', DiagnosticArray)
        play_until_outputs(rig, frame, ['depth/image_rect'], node)
        assert node.wait_for('no confidence map: SGBM has no confidence of its own')
        for _ in range(3):
            play_until_outputs(rig, frame, ['depth/image_rect'], node)
        assert not rig.messages('confidence')
        assert node.output.count('no confidence map') == 1, node.output

        out = play_until_outputs(rig, wrong, ['depth/image_rect'], node)
        assert not np.isfinite(as_float_image(out['depth/image_rect'])).any()
        assert node.wait_for('millimetres'), node.output
        for _ in range(2):
            play_until_outputs(rig, wrong, ['depth/image_rect'], node)
        assert node.output.count('millimetres') == 1, node.output
        assert 'the z_range stage removed' in node.output
        assert 'z_far=100 m' in node.output

        def warned():
            status, _ = removed_shares(rig, namespace)
            return status is not None and 'z range stage removed' in status.message

        assert wait_until(warned, action=lambda: rig.publish(wrong)), node.output
    finally:
        rig.close()


def test_network_checkpoint_publishes_confidence(tmp_path, ros_context):
    """A seeded FoundationStereo checkpoint: the network's own confidence, over DDS."""
    from checkpoints import write_seeded_checkpoint
    from conftest import DATA_DIR

    from foundation_stereo_ros.camera import StereoCamera
    from foundation_stereo_ros.ros import conversions

    golden = np.load(DATA_DIR / 'golden_model_synth.npz')
    left, right = (np.ascontiguousarray(golden[k][0].transpose(1, 2, 0).astype(np.uint8))
                   for k in ('left', 'right'))
    camera = StereoCamera(width=96, height=64, fx=80.0, fy=80.0, cx=47.5, cy=31.5, baseline=0.1)
    info_left, info_right = camera_info_pair(camera, 'left_cam', 'r')
    net_frame = [conversions.array_to_image(left, 'rgb8'), info_left,
                 conversions.array_to_image(right, 'rgb8'), info_right]
    net_frame[0].header.frame_id = 'left_cam'
    checkpoint = write_seeded_checkpoint(tmp_path / 'vits')
    namespace = f'/netconf{os.getpid()}'
    node = NodeProcess('-p', 'backend:=foundation_stereo', '-p', f'checkpoint:={checkpoint}',
                       '-p', 'device:=cpu', '-p', 'valid_iters:=1', '-p', 'z_far:=1000.0',
                       '-p', 'remove_invisible:=false', '-r', f'__ns:={namespace}')
    rig = Rig(ros_context, namespace)
    try:
        rig.subscribe('confidence', Image)
        rig.subscribe('depth/image_rect', Image)
        out = play_until_outputs(rig, net_frame, ['confidence', 'depth/image_rect'], node,
                                 timeout=NETWORK_TIMEOUT)
    finally:
        rig.close()
        assert node.stop() == 0, node.output
    conf_msg = out['confidence']
    assert conf_msg.encoding == '32FC1' and (conf_msg.width, conf_msg.height) == (96, 64)
    assert conf_msg.header == out['depth/image_rect'].header
    confidence = as_float_image(conf_msg)
    assert np.isfinite(confidence).all()
    assert 0.0 <= confidence.min() and confidence.max() <= 1.0
    assert 'no confidence map' not in node.output

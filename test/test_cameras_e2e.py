"""Several cameras through one node over real DDS (``cameras:=[front,rear]``).

The node runs as a subprocess; one test node per camera publishes that camera's scene (its own
calibration, frame and stamps) in the camera's namespace and records its outputs. Checks that
each camera's outputs carry its own stamp, frame and calibration and match its ground truth,
that both share one backend, and that service stays fair, and follows a rate cap, when the
backend cannot keep up (the ``slow`` test backend). Batching is checked in test_stereo_io.py.
Every wait waits on a condition.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from node_harness import (
    NETWORK_TIMEOUT,
    NodeProcess,
    Rig,
    as_float_image,
    node_command,
    play_until_outputs,
    wait_until,
)
from sensor_msgs.msg import Image
from stereo_msgs.msg import DisparityImage
from test_node_e2e import (
    HEIGHT,
    NUM_DISPARITIES,
    WIDTH,
)

from foundation_stereo_ros.ros.synthetic_camera import scene_to_messages
from foundation_stereo_ros.synthetic.scenes import make_scene

CAMERAS = ('front', 'rear')


@pytest.fixture(scope='module')
def scenes():
    """Two cameras of one size with different calibrations and scenes."""
    return {'front': make_scene(WIDTH, HEIGHT, seed=3),
            'rear': make_scene(WIDTH, HEIGHT, fx=200.0, baseline=0.2, min_depth=1.0, seed=8)}


@pytest.fixture(scope='module')
def frames(scenes):
    return {name: list(scene_to_messages(scene, 'rgb8', f'{name}_left', f'{name}_right'))
            for name, scene in scenes.items()}


def start_node(namespace, *ros_args, **switches):
    return NodeProcess(command=node_command(
        '-p', f'num_disparities:={NUM_DISPARITIES}', '-p', 'cameras:=[front, rear]',
        '-p', 'diagnostics_period:=0.5', '-r', f'__ns:={namespace}', *ros_args), **switches)


def rigs_for(context, namespace):
    rigs = {name: Rig(context, f'{namespace}/{name}') for name in CAMERAS}
    rigs['front'].stamp_sec = 1000  # disjoint stamps: an output tells its camera by its stamp
    rigs['rear'].stamp_sec = 5000
    return rigs


def test_two_cameras_through_one_node(ros_context, scenes, frames):
    namespace = f'/cams{os.getpid()}'
    node = start_node(namespace, '-p', 'backend:=sgbm')
    rigs = rigs_for(ros_context, namespace)
    try:
        for rig in rigs.values():
            rig.subscribe('disparity', DisparityImage)
            rig.subscribe('depth/image_rect', Image)
        rigs['front'].subscribe('/diagnostics', DiagnosticArray)
        outputs = {name: play_until_outputs(rig, frames[name], ['disparity', 'depth/image_rect'],
                                            node)
                   for name, rig in rigs.items()}
        for name, out in outputs.items():
            scene, first = scenes[name], 1000 if name == 'front' else 5000
            d = out['disparity']
            assert first < d.header.stamp.sec < first + 4000, 'its own stamps'
            assert d.header.frame_id == f'{name}_left'
            assert out['depth/image_rect'].header.stamp == d.header.stamp
            assert d.f == pytest.approx(scene.camera.fx), 'its own calibration'
            assert d.t == pytest.approx(scene.camera.baseline, rel=1e-6)
            disparity = as_float_image(d.image)
            depth = as_float_image(out['depth/image_rect'])
            both = ~scene.occluded & np.isfinite(scene.disparity) & np.isfinite(depth)
            assert both.mean() > 0.5
            assert np.median(np.abs(disparity[both] - scene.disparity[both])) < 0.5
            rel = np.abs(depth[both] - scene.depth[both]) / scene.depth[both]
            assert np.median(rel) < 0.03, name
        # No output of one camera on the other's topics.
        assert all(m.header.stamp.sec >= 5000 for m in rigs['rear'].messages('disparity'))
        assert all(m.header.stamp.sec < 5000 for m in rigs['front'].messages('disparity'))

        # Per-camera statuses, one model status.
        def names():
            found = set()
            for array in rigs['front'].messages('/diagnostics'):
                found |= {s.name for s in array.status if s.name.startswith(namespace[1:])}
            return found

        prefix = f'{namespace[1:]}/foundation_stereo'
        expected = {f'{prefix}/{c}: {kind}' for c in CAMERAS for kind in ('input', 'processing')}
        assert wait_until(lambda: expected | {f'{prefix}: model'} <= names()), names()
        assert node.output.count('sgbm backend on cpu') == 1, 'one backend for both'
        assert '2 cameras, inputs' in node.output
    finally:
        for rig in rigs.values():
            rig.close()
        code = node.stop()
    assert code == 0, node.output
    assert 'Traceback' not in node.output, node.output


def test_fair_service_and_rate_cap_under_overload(ros_context, frames):
    """A backend slower than the cameras: both served alike; a capped camera goes slower."""
    fair_ns, capped_ns = f'/fair{os.getpid()}', f'/capped{os.getpid()}'
    # A second per set: much longer than a round of publishing, however loaded the machine,
    # so both cameras always have a set waiting when a round starts.
    slow = {'FSR_TEST_SLOW_BACKEND': '1.0'}
    nodes = {'fair': start_node(fair_ns, '-p', 'backend:=slow', **slow),
             'capped': start_node(capped_ns, '-p', 'backend:=slow',
                                  '-p', 'camera_max_rates:=[0.0, 0.2]', **slow)}
    setups = {'fair': rigs_for(ros_context, fair_ns), 'capped': rigs_for(ros_context, capped_ns)}
    try:
        for rigs in setups.values():
            for rig in rigs.values():
                rig.subscribe('disparity', DisparityImage)

        def flood():
            for rigs in setups.values():
                rigs['rear'].publish(frames['rear'])
                for _ in range(5):  # the front camera floods, the rear one sends one frame
                    rigs['front'].publish(frames['front'])

        def served(kind):
            return {name: len(rig.messages('disparity')) for name, rig in setups[kind].items()}

        assert wait_until(lambda: min(served('fair').values()) >= 6
                          and served('capped')['front'] >= 8,
                          timeout=4 * NETWORK_TIMEOUT, action=flood), (
            served('fair'), served('capped'), nodes['fair'].output)
        fair, capped = served('fair'), served('capped')
        # One round serves every waiting camera once: the flood does not starve the other.
        assert abs(fair['front'] - fair['rear']) <= 2, fair
        # 0.2 Hz against up to 1 Hz: the capped camera is served, and less than the other.
        assert 1 <= capped['rear'] < capped['front'] / 2, capped
    finally:
        for rigs in setups.values():
            for rig in rigs.values():
                rig.close()
        codes = {kind: node.stop() for kind, node in nodes.items()}
    for kind, node in nodes.items():
        assert codes[kind] == 0, node.output
        assert 'Traceback' not in node.output, node.output

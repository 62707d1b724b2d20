"""The lifecycle node over real DDS: transitions through the lifecycle_msgs services.

The node runs as a subprocess (``python -m foundation_stereo_ros.lifecycle_node``) with the
``tracked`` test backend (an SGBM that prints when it is built and when it is garbage
collected, see node_patches/tracked_backend.py), and a test node in this process drives it
through ``change_state`` / ``get_state`` and sets its parameters through the plain
``set_parameters`` service (Humble's rclpy API only). Every wait waits on a condition.
"""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest
from lifecycle_msgs.msg import State, Transition
from lifecycle_msgs.srv import ChangeState, GetState
from node_harness import (
    NETWORK_TIMEOUT,
    PARAMS_FILE,
    TIMEOUT,
    NodeProcess,
    Rig,
    as_float_image,
    play_until_outputs,
    wait_until,
)
from node_patches.tracked_backend import BUILT, RELEASED
from rcl_interfaces.srv import SetParameters
from rclpy.parameter import Parameter
from stereo_msgs.msg import DisparityImage
from test_node_e2e import (
    HEIGHT,
    WIDTH,
)

from foundation_stereo_ros.ros.stereo_core import HOW_TO_SET
from foundation_stereo_ros.ros.synthetic_camera import scene_to_messages
from foundation_stereo_ros.synthetic.scenes import make_scene

NODE = 'foundation_stereo'


def lifecycle_command(*ros_args):
    return [sys.executable, '-m', 'foundation_stereo_ros.lifecycle_node', '--ros-args',
            '--params-file', str(PARAMS_FILE), *ros_args]


def start(namespace, *ros_args, **switches):
    return NodeProcess(command=lifecycle_command('-r', f'__ns:={namespace}', *ros_args),
                       FSR_TEST_TRACKED_BACKEND='1', **switches)


@pytest.fixture(scope='module')
def scene():
    return make_scene(WIDTH, HEIGHT, seed=5)


@pytest.fixture(scope='module')
def frame(scene):
    return list(scene_to_messages(scene, 'rgb8', 'left_cam', 'right_cam'))


class Manager:
    """Drives one lifecycle node through its services, as a lifecycle manager does."""

    def __init__(self, rig, namespace):
        name = f'{namespace}/{NODE}'
        self.node = rig.node
        self.change = rig.node.create_client(ChangeState, f'{name}/change_state')
        self.get = rig.node.create_client(GetState, f'{name}/get_state')
        self.params = rig.node.create_client(SetParameters, f'{name}/set_parameters')

    def _call(self, client, request, timeout=TIMEOUT):
        assert client.wait_for_service(timeout_sec=60.0), client.srv_name
        future = client.call_async(request)
        assert wait_until(future.done, timeout=timeout), client.srv_name
        return future.result()

    def transition(self, transition_id):
        """Ask for a transition; True when it succeeded."""
        request = ChangeState.Request(transition=Transition(id=transition_id))
        return self._call(self.change, request, NETWORK_TIMEOUT).success

    def state(self):
        return self._call(self.get, GetState.Request()).current_state.id

    def set(self, **values):
        request = SetParameters.Request(parameters=[
            Parameter(name, value=value).to_parameter_msg() for name, value in values.items()])
        return self._call(self.params, request).results


def subscribed(rig):
    """Tell whether the node subscribes to every input."""
    return all(pub.get_subscription_count() > 0 for pub in rig.pubs)


def unsubscribed(rig):
    return all(pub.get_subscription_count() == 0 for pub in rig.pubs)


def test_transitions_outputs_only_while_active_and_cleanup_releases_the_model(
        ros_context, scene, frame):
    namespace = f'/lc{os.getpid()}'
    # No checkpoint for the network backend: configure must fail, saying what to do.
    # On Humble's rclpy API (the parameter callbacks of Iron and later removed).
    node = start(namespace, '-p', 'backend:=foundation_stereo', '-p', 'diagnostics_period:=0.5',
                 FSR_TEST_HUMBLE_RCLPY='1')
    rig = Rig(ros_context, namespace)
    manager = Manager(rig, namespace)
    try:
        rig.subscribe('disparity', DisparityImage)
        assert node.wait_for('unconfigured; configure and activate it'), node.output
        assert manager.state() == State.PRIMARY_STATE_UNCONFIGURED
        assert not manager.transition(Transition.TRANSITION_CONFIGURE)
        assert manager.state() == State.PRIMARY_STATE_UNCONFIGURED, 'alive for a retry'
        assert node.wait_for('configure failed: invalid settings: backend foundation_stereo '
                             'needs a checkpoint'), node.output
        assert f'What to do: {HOW_TO_SET}' in node.output, 'the plain node\'s message'
        assert BUILT not in node.output

        # Read-only parameters may change while unconfigured; a bad value is refused.
        (result,) = manager.set(backend='raft')
        assert not result.successful and 'backend must be one of' in result.reason
        (result,) = manager.set(backend='tracked')
        assert result.successful, result.reason
        assert manager.transition(Transition.TRANSITION_CONFIGURE), node.output
        assert manager.state() == State.PRIMARY_STATE_INACTIVE
        assert node.output.count(BUILT) == 1
        # Configured: read-only parameters are refused with the lifecycle way to change them.
        (result,) = manager.set(backend='sgbm')
        assert not result.successful and 'cleanup' in result.reason
        assert unsubscribed(rig), 'inactive: no subscriptions'

        assert manager.transition(Transition.TRANSITION_ACTIVATE), node.output
        assert manager.state() == State.PRIMARY_STATE_ACTIVE
        out = play_until_outputs(rig, frame, ['disparity'], node, timeout=NETWORK_TIMEOUT)
        disparity = as_float_image(out['disparity'].image)
        visible = ~scene.occluded & np.isfinite(scene.disparity) & (disparity >= 0)
        assert np.median(np.abs(disparity[visible] - scene.disparity[visible])) < 0.5

        # Deactivated: unsubscribed, so frames sent now produce nothing; the model stays.
        assert manager.transition(Transition.TRANSITION_DEACTIVATE)
        assert manager.state() == State.PRIMARY_STATE_INACTIVE
        assert wait_until(lambda: unsubscribed(rig)), 'deactivate unsubscribes'
        while_inactive = [rig.publish(frame) for _ in range(3)]
        assert manager.transition(Transition.TRANSITION_ACTIVATE)
        assert wait_until(lambda: subscribed(rig))
        play_until_outputs(rig, frame, ['disparity'], node, timeout=NETWORK_TIMEOUT)
        assert not [m for m in rig.messages('disparity')
                    if m.header.stamp.sec in while_inactive], 'outputs only while active'
        assert node.output.count(BUILT) == 1 and RELEASED not in node.output

        # Cleanup drops the model: the backend object is garbage collected.
        assert manager.transition(Transition.TRANSITION_DEACTIVATE)
        assert manager.transition(Transition.TRANSITION_CLEANUP)
        assert manager.state() == State.PRIMARY_STATE_UNCONFIGURED
        assert node.wait_for(RELEASED), node.output
        # And a second configure builds it afresh.
        assert manager.transition(Transition.TRANSITION_CONFIGURE)
        assert node.output.count(BUILT) == 2
    finally:
        rig.close()
        code = node.stop()
    assert code == 0, node.output
    assert 'Traceback' not in node.output, node.output
    assert 'humble rclpy: removed Node.add_pre_set_parameters_callback' in node.output


STATES = {  # state to reach: the transitions that reach it
    'unconfigured': [],
    'inactive': [Transition.TRANSITION_CONFIGURE],
    'active': [Transition.TRANSITION_CONFIGURE, Transition.TRANSITION_ACTIVATE],
}
SHUTDOWN = {'unconfigured': Transition.TRANSITION_UNCONFIGURED_SHUTDOWN,
            'inactive': Transition.TRANSITION_INACTIVE_SHUTDOWN,
            'active': Transition.TRANSITION_ACTIVE_SHUTDOWN}


def test_shutdown_and_ctrl_c_from_every_state(ros_context, frame):
    """Shutdown from each primary state finalizes the node; Ctrl-C in each state exits 0."""
    cases = [(state, how) for state in STATES for how in ('shutdown', 'sigint')]
    # Started together: each start costs seconds of imports.
    nodes = {case: start(f'/lc{case[0]}_{case[1]}{os.getpid()}', '-p', 'backend:=tracked')
             for case in cases}
    rigs = {}  # stop() below sends SIGINT (Ctrl-C) in the state each node reached
    try:
        for (state, how), node in nodes.items():
            namespace = f'/lc{state}_{how}{os.getpid()}'
            rigs[state, how] = rig = Rig(ros_context, namespace)
            manager = Manager(rig, namespace)
            for transition in STATES[state]:
                assert manager.transition(transition), (state, node.output)
            if state == 'active':
                rig.subscribe('disparity', DisparityImage)
                play_until_outputs(rig, frame, ['disparity'], node, timeout=NETWORK_TIMEOUT)
                for _ in range(3):  # keep the worker busy while it stops
                    rig.publish(frame)
            if how == 'shutdown':
                assert manager.transition(SHUTDOWN[state]), (state, node.output)
                assert manager.state() == State.PRIMARY_STATE_FINALIZED
                if state != 'unconfigured':
                    assert node.wait_for(RELEASED), (state, node.output)
    finally:
        for rig in rigs.values():
            rig.close()
        codes = {case: node.stop() for case, node in nodes.items()}
    for case, node in nodes.items():
        assert codes[case] == 0, (case, node.output)
        assert 'Traceback' not in node.output, (case, node.output)

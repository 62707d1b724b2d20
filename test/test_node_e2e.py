"""End-to-end tests of the stereo node over real DDS (localhost, this run's ROS_DOMAIN_ID).

Two set-ups:

* ``stereo_node``: the node as a subprocess (``python -m foundation_stereo_ros.node`` with the
  package params file and the sgbm backend), driven by a test node in this process that plays a
  generated scene with exact ground truth. Checks outputs field by field, diagnostics, runtime
  parameters, skipping work without subscribers, and a clean SIGINT shutdown.
* ``local``: the node in this process with an injected backend, for the bad-input cases
  (its counters read from its /diagnostics, and a backend that raises CUDA out-of-memory on
  demand).

The rig, the node process and the waits are node_harness's (shared with the other node tests).

Every wait has a timeout; nothing sleeps for a fixed time where a condition can be awaited.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
import torch
from cloud_reader import read_points
from conftest import golden_frame
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from node_harness import (
    INPUTS,
    NETWORK_TIMEOUT,
    TIMEOUT,
    NodeProcess,
    Rig,
    as_float_image,
    diagnostics_of,
    model_report,
    node_command,
    node_env,
    play_until_outputs,
    running_node,
    wait_until,
)
from param_client import describe_parameters, get_parameters
from param_client import set_parameters as set_remote_parameters
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header
from stereo_msgs.msg import DisparityImage

from foundation_stereo_ros.backends import make_backend
from foundation_stereo_ros.backends.base import DisparityBackend
from foundation_stereo_ros.ros import conversions
from foundation_stereo_ros.ros.synthetic_camera import scene_to_messages
from foundation_stereo_ros.synthetic.scenes import make_scene

WIDTH, HEIGHT = 320, 240
NUM_DISPARITIES = 64  # > the scene's largest disparity (fx * B / min_depth = 43 px)
OUTPUTS = (('disparity', DisparityImage), ('depth/image_rect', Image),
           ('depth/camera_info', CameraInfo), ('points', PointCloud2),
           ('disparity/image_color', Image))


@pytest.fixture(scope='module')
def scene():
    return make_scene(WIDTH, HEIGHT, seed=3)


@pytest.fixture(scope='module')
def frame(scene):
    return list(scene_to_messages(scene, 'rgb8', 'left_cam', 'right_cam'))


# ---------------------------------------------------------------------------------------------
# The node as a subprocess (node_harness.NodeProcess)
# ---------------------------------------------------------------------------------------------

NAMESPACE = f'/e2e{os.getpid()}'


@pytest.fixture(scope='module')
def stereo_node():
    node = NodeProcess('-p', 'backend:=sgbm', '-p', f'num_disparities:={NUM_DISPARITIES}',
                       '-p', 'diagnostics_period:=0.5', '-r', f'__ns:={NAMESPACE}')
    yield node
    node.stop()


@pytest.fixture(scope='module')
def rig(ros_context, stereo_node):
    rig = Rig(ros_context, NAMESPACE)
    yield rig
    rig.close()


@pytest.fixture
def subscriptions(rig):
    """Subscriptions made through ``subscriptions.append`` are removed after the test."""
    subs = []
    yield subs
    for sub in subs:
        rig.node.destroy_subscription(sub)
    rig.clear()


def test_outputs_match_ground_truth(rig, stereo_node, subscriptions, scene, frame):
    topics = [name for name, _ in OUTPUTS]
    for name, msg_type in OUTPUTS:
        subscriptions.append(rig.subscribe(name, msg_type))
    out = play_until_outputs(rig, frame, topics, stereo_node)
    sec = out['disparity'].header.stamp.sec
    cam = scene.camera

    for name in topics:  # input stamp and left frame on every output
        assert out[name].header.stamp.sec == sec and out[name].header.stamp.nanosec == 0
        assert out[name].header.frame_id == 'left_cam', name

    # DisparityImage, field by field
    d = out['disparity']
    assert d.image.encoding == '32FC1' and (d.image.width, d.image.height) == (WIDTH, HEIGHT)
    assert d.image.header.stamp == d.header.stamp
    assert d.f == pytest.approx(cam.fx) and d.t == pytest.approx(cam.baseline, rel=1e-6)
    assert d.min_disparity == 0.0 and d.max_disparity == pytest.approx(NUM_DISPARITIES)
    assert d.delta_d == pytest.approx(1.0 / 16.0)
    disparity = as_float_image(d.image)
    valid = disparity >= d.min_disparity
    assert np.all(np.isfinite(disparity))
    win = d.valid_window
    rows, cols = np.nonzero(valid)
    assert (win.x_offset, win.y_offset) == (cols.min(), rows.min())
    assert (win.width, win.height) == (cols.max() - cols.min() + 1, rows.max() - rows.min() + 1)
    visible = ~scene.occluded & np.isfinite(scene.disparity)
    both = visible & valid
    error = np.abs(disparity[both] - scene.disparity[both])
    assert both.sum() / visible.sum() > 0.9, 'SGBM coverage of the visible scene'
    assert (error > 1.0).mean() < 0.05 and np.median(error) < 0.5

    # Depth: REP 118, consistent with the disparity and with the ground truth
    depth_msg = out['depth/image_rect']
    assert depth_msg.encoding == '32FC1' and (depth_msg.width, depth_msg.height) == (WIDTH, HEIGHT)
    depth = as_float_image(depth_msg)
    assert np.array_equal(np.isfinite(depth), valid)
    np.testing.assert_allclose(depth[valid], d.f * d.t / disparity[valid], rtol=1e-5)
    rel = np.abs(depth[both] - scene.depth[both]) / scene.depth[both]
    assert np.median(rel) < 0.03

    # depth/camera_info: the left camera at the same resolution
    info = out['depth/camera_info']
    assert (info.width, info.height) == (WIDTH, HEIGHT)
    np.testing.assert_allclose(np.reshape(info.k, (3, 3)), cam.K)
    assert info.p[3] == 0.0

    # PointCloud2: organized, x y z rgb float32, NaN where invalid, z = depth
    cloud = out['points']
    assert (cloud.height, cloud.width) == (HEIGHT, WIDTH) and not cloud.is_dense
    assert [(f.name, f.offset, f.datatype, f.count) for f in cloud.fields] == [
        ('x', 0, 7, 1), ('y', 4, 7, 1), ('z', 8, 7, 1), ('rgb', 12, 7, 1)]
    assert cloud.point_step == 16 and cloud.row_step == 16 * WIDTH
    points = read_points(cloud)
    np.testing.assert_allclose(points['z'][valid], depth[valid], rtol=1e-6)
    assert np.all(np.isnan(points['z'][~valid]))
    u = np.arange(WIDTH)[None, :].repeat(HEIGHT, 0)
    np.testing.assert_allclose(points['x'][valid], ((u - cam.cx) * depth / cam.fx)[valid],
                               rtol=1e-4, atol=1e-5)
    packed = points['rgb'].view(np.uint32)
    rgb = np.stack([(packed >> 16) & 255, (packed >> 8) & 255, packed & 255], axis=-1)
    assert np.array_equal(rgb.astype(np.uint8), scene.left)

    # Colour map of the disparity, rgb8
    color = out['disparity/image_color']
    assert color.encoding == 'rgb8' and (color.width, color.height) == (WIDTH, HEIGHT)
    # Its colours are checked against the official vis_disparity in
    # test_colour_map_matches_the_official_one.


def test_diagnostics_report_rates_latency_and_model(rig, stereo_node, subscriptions, frame):
    subscriptions.append(rig.subscribe('disparity', DisparityImage))
    subscriptions.append(rig.subscribe('/diagnostics', DiagnosticArray))

    found = []

    def processing_reported():
        for array_msg in rig.messages('/diagnostics'):
            status, values = diagnostics_of(array_msg, 'processing', NAMESPACE)
            if status is not None and float(values['output rate (Hz)']) > 0:
                found.append(array_msg)
                return True
        return False

    assert wait_until(processing_reported, action=lambda: rig.publish(frame)), \
        stereo_node.output
    last = found[0]
    status, values = diagnostics_of(last, 'processing', NAMESPACE)
    for key in ('output rate (Hz)', 'pairs processed', 'latency mean (ms)', 'latency max (ms)',
                'stage inference (ms)', 'stage convert (ms)', 'stage publish (ms)',
                'skipped no subscribers', 'out of memory', 'bad input'):
        assert key in values, key
    status, values = diagnostics_of(last, 'input', NAMESPACE)
    assert status is not None and 'left/image_rect rate (Hz)' in values
    assert 'sync sets dropped (model busy)' in values
    status, values = diagnostics_of(last, 'model', NAMESPACE)
    assert values['backend'] == 'sgbm' and values['device'] == 'cpu'
    assert status.hardware_id == 'cpu'


def set_parameters(rig, params):
    return set_remote_parameters(rig.node, f'{NAMESPACE}/foundation_stereo', params, TIMEOUT)


def describe(rig, names):
    return describe_parameters(rig.node, f'{NAMESPACE}/foundation_stereo', names, TIMEOUT)


def test_runtime_parameters(rig, stereo_node, subscriptions, scene, frame):
    (scale,) = describe(rig, ['scale'])
    assert scale.floating_point_range[0].from_value == pytest.approx(0.05)
    assert scale.floating_point_range[0].to_value == 1.0 and not scale.read_only
    (backend,) = describe(rig, ['backend'])
    assert backend.read_only and 'restart' in backend.description

    # Invalid values and read-only parameters are refused with a reason.
    (result,) = set_parameters(rig, [Parameter('scale', value=1.5)])
    assert not result.successful and result.reason
    (result,) = set_parameters(rig, [Parameter('z_near', value=500.0)])
    assert not result.successful and 'z_far (100.0) must be greater than z_near' in result.reason
    (result,) = set_parameters(rig, [Parameter('backend', value='foundation_stereo')])
    assert not result.successful and 'read-only' in result.reason

    # A valid change applies from the next pair: depth beyond z_far becomes NaN.
    z_far = float(np.nanpercentile(scene.depth, 50))
    (result,) = set_parameters(rig, [Parameter('z_far', value=z_far)])
    assert result.successful, result.reason
    subscriptions.append(rig.subscribe('depth/image_rect', Image))
    sent = []

    def clipped():
        for msg in rig.messages('depth/image_rect'):
            if msg.header.stamp.sec in sent:
                depth = as_float_image(msg)
                return np.nanmax(depth) <= z_far and np.isfinite(depth).mean() > 0.2
        return False

    assert wait_until(clipped, action=lambda: sent.append(rig.publish(frame)))
    (result,) = set_parameters(rig, [Parameter('z_far', value=100.0)])
    assert result.successful


def test_no_subscribers_no_inference(rig, stereo_node, subscriptions, frame):
    subscriptions.append(rig.subscribe('/diagnostics', DiagnosticArray))
    history = []

    def idle_confirmed():
        for array_msg in rig.messages('/diagnostics')[len(history):]:
            _, values = diagnostics_of(array_msg, 'processing', NAMESPACE)
            if values:
                history.append((int(values['skipped no subscribers']),
                                int(values['pairs processed'])))
        # Two reports in a row with more skips and no new processed pair.
        return len(history) >= 3 and history[-1][0] > history[-2][0] > history[-3][0] and \
            history[-1][1] == history[-2][1] == history[-3][1]

    assert wait_until(idle_confirmed, action=lambda: rig.publish(frame)), history


def test_sigint_shuts_down_cleanly(rig, stereo_node, subscriptions, frame):
    subscriptions.append(rig.subscribe('disparity', DisparityImage))
    play_until_outputs(rig, frame, ['disparity'], stereo_node)
    # Keep the worker busy while the signal arrives.
    for _ in range(5):
        rig.publish(frame)
    assert stereo_node.stop() == 0, stereo_node.output
    assert 'Traceback' not in stereo_node.output, stereo_node.output


def test_bad_start_exits_non_zero_with_advice(tmp_path):
    broken = tmp_path / 'model_best_bp2.pth'
    broken.write_bytes(b'not a checkpoint')
    (tmp_path / 'cfg.yaml').write_text('vit_size: vitl\n')
    advice = ('checkpoint:=', 'backend:=sgbm')
    cases = {  # name: (arguments, fragments the message must hold)
        'no checkpoint': (['-p', 'backend:=foundation_stereo'], advice),
        'missing checkpoint': (['-p', f'checkpoint:={tmp_path / "nope.pth"}'], advice),
        'broken checkpoint': (['-p', f'checkpoint:={broken}'], advice),
        'scale out of range': (['-p', 'backend:=sgbm', '-p', 'scale:=3.0'], ('scale',)),
        # rcl refuses the arguments before any node exists (rclpy.init).
        'missing params file': (['--params-file', str(tmp_path / 'nope.yaml')],
                                ('nope.yaml does not exist', '--params-file')),
        # Logged under the node's real name and namespace, with the launch form of the fix.
        'renamed node': (['-r', '__ns:=/robot', '-r', '__node:=depth', '-p',
                          'backend:=foundation_stereo'],
                         ('[robot.depth]', 'ros2 launch foundation_stereo_ros', 'checkpoint:=')),
    }
    # Run together: each start costs seconds of imports.
    procs = {name: subprocess.Popen(node_command(*args), env=node_env(), text=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
             for name, (args, _) in cases.items()}
    for name, proc in procs.items():
        out, _ = proc.communicate(timeout=180)
        assert proc.returncode == 1, (name, out)
        assert 'Traceback' not in out, (name, out)
        for fragment in cases[name][1]:
            assert fragment in out, (name, fragment, out)


def test_humble_rclpy_pairs_and_runtime_change(ros_context, scene, frame, tmp_path):
    """The node on rclpy without Iron's parameter callbacks: pairs, a runtime change, a typo."""
    typo = tmp_path / 'typo.yaml'
    typo.write_text('/**:\n  ros__parameters:\n    z_farr: 5.0\n')
    namespace = f'/humble{os.getpid()}'
    node = NodeProcess('--params-file', str(typo), '-p', 'backend:=sgbm',
                       '-p', f'num_disparities:={NUM_DISPARITIES}', '-r', f'__ns:={namespace}',
                       FSR_TEST_HUMBLE_RCLPY='1')
    rig = Rig(ros_context, namespace)
    try:
        rig.subscribe('depth/image_rect', Image)
        play_until_outputs(rig, frame, ['depth/image_rect'], node)
        # An integer for a float parameter, as users type it on the command line.
        z_far = int(np.nanpercentile(scene.depth, 50))
        (result,) = set_remote_parameters(rig.node, f'{namespace}/foundation_stereo',
                                          [Parameter('z_far', value=z_far)], TIMEOUT)
        assert result.successful, result.reason
        sent = []

        def clipped():
            for msg in rig.messages('depth/image_rect'):
                if msg.header.stamp.sec in sent:
                    depth = as_float_image(msg)
                    return np.nanmax(depth) <= z_far and np.isfinite(depth).mean() > 0.2
            return False

        assert wait_until(clipped, action=lambda: sent.append(rig.publish(frame))), node.output
    finally:
        rig.close()
        code = node.stop()
    assert code == 0, node.output
    assert 'removed Node.add_pre_set_parameters_callback' in node.output
    assert 'Node.add_post_set_parameters_callback' in node.output
    assert 'z_farr (did you mean z_far?)' in node.output
    assert 'Traceback' not in node.output, node.output


def test_ctrl_c_during_slow_inference_stops_at_once(ros_context, frame):
    """SIGINT (once or twice) or SIGTERM while the backend is busy for an hour: exit 0 at once.

    "At once" is shown by the inference that never finished (it would take an hour), not by a
    time bound that a loaded machine could miss.
    """
    namespace = f'/slow{os.getpid()}'
    signals = {'sigint': [signal.SIGINT], 'twice': [signal.SIGINT, signal.SIGINT],
               'sigterm': [signal.SIGTERM]}
    nodes = {name: NodeProcess('-p', 'backend:=slow', '-r', f'__ns:={namespace}{name}',
                               FSR_TEST_SLOW_BACKEND='3600')
             for name in signals}
    rigs = {name: Rig(ros_context, f'{namespace}{name}') for name in nodes}
    try:
        for name, node in nodes.items():
            rigs[name].subscribe('disparity', DisparityImage)
            assert wait_until(lambda node=node: 'inference started' in node.output,
                              timeout=60.0, action=lambda r=rigs[name]: r.publish(frame)), \
                node.output
    finally:
        for rig in rigs.values():
            rig.close()
    for name, node in nodes.items():
        for signum in signals[name]:
            node.proc.send_signal(signum)
            time.sleep(0.3)  # the second press lands inside the shutdown: it must not wait
        try:
            code = node.proc.wait(timeout=NETWORK_TIMEOUT)
        finally:
            node.stop()
        assert code == 0, (name, node.output)
        assert 'inference finished' not in node.output, (name, node.output)
        assert 'Traceback' not in node.output and 'terminate called' not in node.output, \
            node.output


def test_ctrl_c_during_import_exits_quietly(tmp_path):
    """Ctrl-C while torch is imported: no traceback, as python -m and as a console script."""
    # The offline tools guard their imports the same way.
    script = tmp_path / 'foundation_stereo_node'
    script.write_text(  # what pip writes for a console_scripts entry point
        'import re\nimport sys\nfrom foundation_stereo_ros.ros.node import main\n'
        "if __name__ == '__main__':\n"
        "    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])\n"
        '    sys.exit(main())\n')
    # The tools' --help needs no torch (the demo's prints before it), a run does: the demo on
    # its generated scene, the bag tool on a bag it will never reach.
    tools = [[sys.executable, '-m', 'foundation_stereo_ros.bag_tool', '--help'],
             [sys.executable, '-m', 'foundation_stereo_ros.demo', '--backend', 'sgbm',
              '--out', str(tmp_path / 'demo')]]
    # (process, exit code): the node stops with 0, the offline tools with 130 (interrupted).
    runs = [(NodeProcess(FSR_TEST_SLOW_IMPORT='1'), 0),
            (NodeProcess(command=[sys.executable, str(script), '--ros-args', '-p',
                                  'backend:=sgbm'], FSR_TEST_SLOW_IMPORT='1'), 0),
            *((NodeProcess(command=tool, FSR_TEST_SLOW_IMPORT='1'), 130) for tool in tools)]
    for node, _ in runs:
        assert node.wait_for('importing torch'), node.output
    for node, code in runs:
        assert node.stop(timeout=10.0) == code, node.output
        assert 'Traceback' not in node.output and 'KeyboardInterrupt' not in node.output, \
            node.output


def test_node_started_with_ctrl_c_ignored_still_stops_on_it(ros_context):
    """Started with SIGINT ignored (a script's background job, ``ros2 launch ... &``).

    The node still stops on SIGINT, quietly with 0, as rclpy's and rclcpp's nodes do
    (``ros2 launch`` stops its nodes with SIGINT): at its first output, while it still
    declares and subscribes (rclpy's handler shuts the context down under it), and once it
    spins.
    """
    namespace = f'/ignored{os.getpid()}'
    runs = []
    for _ in range(3):  # the moment after the first output varies: a few tries
        starting = NodeProcess('-p', 'backend:=sgbm', '-r', f'__ns:={namespace}',
                               sigint_ignored=True)
        runs.append(starting)
        assert starting.wait_for('backend on'), starting.output
        assert starting.stop() == 0, starting.output
    with running_node(ros_context, namespace, '-p', 'backend:=sgbm',
                      sigint_ignored=True) as (node, rig):
        model_report(rig, namespace)  # spinning
    for run in (*runs, node):
        assert 'Traceback' not in run.output, run.output


def test_network_backend_end_to_end(tmp_path, ros_context):
    """The node on a seeded FoundationStereo checkpoint reproduces the official numbers."""
    from checkpoints import write_seeded_checkpoint

    frame, expected = golden_frame()
    checkpoint = write_seeded_checkpoint(tmp_path / 'vits')
    namespace = f'/net{os.getpid()}'
    # remove_invisible off: the seeded weights give disparities beyond the image width.
    with running_node(ros_context, namespace, '-p', 'backend:=foundation_stereo',
                      '-p', f'checkpoint:={checkpoint}', '-p', 'device:=cpu',
                      '-p', 'valid_iters:=2', '-p', 'z_far:=1000.0',
                      '-p', 'remove_invisible:=false', '-p', 'diagnostics_period:=0.2',
                      subscribe=[('disparity', DisparityImage), ('depth/image_rect', Image)]
                      ) as (node, rig):
        # CPU inference takes seconds; the node drops the frames published meanwhile.
        out = play_until_outputs(rig, frame, ['disparity', 'depth/image_rect'], node,
                                 timeout=NETWORK_TIMEOUT)
        model = model_report(rig, namespace)
    assert model['backend'] == 'foundation_stereo' and model['vit_size'] == 'vits'
    assert model['valid_iters'] == '2' and model['checkpoint'] == str(checkpoint)

    d = out['disparity']
    assert d.header.frame_id == 'left_cam' and (d.image.width, d.image.height) == (96, 64)
    assert d.delta_d == pytest.approx(1.0 / 32.0) and d.max_disparity == 416.0
    assert d.f == 80.0 and d.t == pytest.approx(0.1)
    np.testing.assert_allclose(as_float_image(d.image), expected, atol=2e-3, rtol=1e-5)
    depth = as_float_image(out['depth/image_rect'])
    np.testing.assert_allclose(depth, 80.0 * 0.1 / expected, rtol=1e-4)


def test_fast_foundation_stereo_checkpoint_through_the_node(ros_context):
    """Run the shared cffs_like FFS checkpoint through the node.

    The family default of 8 iterations is in force at start; after a runtime change to 2 the
    node publishes the official demo disparity.
    """
    from conftest import CFFS_CHECKPOINT as checkpoint
    from conftest import cffs_demo_frame

    frame, expected = cffs_demo_frame()

    namespace = f'/ffs{os.getpid()}'
    with running_node(ros_context, namespace, '-p', 'backend:=foundation_stereo',
                      '-p', f'checkpoint:={checkpoint}', '-p', 'device:=cpu',
                      '-p', 'z_far:=1000.0', '-p', 'remove_invisible:=false',
                      '-p', 'diagnostics_period:=0.2') as (node, rig):
        target = f'{namespace}/foundation_stereo'
        (value,) = get_parameters(rig.node, target, ['valid_iters'], timeout=60.0)
        assert value.integer_value == 8, 'the FFS family default'
        (result,) = set_remote_parameters(rig.node, target, [Parameter('valid_iters', value=2)])
        assert result.successful, result.reason
        rig.subscribe('disparity', DisparityImage)
        out = play_until_outputs(rig, frame, ['disparity'], node, timeout=NETWORK_TIMEOUT)
        model = model_report(rig, namespace)
    assert model['family'] == 'fast_foundation_stereo' and model['valid_iters'] == '2'
    disparity = as_float_image(out['disparity'].image)
    valid = expected > 0  # a DisparityImage marks the rest invalid
    np.testing.assert_allclose(disparity[valid], expected[valid], atol=2e-3, rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# The node in this process, with an injected backend
# ---------------------------------------------------------------------------------------------

class FlakyBackend(DisparityBackend):
    """SGBM posing as the network, for tests of the node's handling of its backend.

    Records the per-pair settings it is given, raises CUDA out-of-memory when told to, and
    returns a fixed disparity when one is set.
    """

    name = 'foundation_stereo'  # so the node forwards the network's runtime settings

    def __init__(self):
        self.inner = make_backend('sgbm', num_disparities=NUM_DISPARITIES)
        self.device = self.inner.device
        self.delta_d = self.inner.delta_d
        self.max_disparity = self.inner.max_disparity
        self.fail = threading.Event()
        self.fixed = None
        self.options = []

    def compute(self, left, right, **options):
        self.options.append(options)
        if self.fail.is_set():
            self.fail.clear()
            raise torch.cuda.OutOfMemoryError(
                'CUDA out of memory. Tried to allocate 2.00 GiB (injected by the test)')
        if self.fixed is not None and self.fixed.shape == left.shape[1:]:
            return self.fixed.clone()
        return self.inner.compute(left, right)


LOCAL_NS = f'/local{os.getpid()}'


@pytest.fixture(scope='module')
def local(ros_context):
    from foundation_stereo_ros.ros.node import FoundationStereoNode

    backend = FlakyBackend()
    # Reliable inputs through the standard QoS overrides (the default is best effort).
    reliable = [Parameter(f'qos_overrides.{LOCAL_NS}/{topic}.subscription.reliability',
                          value='reliable') for topic, _ in INPUTS]
    node = FoundationStereoNode(
        backend=backend, context=ros_context, namespace=LOCAL_NS, parameter_overrides=[
            Parameter('backend', value='foundation_stereo'),
            Parameter('checkpoint', value='(injected backend)'),
            Parameter('camera_info_timeout', value=0.3),
            Parameter('diagnostics_period', value=0.1), *reliable])
    rig = Rig(ros_context, LOCAL_NS, reliable=True, extra_nodes=[node])
    rig.subscribe('disparity', DisparityImage)
    rig.subscribe('/diagnostics', DiagnosticArray)
    rig.backend, rig.stereo = backend, node
    yield rig
    rig.close()
    node.destroy_node()


def next_diagnostics(local, predicate=lambda stamp, input_, processing: True, action=None):
    """Wait for a /diagnostics message of the local node meeting ``predicate``; return it.

    Only messages received from now on count. ``predicate(stamp seconds, input values,
    processing values)``; returns those three.
    """
    start = len(local.messages('/diagnostics'))
    found = []

    def met():
        for array in local.messages('/diagnostics')[start:]:
            _, input_ = diagnostics_of(array, 'input', LOCAL_NS)
            _, processing = diagnostics_of(array, 'processing', LOCAL_NS)
            stamp = array.header.stamp.sec + array.header.stamp.nanosec * 1e-9
            if input_ is not None and predicate(stamp, input_, processing):
                found.append((stamp, input_, processing))
                return True
        return False

    assert wait_until(met, action=action), 'no such diagnostics from the local node'
    return found[0]


def received(input_values, topic):
    """Messages the node received on ``topic`` (a relative input name), from its diagnostics."""
    (count,) = [v for k, v in input_values.items() if k.endswith(f'{topic} received')]
    return int(count)


def expect_event(local, frame, event, *, publish=None):
    """Publish the bad ``frame`` until the node counts ``event``; then a good pair still works.

    The count is the node's own, as its /diagnostics report it (``event`` with spaces).
    """
    key = event.replace('_', ' ')
    before = int(next_diagnostics(local)[2][key])
    sent = []

    def send():
        sent.append(publish() if publish else local.publish(frame))

    next_diagnostics(local, lambda stamp, input_, processing: int(processing[key]) > before,
                     action=send)
    # No output for a skipped pair (the worker is done with it once it is counted).
    assert not [m for m in local.messages('disparity') if m.header.stamp.sec == sent[0]]


def good_pair_still_processed(local, frame):
    play_until_outputs(local, frame, ['disparity'])


def modified(frame, index, **fields):
    msgs_ = list(frame)
    msg = type(msgs_[index])()
    for name in msg.get_fields_and_field_types():
        setattr(msg, name, getattr(msgs_[index], name))
    for name, value in fields.items():
        setattr(msg, name, value)
    msgs_[index] = msg
    return msgs_


def test_local_node_processes(local, frame):
    good_pair_still_processed(local, frame)


def wait_for_log(capfd, text, action=None, timeout=TIMEOUT):
    """Wait until the node logged ``text`` (doing ``action`` every 0.1 s); all stderr seen."""
    seen = []

    def found():
        seen.append(capfd.readouterr().err)
        return text in ''.join(seen)

    assert wait_until(found, timeout=timeout, action=action), ''.join(seen)
    return ''.join(seen)


def test_slow_camera_raises_no_false_warnings(local, frame, capfd):
    """Frames slower than camera_info_timeout, the watchdog checking between image and info.

    Ordered by the node's own reports, not by sleeps: its diagnostics (published right after
    each watchdog check) show the images received and the CameraInfo not yet; then the
    CameraInfo; then a report stamped more than camera_info_timeout (0.3 s) later.
    """
    capfd.readouterr()
    before = int(next_diagnostics(local)[2]['pairs processed'])
    for _ in range(4):
        sec = local.next_stamp()
        _, seen, _ = next_diagnostics(local)
        images, info = received(seen, 'right/image_rect'), received(seen, 'right/camera_info')
        local.publish(frame, sec=sec, skip=(1, 3))
        next_diagnostics(local, lambda stamp, input_, processing, images=images, info=info: (
            received(input_, 'right/image_rect') > images
            and received(input_, 'right/camera_info') == info))
        local.publish(frame, sec=sec, skip=(0, 2))
        stamp, _, _ = next_diagnostics(local, lambda stamp, input_, processing, info=info:
                                       received(input_, 'right/camera_info') > info)
        next_diagnostics(local, lambda later, input_, processing, stamp=stamp:
                         later - stamp > 0.4)
    next_diagnostics(local, lambda stamp, input_, processing:
                     int(processing['pairs processed']) >= before + 4)
    err = capfd.readouterr().err
    for false_alarm in ('no CameraInfo', 'no synchronised set', 'no message on'):
        assert false_alarm not in err, err


def test_silent_image_topic_is_named(local, frame, capfd):
    capfd.readouterr()
    err = wait_for_log(capfd, f'no message on {LOCAL_NS}/right/image_rect',
                       action=lambda: local.publish(frame, skip=(2,)))
    assert f'{LOCAL_NS}/left/image_rect' in err  # what still arrives
    good_pair_still_processed(local, frame)


@pytest.mark.parametrize('case, cause', [
    ('info stamped 0', f'the CameraInfo on {LOCAL_NS}/left/camera_info is stamped 0'),
    ('repeated stamps', f'{LOCAL_NS}/left/image_rect repeats stamps'),
    ('lost images', f'{LOCAL_NS}/left/image_rect delivered'),
])
def test_no_set_warning_names_the_real_cause(local, frame, capfd, case, cause):
    calls = []

    def publish():
        calls.append(None)
        sec = local.next_stamp()
        stamps = [sec] * 4
        skip = ()
        if case == 'info stamped 0':
            stamps[1] = stamps[3] = 0
        elif case == 'repeated stamps':
            stamps[0] = 900_000  # the left driver keeps one stamp
        else:  # best effort drops most left images; left and right never make a pair
            skip = (2,) if len(calls) % 4 == 0 else (0,)
        for index, (pub, msg) in enumerate(zip(local.pubs, frame)):
            if index not in skip:
                msg.header.stamp.sec, msg.header.stamp.nanosec = stamps[index], 0
                pub.publish(msg)

    capfd.readouterr()
    err = wait_for_log(capfd, 'no synchronised set', action=publish)
    assert cause in err, err
    assert 'try sync_policy:=approximate' not in err, err
    local.stamp_sec = max(local.stamp_sec, 1_000_000)  # past the repeated stamp
    good_pair_still_processed(local, frame)


def test_empty_frame_id_warns(local, frame, capfd):
    bare = modified(modified(frame, 0, header=Header()), 1, header=Header())
    capfd.readouterr()
    wait_for_log(capfd, 'have an empty frame_id', action=lambda: local.publish(bare))
    good_pair_still_processed(local, frame)


def test_float_images_0_to_255_warn_once(local, frame, scene, capfd):
    float_frame = list(frame)
    for index, image in ((0, scene.left), (2, scene.right)):
        float_frame[index] = conversions.array_to_image(image[..., 1].astype(np.float32),
                                                        '32FC1')
        float_frame[index].header.frame_id = 'left_cam'
    capfd.readouterr()
    err = wait_for_log(capfd, 'but float images are read as intensities 0..1',
                       action=lambda: local.publish(float_frame))
    play_until_outputs(local, float_frame, ['disparity'])
    err += capfd.readouterr().err
    assert err.count('float images are read as intensities') == 1, err
    good_pair_still_processed(local, frame)


def test_two_nodes_with_one_name_warn(local, ros_context, capfd):
    twin = rclpy.create_node('foundation_stereo', namespace=LOCAL_NS, context=ros_context)
    try:
        wait_for_log(capfd, f'2 nodes are named {LOCAL_NS}/foundation_stereo')
    finally:
        twin.destroy_node()


def test_cache_camera_info_reuses_the_latest(ros_context, frame):
    """cache_camera_info: CameraInfo once (stamped 0, as some drivers do), then images only."""
    from foundation_stereo_ros.ros.node import FoundationStereoNode

    namespace = f'/cached{os.getpid()}'
    reliable = [Parameter(f'qos_overrides.{namespace}/{topic}.subscription.reliability',
                          value='reliable') for topic, _ in INPUTS]
    node = FoundationStereoNode(
        backend=make_backend('sgbm', num_disparities=NUM_DISPARITIES), context=ros_context,
        namespace=namespace, parameter_overrides=[
            Parameter('backend', value='sgbm'), Parameter('cache_camera_info', value=True),
            *reliable])
    rig = Rig(ros_context, namespace, reliable=True, extra_nodes=[node])
    try:
        rig.subscribe('disparity', DisparityImage)
        assert wait_until(lambda: all(node.sync.counters.received[i] for i in (1, 3)),
                          action=lambda: rig.publish(frame, sec=0, skip=(0, 2)))
        sent = []
        assert wait_until(lambda: any(m.header.stamp.sec in sent
                                      for m in rig.messages('disparity')),
                          action=lambda: sent.append(rig.publish(frame, skip=(1, 3))))
    finally:
        rig.close()
        node.destroy_node()


def test_worker_round_after_the_context_shut_down_ends_quietly(frame):
    """The context shut down by rclpy's signal handler (its own thread, at any moment).

    A worker round that meets it (here: asking its publishers for subscribers) ends
    quietly; it printed an RCLError traceback from the worker thread at Ctrl-C under load.
    """
    from foundation_stereo_ros.ros.node import FoundationStereoNode
    from foundation_stereo_ros.ros.stereo_core import _SetJob

    context = rclpy.Context()
    rclpy.init(context=context)
    node = FoundationStereoNode(
        backend=make_backend('sgbm', num_disparities=NUM_DISPARITIES), context=context,
        namespace=f'/shutdown{os.getpid()}', parameter_overrides=[
            Parameter('backend', value='sgbm')])
    try:
        rclpy.shutdown(context=context)
        node.core._process([(0, _SetJob(list(frame), time.monotonic()))])
    finally:
        node.destroy_node()


def test_unsupported_encoding_skipped(local, frame, scene, capfd):
    mono = conversions.array_to_image(np.ascontiguousarray(scene.left[..., 1]), 'mono8')
    bad = [conversions.array_to_image(np.ascontiguousarray(scene.left[..., 1]), 'mono8'), frame[1],
           mono, frame[3]]
    bad[0].encoding = bad[2].encoding = 'bayer_rggb8'
    bad[0].header.frame_id = bad[2].header.frame_id = 'left_cam'
    expect_event(local, bad, 'bad_input')
    assert 'bayer_rggb8' in capfd.readouterr().err
    good_pair_still_processed(local, frame)


def test_left_right_encoding_mismatch_skipped(local, frame, scene, capfd):
    right = conversions.array_to_image(np.ascontiguousarray(scene.right[..., 1]), 'mono8')
    expect_event(local, [frame[0], frame[1], right, frame[3]], 'bad_input')
    assert 'left image is rgb8 but right is mono8' in capfd.readouterr().err
    good_pair_still_processed(local, frame)


def test_left_right_size_mismatch_skipped(local, frame, scene, capfd):
    right = conversions.array_to_image(np.ascontiguousarray(scene.right[:120, :160]), 'rgb8')
    expect_event(local, [frame[0], frame[1], right, frame[3]], 'bad_input')
    assert 'left image is 320x240 but right is 160x120' in capfd.readouterr().err
    good_pair_still_processed(local, frame)


def test_image_size_differs_from_camera_info_skipped(local, frame, scene, capfd):
    small = [conversions.array_to_image(np.ascontiguousarray(img[:120, :160]), 'rgb8')
             for img in (scene.left, scene.right)]
    expect_event(local, [small[0], frame[1], small[1], frame[3]], 'bad_input')
    assert 'but CameraInfo says 320x240' in capfd.readouterr().err
    good_pair_still_processed(local, frame)


def test_nan_in_float_images_skipped(local, frame, scene, capfd):
    grey = scene.left[..., 1].astype(np.float32) / 255.0
    grey[10:20, 10:20] = np.nan
    grey[30, 30] = np.inf
    left = conversions.array_to_image(grey, '32FC1')
    right = conversions.array_to_image(grey.copy(), '32FC1')
    expect_event(local, [left, frame[1], right, frame[3]], 'bad_input')
    assert '101 of 76800 values of the 32FC1 image are NaN or inf' in capfd.readouterr().err
    good_pair_still_processed(local, frame)


def test_finite_float_images_are_processed(local, frame, scene):
    # Float intensity images (0..1) are valid input once they hold no NaN/inf.
    float_frame = list(frame)
    for index, image in ((0, scene.left), (2, scene.right)):
        float_frame[index] = conversions.array_to_image(image[..., 1].astype(np.float32) / 255.0,
                                                        '32FC1')
    good_pair_still_processed(local, float_frame)


def test_invalid_camera_info_skipped_with_reason(local, frame, capfd):
    no_baseline = modified(frame, 3, p=list(frame[1].p))  # right P without -fx*B
    expect_event(local, no_baseline, 'camera_info_error')
    err = capfd.readouterr().err
    assert 'CameraInfo unusable' in err and 'baseline' in err
    good_pair_still_processed(local, frame)


def test_missing_camera_info_warns_and_keeps_running(local, frame, capfd):
    capfd.readouterr()
    # Images only, for longer than camera_info_timeout (0.3 s).
    assert wait_until(lambda: 'no CameraInfo on' in capfd.readouterr().err, timeout=TIMEOUT,
                      action=lambda: local.publish(frame, skip=(1, 3)))
    good_pair_still_processed(local, frame)


def test_stamps_going_backwards_resynchronise(local, frame, capfd):
    good_pair_still_processed(local, frame)
    resets = local.stereo.sync.counters.resets
    local.stamp_sec = 10  # a bag playing from its start again
    local.clear()
    play_until_outputs(local, frame, ['disparity'])
    assert local.stereo.sync.counters.resets == resets + 1
    err = capfd.readouterr().err
    assert err.count('stamps went backwards') == 1
    # Which input went back, and what was lost with it.
    assert f'stamps went backwards on {LOCAL_NS}/left/image_rect' in err, err
    assert 'discarded the messages waiting for a set' in err, err


def test_cuda_out_of_memory_skipped_and_counted(local, frame, capfd):
    def publish():
        local.backend.fail.set()
        return local.publish(frame)

    expect_event(local, frame, 'out_of_memory', publish=publish)
    assert 'CUDA out of memory' in capfd.readouterr().err
    local.backend.fail.clear()
    good_pair_still_processed(local, frame)


def test_outputs_without_subscribers_not_computed(local, frame):
    """Only disparity is subscribed here: no depth nor points were asked of the pipeline."""
    calls = []
    original = local.stereo.pipeline.process_batch

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return original(*args, **kwargs)

    local.stereo.pipeline.process_batch = spy
    try:
        good_pair_still_processed(local, frame)
    finally:
        local.stereo.pipeline.process_batch = original
    assert calls and all(not c['want_depth'] and not c['want_points'] for c in calls)


def test_runtime_changes_apply_from_the_next_pair(local, frame):
    node = local.stereo
    (result,) = node.set_parameters([Parameter('valid_iters', value=5)])
    assert result.successful
    (result,) = node.set_parameters([Parameter('scale', value=0.5)])
    assert result.successful
    assert node.pipeline.config.scale == 0.5
    local.backend.options.clear()
    good_pair_still_processed(local, frame)
    assert local.backend.options and local.backend.options[-1]['valid_iters'] == 5
    (result,) = node.set_parameters([Parameter('scale', value=1.0)])
    assert result.successful
    (result,) = node.set_parameters([Parameter('valid_iters', value=101)])
    assert not result.successful and result.reason
    (result,) = node.set_parameters([Parameter('z_near', value=200.0)])
    assert not result.successful and 'z_far (100.0) must be greater' in result.reason


def test_colour_map_matches_the_official_one(local):
    """A backend giving the golden disparity: the node publishes the official colours."""
    golden = np.load(Path(__file__).parent / 'data' / 'utils_postprocess.npz')
    height, width = golden['disp'].shape
    scene = make_scene(width, height, seed=5)  # any images; the camera has doffs 0
    frame = list(scene_to_messages(scene, 'rgb8', 'left_cam', 'right_cam'))
    # The golden field dips below 0, which a DisparityImage marks invalid; the colour map
    # normalises by the valid range, so a shift keeps the official colours and every pixel.
    local.backend.fixed = torch.from_numpy(golden['disp'] + 2.0)
    (result,) = local.stereo.set_parameters([Parameter('remove_invisible', value=False)])
    assert result.successful
    sub = local.subscribe('disparity/image_color', Image)
    try:
        out = play_until_outputs(local, frame, ['disparity/image_color'])
    finally:
        local.backend.fixed = None
        local.stereo.set_parameters([Parameter('remove_invisible', value=True)])
        local.node.destroy_subscription(sub)
    np.testing.assert_array_equal(
        conversions.image_to_array(out['disparity/image_color']), golden['vis'])


def test_future_stamps_warn_instead_of_negative_latency(local, frame, capfd):
    """Stamps 1000 s ahead of this clock: a warning, and WARN in /diagnostics (not OK)."""
    local.subscribe('/diagnostics', DiagnosticArray)
    local.stamp_sec = int(time.time()) + 1000
    name = f'{LOCAL_NS[1:]}/foundation_stereo: processing'

    def warned():
        return any(status.name == name and status.level == DiagnosticStatus.WARN and
                   'ahead of this clock' in status.message
                   for array_msg in local.messages('/diagnostics') for status in array_msg.status)

    assert wait_until(warned, action=lambda: local.publish(frame))
    assert 'ahead of this node' in capfd.readouterr().err

"""What the node tests share: a rig that plays frames over DDS, the node as a process, waits.

Used by test_node_e2e, test_node_onnx and test_node_inputs_e2e: the node in a subprocess
(:class:`NodeProcess`), a test node publishing its inputs and recording what comes back
(:class:`Rig`), and :func:`running_node`, which starts both, waits for the node's model report
and stops them (exit code 0 required) however the test ends. Every wait is on a condition.
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, QoSReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image

from foundation_stereo_ros.ros import conversions
from foundation_stereo_ros.ros.topic_names import INPUT_TOPICS

ROOT = Path(__file__).resolve().parent.parent
PARAMS_FILE = ROOT / 'config' / 'foundation_stereo.yaml'

TIMEOUT = 20.0
NETWORK_TIMEOUT = 120.0  # a pair through the network on a loaded 2-core CPU
INPUTS = tuple(zip(INPUT_TOPICS, (Image, CameraInfo, Image, CameraInfo)))


def wait_until(predicate, timeout=TIMEOUT, period=0.02, action=None):
    """Poll ``predicate`` (calling ``action`` every 0.1 s) until true; False on timeout."""
    deadline = time.monotonic() + timeout
    next_action = 0.0
    while time.monotonic() < deadline:
        if action is not None and time.monotonic() >= next_action:
            action()
            next_action = time.monotonic() + 0.1
        if predicate():
            return True
        time.sleep(period)
    return bool(predicate())


class Rig:
    """A test node that publishes stereo frames and records what comes back."""

    def __init__(self, context, namespace, *, reliable=False, extra_nodes=()):
        self.node = rclpy.create_node('e2e_rig', namespace=namespace, context=context)
        qos = (QoSProfile(depth=5, reliability=QoSReliabilityPolicy.RELIABLE) if reliable
               else qos_profile_sensor_data)
        self.pubs = [self.node.create_publisher(t, name, qos) for name, t in INPUTS]
        self.received = defaultdict(list)
        self.lock = threading.Lock()
        self.stamp_sec = 1000
        self.executor = SingleThreadedExecutor(context=context)
        for node in (self.node, *extra_nodes):
            self.executor.add_node(node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def subscribe(self, topic, msg_type, qos=10):
        def store(msg):
            with self.lock:
                self.received[topic].append(msg)
        return self.node.create_subscription(msg_type, topic, store, qos)

    def messages(self, topic):
        with self.lock:
            return list(self.received[topic])

    def clear(self):
        with self.lock:
            self.received.clear()

    def next_stamp(self):
        self.stamp_sec += 1
        return self.stamp_sec

    def publish(self, frame, sec=None, skip=()):
        """Publish the four messages of ``frame`` with one stamp (seconds); returns it."""
        sec = self.next_stamp() if sec is None else sec
        for index, (pub, msg) in enumerate(zip(self.pubs, frame)):
            if index in skip:
                continue
            msg.header.stamp.sec = sec
            msg.header.stamp.nanosec = 0
            pub.publish(msg)
        return sec

    def outputs_with_stamp(self, sec, topics):
        found = {}
        for topic in topics:
            match = [m for m in self.messages(topic) if m.header.stamp.sec == sec]
            if not match:
                return None
            found[topic] = match[-1]
        return found

    def close(self):
        self.executor.shutdown(timeout_sec=5.0)
        self.thread.join(timeout=5.0)
        self.node.destroy_node()


def node_command(*ros_args):
    return [sys.executable, '-m', 'foundation_stereo_ros.node', '--ros-args',
            '--params-file', str(PARAMS_FILE), *ros_args]


PATCHES = Path(__file__).resolve().parent / 'node_patches'  # sitecustomize.py: test switches


def node_env(**switches):
    """Environment of a node subprocess; ``switches`` (FSR_TEST_...) turn on node_patches."""
    env = dict(os.environ)  # ROS_DOMAIN_ID and ROS_AUTOMATIC_DISCOVERY_RANGE from conftest
    paths = ([str(PATCHES)] if switches else []) + [str(ROOT), env.get('PYTHONPATH')]
    env['PYTHONPATH'] = os.pathsep.join(p for p in paths if p)
    env['PYTHONUNBUFFERED'] = '1'
    env['RCUTILS_LOGGING_BUFFERED_STREAM'] = '0'
    env.update(switches)
    return env


# Run a command with SIGINT ignored, as a shell runs a script's ``cmd &`` (exec keeps the ignore).
SIGINT_IGNORED = ['sh', '-c', 'trap "" INT; exec "$0" "$@"']


class NodeProcess:
    """The node in a subprocess, its output collected by a thread (the pipe never fills)."""

    def __init__(self, *ros_args, command=None, sigint_ignored=False, **switches):
        """``sigint_ignored``: start it with SIGINT ignored, as a script starts its ``cmd &``."""
        command = command or node_command(*ros_args)
        if sigint_ignored:
            command = [*SIGINT_IGNORED, *command]
        self.proc = subprocess.Popen(command, env=node_env(**switches), text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.lines = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def output(self):
        return ''.join(self.lines)

    def wait_for(self, text, timeout=60.0):
        """Wait until the node printed ``text``; False if it did not (or died first)."""
        return wait_until(lambda: text in self.output or self.proc.poll() is not None,
                          timeout=timeout) and text in self.output

    def stop(self, timeout=15.0):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5.0)
        self.reader.join(timeout=5.0)
        return self.proc.returncode


def play_until_outputs(rig, frame, topics, node=None, timeout=TIMEOUT):
    """Publish frames until one stamp came back on every topic in ``topics``."""
    sent = []
    found = {}

    def publish():
        assert node is None or node.proc.poll() is None, 'node died:\n' + node.output
        sent.append(rig.publish(frame))

    def done():
        for sec in reversed(sent):
            out = rig.outputs_with_stamp(sec, topics)
            if out:
                found.update(out)
                return True
        return False

    assert wait_until(done, timeout=timeout, action=publish), (
        f'no outputs on {topics} within {timeout} s; node output:\n'
        + (node.output if node else ''))
    return found


def as_float_image(image_msg):
    return conversions.image_to_array(image_msg).astype(np.float32)


def diagnostics_of(array_msg, suffix, namespace):
    """Return the status '<namespace>/foundation_stereo: <suffix>' and its values, or Nones."""
    for status in array_msg.status:
        if status.name == f'{namespace[1:]}/foundation_stereo: {suffix}':
            return status, {kv.key: kv.value for kv in status.values}
    return None, None


def model_report(rig, namespace, timeout=TIMEOUT):
    """Wait for the node's '<namespace>/foundation_stereo: model' diagnostics; the latest values.

    The latest, not the first: a report recorded before a parameter change shows the old value.
    """
    def report():
        for array in reversed(rig.messages('/diagnostics')):
            status, values = diagnostics_of(array, 'model', namespace)
            if status is not None:
                return values
        return None

    assert wait_until(lambda: report() is not None, timeout=timeout), 'no model report'
    return report()


@contextlib.contextmanager
def running_node(ros_context, namespace, *ros_args, subscribe=(), sigint_ignored=False):
    """Start the node (``ros_args``, in ``namespace``) and a rig subscribed to ``subscribe``.

    ``subscribe``: (topic, type) pairs; /diagnostics is always recorded. Yields (node, rig);
    afterwards closes the rig and stops the node (SIGINT), which must exit with 0.
    ``sigint_ignored``: as for :class:`NodeProcess`.
    """
    node = NodeProcess(*ros_args, '-r', f'__ns:={namespace}', sigint_ignored=sigint_ignored)
    rig = Rig(ros_context, namespace)
    try:
        for topic, msg_type in (*subscribe, ('/diagnostics', DiagnosticArray)):
            rig.subscribe(topic, msg_type)
        yield node, rig
    finally:
        rig.close()
        assert node.stop() == 0, node.output

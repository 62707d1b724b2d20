"""ROS 2 node: rectified stereo pairs in, disparity, depth, point cloud and diagnostics out.

Subscribes (relative names, so namespaces and remaps work)::

    left/image_rect  left/camera_info  right/image_rect  right/camera_info

or, with ``rectify:=true``, ``left/image_raw`` and ``right/image_raw`` (rectified here with
their CameraInfo); with ``image_transport:=compressed`` each image topic's ``/compressed``
(sensor_msgs/CompressedImage, JPEG or PNG), after remapping as image_transport does.

Publishes ``disparity`` (stereo_msgs/DisparityImage), ``depth/image_rect`` (32FC1 metres) and
``depth/camera_info``, ``points`` (organized PointCloud2, xyz + rgb), ``disparity/image_color``
(rgb8 colour map) and ``/diagnostics``. Outputs carry the input stamp and the left frame.

Wiring only: the subscription callbacks synchronise and drop the newest complete set into a
one-item slot; a worker thread hands whatever is newest to the shared stereo-set step
(:class:`~foundation_stereo_ros.ros.stereo_io.StereoSetProcessor`) and publishes what it returns,
so latency stays bounded when the camera is faster than the model, and outputs nobody
subscribes to are not computed. Parameters come from :mod:`.settings`; warnings and
watchdogs from :mod:`.monitor`.

    python -m foundation_stereo_ros.node --ros-args -p backend:=sgbm
"""
from __future__ import annotations

import sys

try:  # a Ctrl-C while the guard itself is imported (console script): the same quiet exit
    from foundation_stereo_ros.interrupts import STOPPED, exit_on_interrupt, quiet_main
except KeyboardInterrupt:  # at once: a second Ctrl-C must not meet finalisation
    import os

    os._exit(0)

# Ctrl-C during the seconds of importing rclpy and torch, and the standard library before them
# (a console script imports this module first).
with exit_on_interrupt():
    import difflib
    import threading
    import time
    from dataclasses import dataclass
    from typing import Any

    import rclpy.logging
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    from rclpy.qos import (
        QoSDurabilityPolicy,
        QoSHistoryPolicy,
        QoSProfile,
        QoSReliabilityPolicy,
        qos_profile_sensor_data,
    )
    from rclpy.qos_overriding_options import QoSOverridingOptions

    from foundation_stereo_ros import settings
    from foundation_stereo_ros.backends.base import DisparityBackend
    from foundation_stereo_ros.backends.startup import BackendStartError, build_backend
    from foundation_stereo_ros.pipeline import PipelineConfig, StereoPipeline
    from foundation_stereo_ros.ros import params as ros_params
    from foundation_stereo_ros.ros.diagnostics import NodeStats, build_diagnostic_array
    from foundation_stereo_ros.ros.log_bridge import forward_package_logs, stop_forwarding
    from foundation_stereo_ros.ros.monitor import NodeMonitor, model_info
    from foundation_stereo_ros.ros.runner import run_node
    from foundation_stereo_ros.ros.stereo_io import (
        COMPRESSED_SUFFIX,
        IMAGE_SLOTS,
        LEFT_INFO,
        OUTPUT_TOPICS,
        OUTPUT_TYPES,
        RIGHT_INFO,
        PairError,
        StereoSetProcessor,
        input_topics,
        input_types,
        stamp_ns,
    )
    from foundation_stereo_ros.settings import Settings, SettingsError
    from foundation_stereo_ros.sync import LatestSlot, make_synchronizer

# Default QoS (users change it with qos_overrides.<topic>.<subscription|publisher>.<policy>):
# inputs like a camera driver's (best effort), outputs reliable for recording and RViz.
INPUT_QOS = qos_profile_sensor_data
OUTPUT_QOS = QoSProfile(depth=5, reliability=QoSReliabilityPolicy.RELIABLE,
                        durability=QoSDurabilityPolicy.VOLATILE,
                        history=QoSHistoryPolicy.KEEP_LAST)
# How long stopping waits for the pair in progress; inference still running after that is
# abandoned (the process exits without waiting for it, see ros.runner.run_node).
SHUTDOWN_GRACE = 1.0
# Where the fix of a startup error goes: parameters are NAME:=VALUE in both forms.
HOW_TO_SET = ('set parameters as NAME:=VALUE: ros2 launch foundation_stereo_ros '
              'foundation_stereo.launch.py checkpoint:=... backend:=... params_file:=...; '
              'ros2 run foundation_stereo_ros foundation_stereo_node --ros-args -p NAME:=VALUE; '
              'config/foundation_stereo.yaml lists every parameter with its default and range')


class StartupError(RuntimeError):
    """The node cannot start (bad parameters, missing checkpoint...): message says what to do.

    ``logger``: the node's logger (its real name and namespace), once the node exists.
    """

    logger: Any = None


@dataclass
class _PairJob:
    msgs: list  # in INPUT_TOPICS order
    received: float  # monotonic time the set completed


class FoundationStereoNode(Node):
    """The stereo node; ``backend`` injects a ready backend (tests), else one is built."""

    def __init__(self, *, backend: DisparityBackend | None = None,
                 node_name: str = 'foundation_stereo', **node_kwargs: Any) -> None:
        """Declare parameters, build the backend and the ROS interfaces, start the worker."""
        super().__init__(node_name, **node_kwargs)
        self.busy_at_exit = False
        try:
            self._start(backend)
        except StartupError as exc:
            exc.logger = self.get_logger()
            raise

    def _start(self, backend: DisparityBackend | None) -> None:
        try:
            self.settings = Settings(ros_params.declare(self, settings.SETTINGS))
        except (ros_params.ParameterError, SettingsError) as exc:
            raise StartupError(f'{exc}. What to do: {HOW_TO_SET}') from exc
        s = self.settings
        self._values = dict(s)

        self._log_handler = forward_package_logs(self.get_logger())  # backend warm-up lines
        try:
            self.backend = backend if backend is not None else _build_backend(s)
        except StartupError:
            stop_forwarding(self._log_handler)
            raise
        self.pipeline = StereoPipeline(self.backend, PipelineConfig(**s.pipeline_options()))
        self.processor = StereoSetProcessor(self.pipeline, self.get_logger(),
                                            rectify=s.rectify)
        ros_params.on_change(self, settings.SETTINGS, self._check_changes, self._apply_changes)
        family_iters = getattr(self.backend, 'valid_iters', None)
        if s.valid_iters == 0 and family_iters:
            # 0 asks for the checkpoint family's count: show the count in force.
            self.set_parameters([Parameter('valid_iters', value=family_iters)])

        overrides = QoSOverridingOptions.with_default_policies()
        self.outputs = {topic: self.create_publisher(msg_type, topic, OUTPUT_QOS,
                                                     qos_overriding_options=overrides)
                        for topic, msg_type in zip(OUTPUT_TOPICS, OUTPUT_TYPES)}
        self.pub_diagnostics = self.create_publisher(DiagnosticArray, '/diagnostics', 10)

        topics = _subscribed_topics(self, s.rectify, s.image_transport)
        types = input_types(s.image_transport)
        self.stats = NodeStats(topics, time.monotonic())
        self.monitor = NodeMonitor(
            self.get_logger().warning, [self.resolve_topic_name(t) for t in topics],
            camera_info_timeout=s.camera_info_timeout, sync_policy=s.sync_policy, slop=s.slop,
            cache_camera_info=s.cache_camera_info)
        self.sync = make_synchronizer(
            len(topics), policy=s.sync_policy, queue_size=s.queue_size, slop=s.slop,
            cached=(LEFT_INFO, RIGHT_INFO) if s.cache_camera_info else (),
            on_reset=self._on_sync_reset)
        self.slot: LatestSlot[_PairJob] = LatestSlot()
        self._subscriptions_in = [
            self.create_subscription(msg_type, topic, self._make_callback(index), INPUT_QOS,
                                     qos_overriding_options=overrides)
            for index, (msg_type, topic) in enumerate(zip(types, topics))]
        self.monitor.best_effort = [
            sub.qos_profile.reliability == QoSReliabilityPolicy.BEST_EFFORT
            for sub in self._subscriptions_in]  # after the QoS overrides were applied

        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._work, name='stereo_worker', daemon=True)
        self._worker.start()
        self._diag_timer = self.create_timer(s.diagnostics_period, self._on_diagnostics_timer)
        self.get_logger().info(
            f'{self.backend.name} backend on {self.backend.device}; inputs '
            f'{", ".join(self.monitor.topics)} ({s.sync_policy} sync'
            + (', latest CameraInfo reused' if s.cache_camera_info else '') + ')')
        self._warn_undeclared_parameters()

    def _warn_undeclared_parameters(self) -> None:
        """Warn about parameters given at start that this node does not have (typos)."""
        # rclpy keeps every override of the command line and params files here (Humble and
        # later); with allow_undeclared_parameters off, those never declared are ignored.
        given = getattr(self, '_parameter_overrides', {})
        unknown = sorted(name for name in given if not self.has_parameter(name))
        if not unknown:
            return
        known = [setting.name for setting in settings.SETTINGS]
        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name, known, n=1)
            hints.append(f'{name} (did you mean {close[0]}?)' if close else name)
        self.get_logger().warning(
            f'ignored parameters, not parameters of this node: {", ".join(hints)}; '
            'ros2 param list shows its parameters (QoS ones: qos_overrides.<topic>.'
            '<publisher|subscription>.<policy> for its own topics)')

    # -- input side (executor thread: never blocks on inference) -----------------------------

    def _make_callback(self, index: int):
        def callback(msg: Any) -> None:
            now = time.monotonic()
            stamp = stamp_ns(msg)
            self.monitor.input_arrived(index, now, stamp)
            self.stats.count_input(index)
            matched = self.sync.add(index, stamp, msg)
            if matched is not None:
                self.monitor.set_matched(now)
                self.slot.put(_PairJob(matched, now))
        return callback

    def _on_sync_reset(self, index: int, previous_ns: int, new_ns: int,
                       discarded: list[int]) -> None:
        lost = ', '.join(f'{n} on {topic}' for n, topic in zip(discarded, self.monitor.topics)
                         if n) or 'none were pending'
        self.get_logger().warning(
            f'stamps went backwards on {self.monitor.topics[index]} '
            f'({previous_ns / 1e9:.3f} s -> {new_ns / 1e9:.3f} s): discarded the messages '
            f'waiting for a set ({lost}); synchronising afresh. When every input goes back, a '
            'bag restarted or a driver was restarted; when only this one does, its publisher '
            'stamps with another clock')

    # -- parameters ------------------------------------------------------------------------------

    def _check_changes(self, changes: dict[str, Any]) -> str | None:
        return settings.check_changes(self._values, changes)

    def _apply_changes(self, changes: dict[str, Any]) -> None:
        self._values.update(changes)
        takes = set(PipelineConfig.__dataclass_fields__) | set(
            settings.runtime_backend_names(self.backend.name))
        applied = {k: v for k, v in changes.items() if k in takes}
        if applied:
            # The pipeline takes one config snapshot per pair: this applies from the next one.
            self.pipeline.update_config(**applied)
            self.get_logger().info('parameters changed (from the next pair): '
                                   + ', '.join(f'{k}={v}' for k, v in applied.items()))
        for name in changes.keys() - takes:
            self.get_logger().info(f'{name} has no effect on the {self.backend.name} backend')

    # -- worker thread ---------------------------------------------------------------------------

    def _work(self) -> None:
        while not self._stop.is_set():
            job = self.slot.take(timeout=0.2)
            if job is None:
                continue
            try:
                self._process(job)
            except Exception as exc:  # noqa: BLE001 - the worker must survive any one pair
                if self._stop.is_set() or not self.context.ok():
                    return  # shutting down: publishers are gone
                self.monitor.warn('backend_error', f'pair skipped: {type(exc).__name__}: {exc}',
                                  time.monotonic())
                self.stats.count_event('backend_error')

    def _process(self, job: _PairJob) -> None:
        wanted = [t for t, pub in self.outputs.items() if pub.get_subscription_count() > 0]
        if not wanted:
            self.stats.count_event('skipped_no_subscribers')
            return
        try:
            processed = self.processor.process(job.msgs, wanted)
        except PairError as exc:
            # Warn, then count: whoever sees the count can already read the warning.
            self.monitor.warn(f'{exc.event}_{exc.kind}', str(exc), time.monotonic())
            self.stats.count_event(exc.event)
            return
        start = time.perf_counter()
        for topic, msg in processed.messages.items():
            self.outputs[topic].publish(msg)
        timings = {**processed.timings, 'publish': time.perf_counter() - start}
        latency = (self.get_clock().now().nanoseconds - stamp_ns(job.msgs[0])) / 1e9
        self.stats.count_processed(latency, timings)
        self._check_output(job.msgs, latency)

    def _check_output(self, msgs: list, latency: float) -> None:
        now = time.monotonic()
        if not (msgs[0].header.frame_id or msgs[1].header.frame_id):
            self.monitor.warn('empty_frame_id', (
                f'the left image and CameraInfo ({self.monitor.topics[0]}) have an empty '
                'frame_id, so the outputs have none and RViz or tf cannot place them: set the '
                "camera driver's frame_id (REP 103 optical frame)"), now)
        if latency < 0.0:
            self.monitor.warn('future_stamp', (
                f'input stamps are {-latency:.3f} s ahead of this node\'s clock: the camera '
                'and this machine disagree on the time (synchronise clocks with chrony or PTP; '
                'use_sim_time must match the publisher)'), now)

    # -- diagnostics (executor thread) -----------------------------------------------------------

    def _on_diagnostics_timer(self) -> None:
        now = time.monotonic()
        self.monitor.check_inputs(now)
        self._check_unique_name(now)
        sync = self.sync.counters
        slot = self.slot.counters
        snap = self.stats.snapshot(now, {
            'sets matched': sync.matched, 'messages dropped': sync.dropped,
            'resets (stamps backwards)': sync.resets,
            'sets dropped (model busy)': slot.overwritten})
        self.pub_diagnostics.publish(build_diagnostic_array(
            snap, prefix=self.get_fully_qualified_name().lstrip('/'),
            hardware_id=str(self.backend.device),
            model=model_info(self.backend, self.pipeline.config),
            stamp=self.get_clock().now().to_msg()))

    def _check_unique_name(self, now: float) -> None:
        me = (self.get_name(), self.get_namespace())
        twins = self.get_node_names_and_namespaces().count(me)
        if twins > 1:
            self.monitor.warn('same_name', (
                f'{twins} nodes are named {self.get_fully_qualified_name()}: parameters, '
                'services and logs of that name reach either one; give each a namespace or '
                'name (launch: namespace:=..., node_name:=...; ros2 run: -r __ns:=/... or '
                '-r __node:=...)'), now)

    # -- shutdown --------------------------------------------------------------------------------

    def destroy_node(self) -> None:
        """Stop the worker, then the ROS side.

        The pair in progress gets :data:`SHUTDOWN_GRACE` seconds; a network inference that
        runs longer is abandoned (``busy_at_exit``), and ``run_node`` ends the process
        without waiting for it.
        """
        if hasattr(self, '_worker'):
            self._stop.set()
            self.slot.close()
            self._worker.join(timeout=SHUTDOWN_GRACE)
            self.busy_at_exit = self._worker.is_alive()
            if self.busy_at_exit:
                # Not the node's logger: its rosout publisher died with the context on SIGINT.
                rclpy.logging.get_logger(f'{self.get_logger().name}.shutdown').info(
                    'stopping without waiting for the pair in progress')
        stop_forwarding(getattr(self, '_log_handler', None))
        super().destroy_node()


def _subscribed_topics(node: Node, rectify: bool, image_transport: str) -> list[str]:
    """Return the input topics; compressed images on '<remapped image topic>/compressed'."""
    topics = list(input_topics(rectify))
    if image_transport == 'compressed':
        for index in IMAGE_SLOTS:
            # Like image_transport: remap the image topic, then add the transport's suffix.
            topics[index] = node.resolve_topic_name(topics[index]) + COMPRESSED_SUFFIX
    return topics


def _build_backend(s: Settings) -> DisparityBackend:
    try:
        return build_backend(s, settings.ROS_PARAMETERS)
    except BackendStartError as exc:
        raise StartupError(str(exc)) from exc


@quiet_main(STOPPED)
def main(args: list[str] | None = None) -> int:
    """Run the node until SIGINT/SIGTERM; returns the process exit code."""
    return run_node(FoundationStereoNode, 'foundation_stereo', (StartupError,), args)


if __name__ == '__main__':
    sys.exit(main())

"""ROS 2 node: rectified stereo pairs in, disparity, depth, point cloud and diagnostics out.

Subscribes (relative names, so namespaces and remaps work)::

    left/image_rect  left/camera_info  right/image_rect  right/camera_info

Publishes ``disparity`` (stereo_msgs/DisparityImage), ``depth/image_rect`` (32FC1 metres) and
``depth/camera_info``, ``points`` (organized PointCloud2, xyz + rgb), ``disparity/image_color``
(rgb8 colour map) and ``/diagnostics``. Outputs carry the input stamp and the left frame.

Wiring only: the subscription callbacks synchronise and drop the newest complete set into a
one-item slot; a worker thread hands whatever is newest to the shared stereo-set step
(:class:`~foundation_stereo_ros.stereo_io.StereoSetProcessor`) and publishes what it returns,
so latency stays bounded when the camera is faster than the model, and outputs nobody
subscribes to are not computed. Parameters come from :mod:`.settings`; warnings and
watchdogs from :mod:`.monitor`.

    python -m foundation_stereo_ros.node --ros-args -p backend:=sgbm
"""
from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

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

from foundation_stereo_ros import ros_params, settings
from foundation_stereo_ros.backends import make_backend
from foundation_stereo_ros.backends.base import DisparityBackend
from foundation_stereo_ros.diagnostics import NodeStats, build_diagnostic_array
from foundation_stereo_ros.log_bridge import forward_package_logs, stop_forwarding
from foundation_stereo_ros.monitor import NodeMonitor, model_info
from foundation_stereo_ros.pipeline import PipelineConfig, StereoPipeline
from foundation_stereo_ros.ros_main import run_node
from foundation_stereo_ros.settings import Settings, SettingsError
from foundation_stereo_ros.stereo_io import (
    INPUT_TOPICS,
    INPUT_TYPES,
    OUTPUT_TOPICS,
    OUTPUT_TYPES,
    PairError,
    StereoSetProcessor,
    stamp_ns,
)
from foundation_stereo_ros.sync import LatestSlot, StereoSynchronizer

# Default QoS (users change it with qos_overrides.<topic>.<subscription|publisher>.<policy>):
# inputs like a camera driver's (best effort), outputs reliable for recording and RViz.
INPUT_QOS = qos_profile_sensor_data
OUTPUT_QOS = QoSProfile(depth=5, reliability=QoSReliabilityPolicy.RELIABLE,
                        durability=QoSDurabilityPolicy.VOLATILE,
                        history=QoSHistoryPolicy.KEEP_LAST)


class StartupError(RuntimeError):
    """The node cannot start (bad parameters, missing checkpoint...): message says what to do."""


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
        try:
            self.settings = Settings(ros_params.declare(self, settings.SETTINGS))
        except (ros_params.ParameterError, SettingsError) as exc:
            raise StartupError(f'{exc} (config/foundation_stereo.yaml lists every parameter '
                               'with its default and range)') from exc
        s = self.settings
        self._values = dict(s)

        self._log_handler = forward_package_logs(self.get_logger())  # backend warm-up lines
        try:
            self.backend = backend if backend is not None else _build_backend(s)
        except StartupError:
            stop_forwarding(self._log_handler)
            raise
        self.pipeline = StereoPipeline(self.backend, PipelineConfig(**s.pipeline_options()))
        self.processor = StereoSetProcessor(self.pipeline, self.get_logger())
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

        now = time.monotonic()
        self.stats = NodeStats(INPUT_TOPICS, now)
        self.monitor = NodeMonitor(
            self.get_logger().warning, [self.resolve_topic_name(t) for t in INPUT_TOPICS], now,
            camera_info_timeout=s.camera_info_timeout, sync_policy=s.sync_policy, slop=s.slop)
        self.sync = StereoSynchronizer(
            len(INPUT_TOPICS), policy=s.sync_policy, queue_size=s.queue_size, slop=s.slop,
            on_reset=self._on_sync_reset)
        self.slot: LatestSlot[_PairJob] = LatestSlot()
        self._subscriptions_in = [
            self.create_subscription(msg_type, topic, self._make_callback(index), INPUT_QOS,
                                     qos_overriding_options=overrides)
            for index, (msg_type, topic) in enumerate(zip(INPUT_TYPES, INPUT_TOPICS))]

        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._work, name='stereo_worker', daemon=True)
        self._worker.start()
        self._diag_timer = self.create_timer(s.diagnostics_period, self._on_diagnostics_timer)
        self.get_logger().info(
            f'{self.backend.name} backend on {self.backend.device}; inputs '
            f'{", ".join(self.monitor.topics)} ({s.sync_policy} sync)')

    # -- input side (executor thread: never blocks on inference) -----------------------------

    def _make_callback(self, index: int):
        def callback(msg: Any) -> None:
            now = time.monotonic()
            self.monitor.input_arrived(index, now)
            self.stats.count_input(index)
            matched = self.sync.add(index, stamp_ns(msg), msg)
            if matched is not None:
                self.monitor.set_matched(now)
                self.slot.put(_PairJob(matched, now))
        return callback

    def _on_sync_reset(self, index: int, previous_ns: int, new_ns: int) -> None:
        self.get_logger().warning(
            f'stamps went backwards on {self.monitor.topics[index]} '
            f'({previous_ns / 1e9:.3f} s -> {new_ns / 1e9:.3f} s; a bag played in a loop or a '
            'restarted driver?): pending messages discarded, synchronising afresh')

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
                self.stats.count_event('backend_error')
                self.monitor.warn('backend_error', f'pair skipped: {type(exc).__name__}: {exc}',
                                  time.monotonic())

    def _process(self, job: _PairJob) -> None:
        wanted = [t for t, pub in self.outputs.items() if pub.get_subscription_count() > 0]
        if not wanted:
            self.stats.count_event('skipped_no_subscribers')
            return
        try:
            processed = self.processor.process(job.msgs, wanted)
        except PairError as exc:
            self.stats.count_event(exc.event)
            self.monitor.warn(f'{exc.event}_{exc.kind}', str(exc), time.monotonic())
            return
        start = time.perf_counter()
        for topic, msg in processed.messages.items():
            self.outputs[topic].publish(msg)
        timings = {**processed.timings, 'publish': time.perf_counter() - start}
        latency = (self.get_clock().now().nanoseconds - stamp_ns(job.msgs[0])) / 1e9
        self.stats.count_processed(latency, timings)

    # -- diagnostics (executor thread) -----------------------------------------------------------

    def _on_diagnostics_timer(self) -> None:
        now = time.monotonic()
        self.monitor.check_inputs(now)
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

    # -- shutdown --------------------------------------------------------------------------------

    def destroy_node(self) -> None:
        """Stop the worker (finishing its current pair), then the ROS side."""
        self._stop.set()
        self.slot.close()
        self._worker.join(timeout=30.0)
        stop_forwarding(self._log_handler)
        super().destroy_node()


def _build_backend(s: Settings) -> DisparityBackend:
    try:
        return make_backend(s.backend, **s.backend_options())
    except Exception as exc:
        what = (f'check checkpoint:={s.checkpoint} (a FoundationStereo .pth with its '
                'cfg.yaml beside it), device and precision, or run with backend:=sgbm'
                if s.backend == 'foundation_stereo' else 'check the sgbm parameters')
        raise StartupError(f'cannot start the {s.backend} backend: '
                           f'{type(exc).__name__}: {exc}. What to do: {what}') from exc


def main(args: list[str] | None = None) -> int:
    """Run the node until SIGINT/SIGTERM; returns the process exit code."""
    return run_node(FoundationStereoNode, 'foundation_stereo', (StartupError,), args)


if __name__ == '__main__':
    sys.exit(main())

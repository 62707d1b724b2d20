"""ROS 2 node: rectified stereo pairs in, disparity, depth, point cloud and diagnostics out.

Subscribes (relative names, so namespaces and remaps work)::

    left/image_rect  left/camera_info  right/image_rect  right/camera_info

Publishes ``disparity`` (stereo_msgs/DisparityImage), ``depth/image_rect`` (32FC1 metres) and
``depth/camera_info``, ``points`` (organized PointCloud2, xyz + rgb), ``disparity/image_color``
(rgb8 colour map) and ``/diagnostics``. Outputs carry the input stamp and the left frame.

The subscription callbacks only synchronise and drop the newest complete set into a one-item
slot; a worker thread runs the pipeline on whatever is newest, so latency stays bounded when the
camera is faster than the model, and outputs nobody subscribes to are not computed.

    python -m foundation_stereo_ros.node --ros-args -p backend:=sgbm
"""
from __future__ import annotations

import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    SetParametersResult,
)
from rclpy.exceptions import (
    InvalidParameterTypeException,
    InvalidParameterValueException,
)
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import (
    QoSDurabilityPolicy,
    QoSHistoryPolicy,
    QoSProfile,
    QoSReliabilityPolicy,
    qos_profile_sensor_data,
)
from sensor_msgs.msg import CameraInfo, Image

from foundation_stereo_ros.backends import make_backend
from foundation_stereo_ros.backends.base import DisparityBackend
from foundation_stereo_ros.diagnostics import (
    NodeStats,
    build_diagnostic_array,
    device_memory,
)
from foundation_stereo_ros.node_params import (
    PARAMS,
    NodeSettings,
    ParamSpec,
    check_changes,
    split_runtime_changes,
)
from foundation_stereo_ros.pipeline import PipelineConfig, StereoPipeline
from foundation_stereo_ros.ros_main import run_node
from foundation_stereo_ros.stereo_io import (
    INPUT_TOPICS,
    LEFT_IMAGE,
    LEFT_INFO,
    OUTPUT_TOPICS,
    OUTPUT_TYPES,
    RIGHT_IMAGE,
    RIGHT_INFO,
    PairDecoder,
    PairError,
    output_header,
    output_messages,
    stamp_ns,
)
from foundation_stereo_ros.sync import LatestSlot, StereoSynchronizer

WARN_PERIOD = 5.0  # seconds between repeats of one kind of warning


class StartupError(RuntimeError):
    """The node cannot start (bad parameters, missing checkpoint...): message says what to do."""


def make_descriptor(spec: ParamSpec) -> ParameterDescriptor:
    """ROS parameter descriptor of a :class:`~foundation_stereo_ros.node_params.ParamSpec`."""
    description = spec.description
    if spec.choices:
        description += f' Values: {spec.constraints}.'
    descriptor = ParameterDescriptor(description=description, read_only=not spec.runtime,
                                     additional_constraints=spec.constraints)
    if spec.low is not None and spec.type_name == 'int':
        descriptor.integer_range = [IntegerRange(
            from_value=int(spec.low), to_value=int(spec.high), step=int(spec.step))]
    elif spec.low is not None:
        descriptor.floating_point_range = [FloatingPointRange(
            from_value=float(spec.low), to_value=float(spec.high), step=0.0)]
    return descriptor


@dataclass
class _PairJob:
    msgs: list  # [left image, left info, right image, right info]
    received: float  # monotonic time the set completed


class FoundationStereoNode(Node):
    """The stereo node; ``backend`` injects a ready backend (tests), else one is built."""

    def __init__(self, *, backend: DisparityBackend | None = None,
                 node_name: str = 'foundation_stereo', **node_kwargs: Any) -> None:
        """Declare parameters, build the backend and the ROS interfaces, start the worker."""
        super().__init__(node_name, **node_kwargs)
        try:
            for spec in PARAMS:
                self.declare_parameter(spec.name, spec.default, make_descriptor(spec))
        except (InvalidParameterTypeException, InvalidParameterValueException) as exc:
            raise StartupError(f'invalid parameter: {exc} (see config/foundation_stereo.yaml '
                               'for types and ranges; floats need a decimal point)') from exc
        values = {spec.name: self.get_parameter(spec.name).value for spec in PARAMS}
        if backend is not None:
            values['checkpoint'] = values['checkpoint'] or '<injected backend>'
        try:
            self.settings = NodeSettings.from_values(values)
        except ValueError as exc:
            raise StartupError(str(exc)) from exc
        s = self.settings
        self._param_values = s.as_dict()

        self.backend = backend if backend is not None else _build_backend(s)
        self.pipeline = StereoPipeline(self.backend, PipelineConfig(**s.pipeline_options()))
        self._backend_changes: dict[str, Any] = {}
        self._changes_lock = threading.Lock()
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.add_post_set_parameters_callback(self._on_parameters_set)

        out_qos = QoSProfile(depth=s.output_qos_depth, reliability=QoSReliabilityPolicy.RELIABLE,
                             durability=QoSDurabilityPolicy.VOLATILE,
                             history=QoSHistoryPolicy.KEEP_LAST)
        self.outputs = {topic: self.create_publisher(msg_type, topic, out_qos)
                        for topic, msg_type in zip(OUTPUT_TOPICS, OUTPUT_TYPES)}
        self.pub_diagnostics = self.create_publisher(DiagnosticArray, '/diagnostics', 10)

        now = time.monotonic()
        self.stats = NodeStats(INPUT_TOPICS, now)
        self._last_input = [None] * len(INPUT_TOPICS)  # monotonic time of the last message
        self._last_set = None
        self._started = now
        self._warned: dict[str, tuple[float, int]] = {}
        self._warn_lock = threading.Lock()
        self.decoder = PairDecoder(self.get_logger())
        self.sync = StereoSynchronizer(
            len(INPUT_TOPICS), policy=s.sync_policy, queue_size=s.queue_size, slop=s.slop,
            on_reset=self._on_sync_reset)
        self.slot: LatestSlot[_PairJob] = LatestSlot()

        if s.input_qos == 'sensor_data':
            in_qos = QoSProfile(depth=max(s.queue_size, qos_profile_sensor_data.depth),
                                reliability=QoSReliabilityPolicy.BEST_EFFORT,
                                durability=QoSDurabilityPolicy.VOLATILE,
                                history=QoSHistoryPolicy.KEEP_LAST)
        else:
            in_qos = QoSProfile(depth=s.queue_size, reliability=QoSReliabilityPolicy.RELIABLE,
                                history=QoSHistoryPolicy.KEEP_LAST)
        types = (Image, CameraInfo, Image, CameraInfo)
        self._subscriptions_in = [
            self.create_subscription(msg_type, topic, self._make_callback(index), in_qos)
            for index, (msg_type, topic) in enumerate(zip(types, INPUT_TOPICS))]

        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._work, name='stereo_worker', daemon=True)
        self._worker.start()
        self._diag_timer = self.create_timer(s.diagnostics_period, self._on_diagnostics_timer)
        self.get_logger().info(
            f'{self.backend.name} backend on {self.backend.device}; inputs '
            f'{", ".join(self.resolve_topic_name(t) for t in INPUT_TOPICS)} '
            f'({s.input_qos} QoS, {s.sync_policy} sync)')

    # -- input side (executor thread: never blocks on inference) -----------------------------

    def _make_callback(self, index: int):
        def callback(msg: Any) -> None:
            self._last_input[index] = time.monotonic()
            self.stats.count_input(index)
            matched = self.sync.add(index, stamp_ns(msg), msg)
            if matched is not None:
                self._last_set = time.monotonic()
                self.slot.put(_PairJob(matched, self._last_set))
        return callback

    def _on_sync_reset(self, index: int, previous_ns: int, new_ns: int) -> None:
        self.get_logger().warning(
            f'stamps went backwards on {self.resolve_topic_name(INPUT_TOPICS[index])} '
            f'({previous_ns / 1e9:.3f} s -> {new_ns / 1e9:.3f} s; a bag played in a loop or a '
            'restarted driver?): pending messages discarded, synchronising afresh')

    # -- parameters ------------------------------------------------------------------------------

    def _on_set_parameters(self, parameters: Sequence[Parameter]) -> SetParametersResult:
        changes = {p.name: p.value for p in parameters}
        reason = check_changes(self._param_values, changes)
        if reason:
            return SetParametersResult(successful=False, reason=reason)
        return SetParametersResult(successful=True)

    def _on_parameters_set(self, parameters: Sequence[Parameter]) -> None:
        changes = {p.name: p.value for p in parameters if p.name in self._param_values}
        if not changes:
            return
        self._param_values.update(changes)
        pipeline_changes, backend_changes = split_runtime_changes(changes)
        if pipeline_changes:
            # The pipeline takes one config snapshot per pair: this applies from the next one.
            self.pipeline.update_config(**pipeline_changes)
        if backend_changes:
            with self._changes_lock:
                self._backend_changes.update(backend_changes)
        self.get_logger().info(
            'parameters changed (from the next pair): '
            + ', '.join(f'{k}={v}' for k, v in changes.items()))

    def _apply_backend_changes(self) -> None:
        with self._changes_lock:
            changes, self._backend_changes = self._backend_changes, {}
        for name, value in changes.items():
            if hasattr(self.backend, name):
                setattr(self.backend, name, value)
            else:
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
                self._warn('backend_error', f'pair skipped: {type(exc).__name__}: {exc}')

    def _process(self, job: _PairJob) -> None:
        wanted = [t for t, pub in self.outputs.items() if pub.get_subscription_count() > 0]
        if not wanted:
            self.stats.count_event('skipped_no_subscribers')
            return
        left_msg, left_info, right_msg, right_info = job.msgs
        start = time.perf_counter()
        try:
            left, right, camera = self.decoder.decode(left_msg, left_info, right_msg, right_info)
        except PairError as exc:
            self.stats.count_event(exc.event)
            self._warn(f'{exc.event}_{exc.kind}', str(exc))
            return
        convert = time.perf_counter() - start

        self._apply_backend_changes()
        try:
            result = self.pipeline.process(
                left, right, camera, want_depth='depth/image_rect' in wanted,
                want_points='points' in wanted)
        except torch.cuda.OutOfMemoryError as exc:
            self.stats.count_event('out_of_memory')
            if self.backend.device.type == 'cuda':
                torch.cuda.empty_cache()
            self._warn('out_of_memory', f'CUDA out of memory on a {camera.width}x'
                       f'{camera.height} pair, skipped ({exc}); lower scale, use '
                       'precision fp16/bf16 or hierarchical:=true')
            return

        start = time.perf_counter()
        header = output_header(left_msg, left_info)
        for topic, msg in output_messages(result, camera, header, left, left_info,
                                          wanted).items():
            self.outputs[topic].publish(msg)
        timings = {'convert': convert, **result.timings,
                   'publish': time.perf_counter() - start}
        latency = (self.get_clock().now().nanoseconds - stamp_ns(left_msg)) / 1e9
        self.stats.count_processed(latency, timings)

    # -- diagnostics and watchdogs (executor thread) ---------------------------------------------

    def _warn(self, key: str, message: str) -> None:
        """Log a warning at most once per WARN_PERIOD per kind, with how often it recurred."""
        now = time.monotonic()
        with self._warn_lock:  # worker thread and executor thread both warn
            last, suppressed = self._warned.get(key, (-1e9, 0))
            if now - last < WARN_PERIOD:
                self._warned[key] = (last, suppressed + 1)
                return
            self._warned[key] = (now, 0)
        if suppressed:
            message += f' ({suppressed} more like this in the last {now - last:.0f} s)'
        self.get_logger().warning(message)

    def _check_inputs(self, now: float) -> None:
        timeout = self.settings.camera_info_timeout
        for image, info in ((LEFT_IMAGE, LEFT_INFO), (RIGHT_IMAGE, RIGHT_INFO)):
            image_time, info_time = self._last_input[image], self._last_input[info]
            if image_time is None or now - image_time > timeout:
                continue
            silent = now - (info_time if info_time is not None else self._started)
            if silent > timeout:
                topic = self.resolve_topic_name(INPUT_TOPICS[info])
                self._warn(f'no_info_{info}',
                           f'images arrive but no CameraInfo on {topic} for {silent:.1f} s: '
                           'start the camera_info publisher or remap the topic')
        if all(t is not None and now - t <= timeout for t in self._last_input):
            since = now - (self._last_set if self._last_set is not None else self._started)
            if since > timeout:
                hint = ('stamps differ: try sync_policy:=approximate' if
                        self.settings.sync_policy == 'exact' else 'stamps differ by more than '
                        f'slop={self.settings.slop} s: raise slop')
                self._warn('no_sets', f'all inputs arrive but no synchronised set for '
                           f'{since:.1f} s ({hint})')

    def _on_diagnostics_timer(self) -> None:
        now = time.monotonic()
        self._check_inputs(now)
        sync = self.sync.counters
        slot = self.slot.counters
        snap = self.stats.snapshot(now, {
            'sets matched': sync.matched, 'messages dropped': sync.dropped,
            'resets (stamps backwards)': sync.resets,
            'sets dropped (model busy)': slot.overwritten})
        self.pub_diagnostics.publish(build_diagnostic_array(
            snap, prefix=self.get_fully_qualified_name().lstrip('/'),
            hardware_id=str(self.backend.device), model=self._model_info(),
            stamp=self.get_clock().now().to_msg()))

    def _model_info(self) -> dict[str, str]:
        describe = getattr(self.backend, 'describe', None)
        info = dict(describe()) if callable(describe) else {'backend': self.backend.name}
        info.setdefault('backend', self.backend.name)
        info.setdefault('device', str(self.backend.device))
        config = self.pipeline.config
        info.update({'scale': str(config.scale), 'z_near': str(config.z_near),
                     'z_far': str(config.z_far)})
        info.update(device_memory(self.backend.device))
        return info

    # -- shutdown --------------------------------------------------------------------------------

    def destroy_node(self) -> None:
        """Stop the worker (finishing its current pair), then the ROS side."""
        self._stop.set()
        self.slot.close()
        self._worker.join(timeout=30.0)
        super().destroy_node()


def _build_backend(settings: NodeSettings) -> DisparityBackend:
    try:
        return make_backend(settings.backend, **settings.backend_options())
    except Exception as exc:
        what = (f'check checkpoint:={settings.checkpoint} (a FoundationStereo .pth with its '
                'cfg.yaml beside it), device and precision, or run with -p backend:=sgbm'
                if settings.backend == 'foundation_stereo' else 'check the sgbm parameters')
        raise StartupError(f'cannot start the {settings.backend} backend: '
                           f'{type(exc).__name__}: {exc}. What to do: {what}') from exc


def main(args: list[str] | None = None) -> int:
    """Run the node until SIGINT/SIGTERM; returns the process exit code."""
    return run_node(FoundationStereoNode, 'foundation_stereo', (StartupError,), args)


if __name__ == '__main__':
    sys.exit(main())

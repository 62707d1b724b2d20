"""What the stereo node does, for a plain node and a lifecycle node alike.

:class:`StereoCore` owns the backend (one set of weights, one device context), the cameras
(:class:`CameraChannel`: each its inputs, synchroniser, watchdogs, counters and outputs) and
the worker thread. Its host node only decides *when* each step runs:

* :meth:`StereoCore.configure`: validate the settings, build (and warm up) the backend, the
  pipeline and every camera's outputs;
* :meth:`StereoCore.activate`: subscribe, start the worker and the diagnostics timer;
* :meth:`StereoCore.deactivate`: stop processing and unsubscribe (the model stays);
* :meth:`StereoCore.cleanup`: drop the outputs and the model (device memory returned).

The plain node (:mod:`.node`) runs configure and activate at start; the lifecycle node
(:mod:`.lifecycle_node`) runs each from its transition.

Subscription callbacks synchronise each camera's inputs and drop the newest complete set into
that camera's slot of a :class:`~foundation_stereo_ros.scheduling.CameraScheduler`; the worker
takes the newest set of every camera that has one (so no camera starves), runs sets of one
size through the network as one batch (:func:`~.stereo_io.process_sets`) and publishes each
camera's outputs with its own stamp, frame and calibration.
"""
from __future__ import annotations

import difflib
import gc
import threading
import time
from collections.abc import Callable
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
from foundation_stereo_ros.backends.startup import BackendStartError
from foundation_stereo_ros.backends.startup import build_backend as build_backend_for
from foundation_stereo_ros.pipeline import PipelineConfig, StereoPipeline
from foundation_stereo_ros.ros.diagnostics import (
    NodeStats,
    camera_statuses,
    model_status,
)
from foundation_stereo_ros.ros.log_bridge import forward_package_logs, stop_forwarding
from foundation_stereo_ros.ros.monitor import NodeMonitor, model_info
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
    process_sets,
    stamp_ns,
)
from foundation_stereo_ros.scheduling import CameraScheduler
from foundation_stereo_ros.settings import Settings, SettingsError
from foundation_stereo_ros.sync import make_synchronizer

# Default QoS (users change it with qos_overrides.<topic>.<subscription|publisher>.<policy>):
# inputs like a camera driver's (best effort), outputs reliable for recording and RViz.
INPUT_QOS = qos_profile_sensor_data
OUTPUT_QOS = QoSProfile(depth=5, reliability=QoSReliabilityPolicy.RELIABLE,
                        durability=QoSDurabilityPolicy.VOLATILE,
                        history=QoSHistoryPolicy.KEEP_LAST)
# How long stopping waits for the sets in progress; inference still running after that is
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


def parameter_error(problem: Exception | str) -> StartupError:
    """Return the :class:`StartupError` of invalid parameters: the problem, then what to do."""
    return StartupError(f'{problem}. What to do: {HOW_TO_SET}')


@dataclass
class _SetJob:
    msgs: list  # in INPUT_TOPICS order
    received: float  # monotonic time the set completed


def camera_topic(camera: str, topic: str) -> str:
    """Return ``topic`` of ``camera`` ('' is the node's own topics): 'front/disparity'."""
    return f'{camera}/{topic}' if camera else topic


class CameraChannel:
    """One stereo camera of the node: inputs, synchroniser, watchdogs, counters, outputs."""

    def __init__(self, core: StereoCore, index: int, camera: str) -> None:
        """Build the camera's processing side; :meth:`open_outputs` adds its publishers."""
        node, s = core.node, core.settings
        self.core, self.index, self.camera = core, index, camera
        self.topics = [camera_topic(camera, t) for t in input_topics(s.rectify)]
        if s.image_transport == 'compressed':
            for slot in IMAGE_SLOTS:
                # Like image_transport: remap the image topic, then add the transport's suffix.
                self.topics[slot] = node.resolve_topic_name(self.topics[slot]) + COMPRESSED_SUFFIX
        self.types = input_types(s.image_transport)
        self.processor = StereoSetProcessor(core.pipeline, node.get_logger(), rectify=s.rectify)
        self.stats = NodeStats(self.topics, time.monotonic())
        self.monitor = NodeMonitor(
            node.get_logger().warning, [node.resolve_topic_name(t) for t in self.topics],
            camera_info_timeout=s.camera_info_timeout, sync_policy=s.sync_policy, slop=s.slop,
            cache_camera_info=s.cache_camera_info)
        self.sync = make_synchronizer(
            len(self.topics), policy=s.sync_policy, queue_size=s.queue_size, slop=s.slop,
            cached=(LEFT_INFO, RIGHT_INFO) if s.cache_camera_info else (),
            on_reset=self._on_sync_reset)
        self.outputs: dict[str, Any] = {}
        self.subscriptions: list[Any] = []

    def open_outputs(self, create_publisher: Callable[..., Any], overrides: Any) -> None:
        """Create the camera's output publishers."""
        self.outputs = {topic: create_publisher(msg_type, camera_topic(self.camera, topic),
                                                OUTPUT_QOS, qos_overriding_options=overrides)
                        for topic, msg_type in zip(OUTPUT_TOPICS, OUTPUT_TYPES)}

    def subscribe(self, overrides: Any) -> None:
        """Subscribe to the camera's four inputs."""
        node = self.core.node
        self.subscriptions = [
            node.create_subscription(msg_type, topic, self._make_callback(index), INPUT_QOS,
                                     qos_overriding_options=overrides)
            for index, (msg_type, topic) in enumerate(zip(self.types, self.topics))]
        self.monitor.best_effort = [
            sub.qos_profile.reliability == QoSReliabilityPolicy.BEST_EFFORT
            for sub in self.subscriptions]  # after the QoS overrides were applied

    def unsubscribe(self) -> None:
        """Destroy the input subscriptions."""
        for subscription in self.subscriptions:
            self.core.node.destroy_subscription(subscription)
        self.subscriptions = []

    def wanted(self) -> list[str]:
        """Output topics somebody subscribes to."""
        return [t for t, pub in self.outputs.items() if pub.get_subscription_count() > 0]

    def _make_callback(self, index: int):
        def callback(msg: Any) -> None:
            now = time.monotonic()
            stamp = stamp_ns(msg)
            self.monitor.input_arrived(index, now, stamp)
            self.stats.count_input(index)
            matched = self.sync.add(index, stamp, msg)
            if matched is not None:
                self.monitor.set_matched(now)
                self.core.scheduler.put(self.index, _SetJob(matched, now))
        return callback

    def _on_sync_reset(self, index: int, previous_ns: int, new_ns: int,
                       discarded: list[int]) -> None:
        lost = ', '.join(f'{n} on {topic}' for n, topic in zip(discarded, self.monitor.topics)
                         if n) or 'none were pending'
        self.core.node.get_logger().warning(
            f'stamps went backwards on {self.monitor.topics[index]} '
            f'({previous_ns / 1e9:.3f} s -> {new_ns / 1e9:.3f} s): discarded the messages '
            f'waiting for a set ({lost}); synchronising afresh. When every input goes back, a '
            'bag restarted or a driver was restarted; when only this one does, its publisher '
            'stamps with another clock')

    def publish(self, msgs: list, processed: Any) -> None:
        """Publish one processed set and count it."""
        start = time.perf_counter()
        for topic, msg in processed.messages.items():
            self.outputs[topic].publish(msg)
        timings = {**processed.timings, 'publish': time.perf_counter() - start}
        latency = (self.core.node.get_clock().now().nanoseconds - stamp_ns(msgs[0])) / 1e9
        self.stats.count_processed(latency, timings, processed.removed)
        self._check_output(msgs, latency)

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

    def statuses(self, now: float, prefix: str, hardware_id: str) -> list[Any]:
        """Return the camera's input and processing DiagnosticStatus."""
        self.monitor.check_inputs(now)
        sync = self.sync.counters
        slot = self.core.scheduler.counters(self.index)
        counters = {'sets matched': sync.matched, 'messages dropped': sync.dropped,
                    'resets (stamps backwards)': sync.resets,
                    'sets dropped (model busy)': slot.overwritten}
        if len(self.core.channels) > 1 or slot.capped:
            counters['sets dropped (rate cap)'] = slot.capped
        snap = self.stats.snapshot(now, counters)
        name = f'{prefix}/{self.camera}' if self.camera else prefix
        return camera_statuses(snap, prefix=name, hardware_id=hardware_id)


class StereoCore:
    """The cameras, the backend and the worker of one node, driven by its host node.

    ``managed``: the host is a lifecycle node (lifecycle publishers; read-only parameters may
    change while unconfigured). ``backend`` injects a ready backend (tests).
    """

    def __init__(self, node: Node, *, managed: bool = False,
                 backend: DisparityBackend | None = None) -> None:
        """Attach to ``node``; nothing is built until :meth:`configure`."""
        self.node = node
        self.managed = managed
        self._injected = backend
        self.settings: Settings | None = None
        self.backend: DisparityBackend | None = None
        self.pipeline: StereoPipeline | None = None
        self.channels: list[CameraChannel] = []
        self.scheduler: CameraScheduler | None = None
        self.pub_diagnostics: Any = None
        self.busy_at_exit = False
        self._values: dict[str, Any] = {}
        self._worker: threading.Thread | None = None
        self._stop = threading.Event()
        self._timer: Any = None
        self._log_handler: Any = None
        self._overrides = QoSOverridingOptions.with_default_policies()

    @property
    def configured(self) -> bool:
        """Tell whether the backend and the cameras exist."""
        return self.backend is not None

    @property
    def active(self) -> bool:
        """Tell whether the node subscribes and processes."""
        return self._worker is not None

    # -- transitions -----------------------------------------------------------------------------

    def configure(self, values: dict[str, Any]) -> None:
        """Validate ``values``, build the backend, the pipeline and every camera's outputs.

        Raises :class:`StartupError` saying what to do; nothing is left half built then.
        """
        try:
            s = Settings(values)
        except SettingsError as exc:
            raise parameter_error(exc) from exc
        self.settings = s
        self._values = dict(s)
        self._log_handler = forward_package_logs(self.node.get_logger())  # warm-up lines
        try:
            backend = (self._injected if self._injected is not None
                       else build_backend(s))
        except StartupError:
            stop_forwarding(self._log_handler)
            self._log_handler = None
            raise
        self.backend = backend
        self.pipeline = StereoPipeline(backend, PipelineConfig(**s.pipeline_options()))
        family_iters = getattr(backend, 'valid_iters', None)
        if s.valid_iters == 0 and family_iters:
            # 0 asks for the checkpoint family's count: use it, and show it as the parameter
            # (the plain node's set-parameters callback is not registered yet).
            self._values['valid_iters'] = family_iters
            self.pipeline.update_config(valid_iters=family_iters)
            self.node.set_parameters([Parameter('valid_iters', value=family_iters)])
        self.channels = [CameraChannel(self, index, camera)
                         for index, camera in enumerate(s.cameras)]
        create = (self.node.create_lifecycle_publisher if self.managed
                  else self.node.create_publisher)
        for channel in self.channels:
            channel.open_outputs(create, self._overrides)
        self.pub_diagnostics = create(DiagnosticArray, '/diagnostics', 10)
        inputs = '; '.join(', '.join(channel.monitor.topics) for channel in self.channels)
        self.node.get_logger().info(
            f'{backend.name} backend on {backend.device}; '
            + (f'{len(self.channels)} cameras, inputs ' if len(self.channels) > 1 else 'inputs ')
            + f'{inputs} ({s.sync_policy} sync'
            + (', latest CameraInfo reused' if s.cache_camera_info else '') + ')')

    def activate(self) -> None:
        """Subscribe to every camera and start the worker and the diagnostics timer."""
        self._stop.clear()
        self.scheduler = CameraScheduler(len(self.channels),
                                         settings.camera_rates(self._values))
        for channel in self.channels:
            channel.subscribe(self._overrides)
        self._worker = threading.Thread(target=self._work, name='stereo_worker', daemon=True)
        self._worker.start()
        self._timer = self.node.create_timer(self.settings.diagnostics_period,
                                             self._on_diagnostics_timer)

    def deactivate(self) -> None:
        """Unsubscribe and stop the worker (waiting :data:`SHUTDOWN_GRACE` at most)."""
        for channel in self.channels:
            channel.unsubscribe()
        if self._timer is not None:
            self.node.destroy_timer(self._timer)
            self._timer = None
        if self._worker is not None:
            self._stop.set()
            self.scheduler.close()
            self._worker.join(timeout=SHUTDOWN_GRACE)
            self.busy_at_exit = self._worker.is_alive()
            self._worker = None

    def cleanup(self) -> None:
        """Drop the outputs, the cameras and the model; device memory goes back."""
        self.deactivate()
        destroy = (self.node.destroy_lifecycle_publisher if self.managed
                   else self.node.destroy_publisher)
        for channel in self.channels:
            for publisher in channel.outputs.values():
                destroy(publisher)
            # The executor may still hold a destroyed subscription (its callback holds the
            # channel) until its next wait: cut the channel's way to the model here.
            channel.outputs, channel.processor = {}, None
        if self.pub_diagnostics is not None:
            destroy(self.pub_diagnostics)
        device = getattr(self.backend, 'device', None)
        self.channels, self.pub_diagnostics = [], None
        self.pipeline = self.backend = self.scheduler = None
        self._injected = None if self.managed else self._injected
        stop_forwarding(self._log_handler)
        self._log_handler = None
        if self.busy_at_exit:
            return  # the abandoned inference still holds the model; the process ends
        gc.collect()  # the network's tensors go now, not at some later collection
        if getattr(device, 'type', None) == 'cuda':
            import torch

            torch.cuda.empty_cache()

    # -- parameters ------------------------------------------------------------------------------

    def check_changes(self, changes: dict[str, Any], how_to_change: str) -> str | None:
        """Return why runtime ``changes`` must be refused (None: accept)."""
        return settings.check_changes(self._values, changes, how_to_change=how_to_change)

    def apply_changes(self, changes: dict[str, Any]) -> None:
        """Apply accepted runtime changes from the next set."""
        self._values.update(changes)
        backend = self.backend
        takes = set(PipelineConfig.__dataclass_fields__) | set(
            settings.runtime_backend_names(backend.name))
        applied = {k: v for k, v in changes.items() if k in takes}
        if applied:
            # The pipeline takes one config snapshot per batch: this applies from the next one.
            self.pipeline.update_config(**applied)
            self.node.get_logger().info('parameters changed (from the next pair): '
                                        + ', '.join(f'{k}={v}' for k, v in applied.items()))
        if 'camera_max_rates' in changes:
            if self.scheduler is not None:  # else activate reads the new caps
                self.scheduler.set_max_rates(settings.camera_rates(self._values))
            takes.add('camera_max_rates')
            self.node.get_logger().info(f'camera_max_rates={list(changes["camera_max_rates"])}')
        for name in changes.keys() - takes:
            self.node.get_logger().info(f'{name} has no effect on the {backend.name} backend')

    def warn_undeclared_parameters(self) -> None:
        """Warn about parameters given at start that this node does not have (typos)."""
        node = self.node
        # rclpy keeps every override of the command line and params files here (Humble and
        # later); with allow_undeclared_parameters off, those never declared are ignored.
        given = getattr(node, '_parameter_overrides', {})
        unknown = sorted(name for name in given if not node.has_parameter(name))
        if not unknown:
            return
        known = [setting.name for setting in settings.SETTINGS]
        hints = []
        for name in unknown:
            close = [settings.RENAMED[name]] if name in settings.RENAMED else \
                difflib.get_close_matches(name, known, n=1)
            hints.append(f'{name} (did you mean {close[0]}?)' if close else name)
        node.get_logger().warning(
            f'ignored parameters, not parameters of this node: {", ".join(hints)}; '
            'ros2 param list shows its parameters (QoS ones: qos_overrides.<topic>.'
            '<publisher|subscription>.<policy> for its own topics)')

    # -- worker thread ---------------------------------------------------------------------------

    def _work(self) -> None:
        scheduler = self.scheduler
        while not self._stop.is_set():
            round_ = scheduler.take(timeout=0.2)
            if round_:
                self._process(round_)

    def _shutting_down(self) -> bool:
        # rclpy's signal handler shuts the context down from its own thread, at any moment of
        # this worker's round: past that, every rcl call on the node's entities raises.
        return self._stop.is_set() or not self.node.context.ok()

    def _process(self, round_: list[tuple[int, _SetJob]]) -> None:
        jobs, owners = [], []
        for index, job in round_:
            if self._shutting_down():
                return
            channel = self.channels[index]
            try:
                wanted = channel.wanted()
            except Exception:
                if self._shutting_down():
                    return
                raise
            if not wanted:
                channel.stats.count_event('skipped_no_subscribers')
                continue
            jobs.append((channel.processor, job.msgs, wanted))
            owners.append((channel, job))
        if not jobs:
            return
        outcomes = process_sets(self.pipeline, jobs)
        for (channel, job), outcome in zip(owners, outcomes):
            if self._shutting_down():
                return  # publishers are gone
            now = time.monotonic()
            if isinstance(outcome, PairError):
                # Warn, then count: whoever sees the count can already read the warning.
                channel.monitor.warn(f'{outcome.event}_{outcome.kind}', str(outcome), now)
                channel.stats.count_event(outcome.event)
                continue
            try:
                if isinstance(outcome, Exception):
                    raise outcome
                channel.publish(job.msgs, outcome)
            except Exception as exc:  # noqa: BLE001 - the worker must survive any one set
                if self._shutting_down():
                    return
                channel.monitor.warn('backend_error',
                                     f'pair skipped: {type(exc).__name__}: {exc}', now)
                channel.stats.count_event('backend_error')

    # -- diagnostics (executor thread) -----------------------------------------------------------

    def _on_diagnostics_timer(self) -> None:
        now = time.monotonic()
        node = self.node
        self._check_unique_name(now)
        prefix = node.get_fully_qualified_name().lstrip('/')
        hardware_id = str(self.backend.device)
        statuses = [status for channel in self.channels
                    for status in channel.statuses(now, prefix, hardware_id)]
        statuses.append(model_status(prefix, hardware_id,
                                     model_info(self.backend, self.pipeline.config)))
        array = DiagnosticArray(status=statuses)
        array.header.stamp = node.get_clock().now().to_msg()
        self.pub_diagnostics.publish(array)

    def _check_unique_name(self, now: float) -> None:
        node = self.node
        me = (node.get_name(), node.get_namespace())
        twins = node.get_node_names_and_namespaces().count(me)
        if twins > 1:
            self.channels[0].monitor.warn('same_name', (
                f'{twins} nodes are named {node.get_fully_qualified_name()}: parameters, '
                'services and logs of that name reach either one; give each a namespace or '
                'name (launch: namespace:=..., node_name:=...; ros2 run: -r __ns:=/... or '
                '-r __node:=...)'), now)

    def log_stop(self) -> None:
        """Say, on a logger that outlives the context, that the sets in progress are left."""
        if self.busy_at_exit:
            # Not the node's logger: its rosout publisher died with the context on SIGINT.
            rclpy.logging.get_logger(f'{self.node.get_logger().name}.shutdown').info(
                'stopping without waiting for the pair in progress')


def build_backend(s: Settings) -> DisparityBackend:
    """Build the backend ``s`` selects; :class:`StartupError` saying what to check."""
    try:
        return build_backend_for(s, settings.ROS_PARAMETERS)
    except BackendStartError as exc:
        raise StartupError(str(exc)) from exc

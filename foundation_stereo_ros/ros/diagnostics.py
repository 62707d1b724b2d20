"""Counters and timings of the stereo node, and the DiagnosticArray built from them.

:class:`NodeStats` is thread-safe and cheap: the subscription callbacks, the worker thread and
the diagnostics timer all write or read it. :meth:`NodeStats.snapshot` turns the events since
the previous snapshot into rates and means; :func:`build_diagnostic_array` makes the ROS
message (three statuses: input, processing, model) from a snapshot.
"""
from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

from foundation_stereo_ros.empty_output import EMPTY_SHARE

# Events counted by the node besides inputs and processed pairs.
EVENT_NAMES = (
    'skipped_no_subscribers',  # a set was ready but nobody listens to any output
    'bad_input',               # encoding/size mismatch, unsupported encoding, non-finite pixels
    'camera_info_error',       # CameraInfo that does not describe a rectified stereo pair
    'out_of_memory',           # CUDA out of memory on a pair (skipped)
    'backend_error',           # any other failure of the pipeline on a pair (skipped)
)


@dataclass
class StatsSnapshot:
    """What happened since the previous snapshot (``window`` seconds) plus running totals."""

    window: float
    input_names: tuple[str, ...]
    input_rates: list[float]
    input_totals: list[int]
    processed_rate: float
    processed_total: int
    latency_mean: float          # seconds, NaN when nothing was processed in the window
    latency_max: float
    stage_means: dict[str, float]  # seconds per stage (mean over the window)
    events_window: dict[str, int]
    events_total: dict[str, int]
    sync: dict[str, int] = field(default_factory=dict)  # synchroniser/slot counters, shown as is
    # Seconds since the newest pair in stage_means finished: with a model slower than the
    # diagnostics period most windows finish no pair, and the last figures are kept.
    stage_age: float = math.nan
    # Share of pixels each trust stage removed (empty_output.STAGES), mean over the window.
    removed_means: dict[str, float] = field(default_factory=dict)

    @property
    def errors_window(self) -> int:
        """Pairs lost to bad input or failures in the window."""
        return sum(v for k, v in self.events_window.items() if k != 'skipped_no_subscribers')


class NodeStats:
    """Thread-safe event counters and timings of one node."""

    def __init__(self, input_names: Sequence[str], now: float) -> None:
        """``now``: monotonic seconds at which counting starts."""
        self.input_names = tuple(input_names)
        self._lock = threading.Lock()
        self._inputs = [0] * len(self.input_names)
        self._processed = 0
        self._events: Counter[str] = Counter()
        self._last_time = now
        self._last_inputs = [0] * len(self.input_names)
        self._last_processed = 0
        self._last_events: Counter[str] = Counter()
        self._latencies: list[float] = []
        self._stages: dict[str, list[float]] = {}
        self._last_stage_means: dict[str, float] = {}
        self._stage_finished = math.nan  # monotonic time the newest pair with stages finished
        self._removed: dict[str, list[float]] = {}

    def count_input(self, index: int) -> None:
        """One message arrived on input ``index``."""
        with self._lock:
            self._inputs[index] += 1

    def count_event(self, name: str) -> None:
        """One of :data:`EVENT_NAMES` happened."""
        if name not in EVENT_NAMES:
            raise ValueError(f'unknown event {name!r}; known: {EVENT_NAMES}')
        with self._lock:
            self._events[name] += 1

    def count_processed(self, latency: float, timings: Mapping[str, float],
                        removed: Mapping[str, float] | None = None,
                        now: float | None = None) -> None:
        """Count a pair processed and published ``latency`` seconds after its stamp.

        ``removed``: the share of its pixels each trust stage removed; ``now``: monotonic
        seconds it finished (default: the current time).
        """
        finished = time.monotonic() if now is None else now
        with self._lock:
            self._processed += 1
            self._latencies.append(float(latency))
            for stage, seconds in timings.items():
                self._stages.setdefault(stage, []).append(float(seconds))
            if timings:
                self._stage_finished = finished
            for stage, share in (removed or {}).items():
                self._removed.setdefault(stage, []).append(float(share))

    def snapshot(self, now: float, sync: Mapping[str, int] | None = None) -> StatsSnapshot:
        """Rates and means since the previous snapshot; starts a new window."""
        with self._lock:
            window = max(now - self._last_time, 1e-9)
            rates = [(n - p) / window for n, p in zip(self._inputs, self._last_inputs)]
            latencies, self._latencies = self._latencies, []
            stages, self._stages = self._stages, {}
            if stages:
                self._last_stage_means = {k: sum(v) / len(v) for k, v in stages.items()}
            removed, self._removed = self._removed, {}
            snap = StatsSnapshot(
                window=window,
                input_names=self.input_names,
                input_rates=rates,
                input_totals=list(self._inputs),
                processed_rate=(self._processed - self._last_processed) / window,
                processed_total=self._processed,
                latency_mean=sum(latencies) / len(latencies) if latencies else math.nan,
                latency_max=max(latencies) if latencies else math.nan,
                stage_means=dict(self._last_stage_means),
                stage_age=max(now - self._stage_finished, 0.0),
                events_window={k: self._events[k] - self._last_events[k] for k in EVENT_NAMES},
                events_total={k: self._events[k] for k in EVENT_NAMES},
                sync=dict(sync or {}),
                removed_means={k: sum(v) / len(v) for k, v in removed.items()},
            )
            self._last_time = now
            self._last_inputs = list(self._inputs)
            self._last_processed = self._processed
            self._last_events = Counter(self._events)
            return snap


def device_memory(device: Any) -> dict[str, str]:
    """GPU memory figures of a torch device (empty for CPU)."""
    if getattr(device, 'type', str(device)) != 'cuda':
        return {}
    import torch  # only reached when a CUDA device is in use

    mib = 1024.0 * 1024.0
    return {
        'gpu_memory_allocated_mib': f'{torch.cuda.memory_allocated(device) / mib:.1f}',
        'gpu_memory_max_allocated_mib': f'{torch.cuda.max_memory_allocated(device) / mib:.1f}',
        'gpu_memory_reserved_mib': f'{torch.cuda.memory_reserved(device) / mib:.1f}',
    }


def _fmt(value: float, unit_scale: float = 1.0, digits: int = 2) -> str:
    return 'n/a' if not math.isfinite(value) else f'{value * unit_scale:.{digits}f}'


def _status(level: bytes, name: str, message: str, hardware_id: str,
            values: Mapping[str, str]) -> DiagnosticStatus:
    return DiagnosticStatus(
        level=level, name=name, message=message, hardware_id=hardware_id,
        values=[KeyValue(key=str(k), value=str(v)) for k, v in values.items()])


def build_diagnostic_array(snap: StatsSnapshot, *, prefix: str, hardware_id: str,
                           model: Mapping[str, str], stamp: Any = None) -> DiagnosticArray:
    """Build the node's DiagnosticArray: '<prefix>: input', ': processing', ': model'.

    ``model``: identity of the backend (backend, checkpoint, vit size, iterations, device...)
    and memory figures, shown as they are. ``stamp``: builtin_interfaces/Time for the header.
    """
    array = DiagnosticArray(status=[*camera_statuses(snap, prefix=prefix,
                                                     hardware_id=hardware_id),
                                    model_status(prefix, hardware_id, model)])
    if stamp is not None:
        array.header.stamp = stamp
    return array


def model_status(prefix: str, hardware_id: str, model: Mapping[str, str]) -> DiagnosticStatus:
    """Build the '<prefix>: model' status: the backend's identity and memory (one per node)."""
    return _status(DiagnosticStatus.OK, f'{prefix}: model',
                   f'{model.get("backend", "?")} on {hardware_id}', hardware_id, model)


def camera_statuses(snap: StatsSnapshot, *, prefix: str,
                    hardware_id: str) -> list[DiagnosticStatus]:
    """Build the '<prefix>: input' and ': processing' statuses of one camera's snapshot."""
    # Input: rates of the four topics and what the synchroniser made of them.
    values = {f'{name} rate (Hz)': _fmt(rate) for name, rate in
              zip(snap.input_names, snap.input_rates)}
    values.update({f'{name} received': str(total) for name, total in
                   zip(snap.input_names, snap.input_totals)})
    values.update({f'sync {k}': str(v) for k, v in snap.sync.items()})
    silent = [name for name, rate in zip(snap.input_names, snap.input_rates) if rate == 0.0]
    if len(silent) == len(snap.input_names):
        level, message = DiagnosticStatus.WARN, 'no input received'
    elif silent:
        level, message = DiagnosticStatus.WARN, 'no messages on ' + ', '.join(silent)
    else:
        level, message = DiagnosticStatus.OK, 'receiving'
    input_status = _status(level, f'{prefix}: input', message, hardware_id, values)

    # Processing: output rate, latency, per-stage times, drops and errors.
    values = {
        'output rate (Hz)': _fmt(snap.processed_rate),
        'pairs processed': str(snap.processed_total),
        'latency mean (ms)': _fmt(snap.latency_mean, 1e3, 1),
        'latency max (ms)': _fmt(snap.latency_max, 1e3, 1),
    }
    values.update({f'stage {k} (ms)': _fmt(v, 1e3, 1) for k, v in snap.stage_means.items()})
    if snap.stage_means:  # the last pairs' figures, kept until new ones come
        values['stage times age (s)'] = _fmt(snap.stage_age, 1.0, 1)
    values.update({f'removed {k.replace("_", " ")} (%)': _fmt(v, 1e2, 1)
                   for k, v in snap.removed_means.items()})
    values.update({k.replace('_', ' '): str(v) for k, v in snap.events_total.items()})
    if snap.errors_window:
        problems = ', '.join(f'{k.replace("_", " ")} x{v}' for k, v in
                             snap.events_window.items() if v and k != 'skipped_no_subscribers')
        level, message = DiagnosticStatus.WARN, f'pairs skipped: {problems}'
    elif snap.removed_means and 1.0 - sum(snap.removed_means.values()) < EMPTY_SHARE:
        stage = max(snap.removed_means, key=snap.removed_means.get)
        level, message = DiagnosticStatus.WARN, (
            f'almost no valid depth: the {stage.replace("_", " ")} stage removed '
            f'{snap.removed_means[stage]:.0%} of the pixels (the node\'s log says why)')
    elif snap.latency_mean < 0.0:  # NaN (nothing processed) compares False
        level, message = DiagnosticStatus.WARN, (
            f'input stamps are {_fmt(-snap.latency_mean, 1e3, 0)} ms ahead of this clock: '
            'camera and node clocks disagree (chrony/PTP; use_sim_time), latency unknown')
    elif snap.processed_rate > 0.0:
        level, message = DiagnosticStatus.OK, (
            f'{snap.processed_rate:.1f} Hz, latency {_fmt(snap.latency_mean, 1e3, 0)} ms')
    elif snap.events_window.get('skipped_no_subscribers'):
        level, message = DiagnosticStatus.OK, 'idle: no subscribers to any output'
    elif any(snap.input_rates):
        level = DiagnosticStatus.WARN
        message = 'inputs arrive but no pair was processed (see the sync counters)'
    else:
        level, message = DiagnosticStatus.OK, 'waiting for input'
    processing_status = _status(level, f'{prefix}: processing', message, hardware_id, values)
    return [input_status, processing_status]

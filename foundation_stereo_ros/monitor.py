"""What the node tells its user besides outputs: throttled warnings, input watchdogs, model info.

Pure Python (no rclpy): the node hands in a ``warn`` function (its logger's) and the resolved
topic names, and calls these from its callbacks, worker and diagnostics timer.
:class:`NodeMonitor` is thread-safe.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from foundation_stereo_ros.diagnostics import device_memory
from foundation_stereo_ros.stereo_io import LEFT_IMAGE, LEFT_INFO, RIGHT_IMAGE, RIGHT_INFO

WARN_PERIOD = 5.0  # seconds between repeats of one kind of warning


class NodeMonitor:
    """Throttled warnings and the watchdogs on the node's four inputs."""

    def __init__(self, warn: Callable[[str], None], topics: Sequence[str], now: float, *,
                 camera_info_timeout: float, sync_policy: str, slop: float) -> None:
        """``topics``: the resolved input topic names, in INPUT_TOPICS order."""
        self._emit = warn
        self.topics = tuple(topics)
        self._started = now
        self._timeout = camera_info_timeout
        self._sync_policy = sync_policy
        self._slop = slop
        self._last_input: list[float | None] = [None] * len(self.topics)
        self._last_set: float | None = None
        self._warned: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def warn(self, key: str, message: str, now: float) -> None:
        """Log ``message`` at most once per WARN_PERIOD per ``key``, with how often it recurred."""
        with self._lock:  # worker thread and executor thread both warn
            last, suppressed = self._warned.get(key, (-1e9, 0))
            if now - last < WARN_PERIOD:
                self._warned[key] = (last, suppressed + 1)
                return
            self._warned[key] = (now, 0)
        if suppressed:
            message += f' ({suppressed} more like this in the last {now - last:.0f} s)'
        self._emit(message)

    def input_arrived(self, index: int, now: float) -> None:
        """Note that a message arrived on input ``index``."""
        self._last_input[index] = now

    def set_matched(self, now: float) -> None:
        """Note that the synchroniser completed a set."""
        self._last_set = now

    def check_inputs(self, now: float) -> None:
        """Warn when images arrive without CameraInfo, or inputs arrive but never match."""
        timeout = self._timeout
        for image, info in ((LEFT_IMAGE, LEFT_INFO), (RIGHT_IMAGE, RIGHT_INFO)):
            image_time, info_time = self._last_input[image], self._last_input[info]
            if image_time is None or now - image_time > timeout:
                continue
            silent = now - (info_time if info_time is not None else self._started)
            if silent > timeout:
                self.warn(f'no_info_{info}',
                          f'images arrive but no CameraInfo on {self.topics[info]} for '
                          f'{silent:.1f} s: start the camera_info publisher or remap the topic',
                          now)
        if all(t is not None and now - t <= timeout for t in self._last_input):
            since = now - (self._last_set if self._last_set is not None else self._started)
            if since > timeout:
                hint = ('stamps differ: try sync_policy:=approximate'
                        if self._sync_policy == 'exact' else
                        f'stamps differ by more than slop={self._slop} s: raise slop')
                self.warn('no_sets', f'all inputs arrive but no synchronised set for '
                          f'{since:.1f} s ({hint})', now)


def model_info(backend: Any, config: Any) -> dict[str, str]:
    """Return the model's identity and the settings in force, as strings for diagnostics.

    ``backend``: a DisparityBackend; ``config``: the pipeline's current PipelineConfig.
    """
    info = dict(backend.describe())
    info.update({name: str(value) for name, value in config.backend_options.items()})
    info.update({'scale': str(config.scale), 'z_near': str(config.z_near),
                 'z_far': str(config.z_far)})
    info.update(device_memory(backend.device))
    return info

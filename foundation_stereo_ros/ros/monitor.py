"""What the node tells its user besides outputs: throttled warnings, input watchdogs, model info.

No rclpy here (the ROS glue's logic, testable on scripted times): the node hands in a ``warn``
function (its logger's) and the resolved topic names, and calls these from its callbacks,
worker and diagnostics timer.
:class:`NodeMonitor` is thread-safe.

The watchdogs judge silence against the other inputs, never against the clock alone: an input
is silent when it said nothing for longer than the timeout while another input delivered at
least two messages of other frames (stamps other than its last), so a camera slower than the
timeout, or a check that runs between the messages of one frame (in whatever order they
arrive), raises nothing. Silence counts from the first message
of any input, not from the node's start. When inputs arrive but form no set, the warning names
the cause the counters show (a CameraInfo stamped 0, repeated stamps, images lost on the way)
before blaming differing stamps.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from foundation_stereo_ros.ros.diagnostics import device_memory
from foundation_stereo_ros.ros.topic_names import LEFT_IMAGE, LEFT_INFO, RIGHT_IMAGE, RIGHT_INFO

WARN_PERIOD = 5.0  # seconds between repeats of one kind of warning
# An image input that delivers less than this share of its CameraInfo's messages loses images.
LOSS_SHARE = 0.5
_PAIRS = ((LEFT_IMAGE, LEFT_INFO), (RIGHT_IMAGE, RIGHT_INFO))


class NodeMonitor:
    """Throttled warnings and the watchdogs on the node's four inputs."""

    def __init__(self, warn: Callable[[str], None], topics: Sequence[str], *,
                 camera_info_timeout: float, sync_policy: str, slop: float,
                 cache_camera_info: bool = False) -> None:
        """``topics``: the resolved input topic names, in INPUT_TOPICS order."""
        self._emit = warn
        self.topics = tuple(topics)
        self._timeout = camera_info_timeout
        self._sync_policy = sync_policy
        self._slop = slop
        self._cached_infos = cache_camera_info
        n = len(self.topics)
        # Per input: subscribed best effort (the node sets it once its subscriptions exist).
        self.best_effort: list[bool] = [False] * n
        self._last_input: list[float | None] = [None] * n
        # Per input i: when another input first delivered after i's last message, and
        # _after[i][j]: messages input j delivered since then.
        self._others_since: list[float | None] = [None] * n
        self._after = [[0] * n for _ in range(n)]
        # Since the last synchronised set, per input: first arrival, count, last stamp and
        # messages that repeated the stamp before them.
        self._first_since_set: list[float | None] = [None] * n
        self._count_since_set = [0] * n
        self._repeats_since_set = [0] * n
        self._last_stamp: list[int | None] = [None] * n
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

    def input_arrived(self, index: int, now: float, stamp_ns: int | None = None) -> None:
        """Note that a message stamped ``stamp_ns`` arrived on input ``index``."""
        with self._lock:
            self._last_input[index] = now
            self._others_since[index] = None
            self._after[index] = [0] * len(self.topics)
            for other, since in enumerate(self._others_since):
                # A message of the frame ``other`` last delivered is no sign of its silence.
                same_frame = stamp_ns is not None and stamp_ns == self._last_stamp[other]
                if other != index and not same_frame:
                    if since is None:
                        self._others_since[other] = now
                    self._after[other][index] += 1
            if self._first_since_set[index] is None:
                self._first_since_set[index] = now
            self._count_since_set[index] += 1
            if stamp_ns is not None:
                if stamp_ns == self._last_stamp[index]:
                    self._repeats_since_set[index] += 1
                self._last_stamp[index] = stamp_ns

    def set_matched(self, now: float) -> None:
        """Note that the synchroniser completed a set."""
        with self._lock:
            n = len(self.topics)
            self._first_since_set = [None] * n
            self._count_since_set = [0] * n
            self._repeats_since_set = [0] * n

    def check_inputs(self, now: float) -> None:
        """Warn about silent inputs, and about inputs that arrive but never form a set."""
        with self._lock:
            last_input = list(self._last_input)
            others_since = list(self._others_since)
            most_after = [max(row) for row in self._after]
            first_since_set = list(self._first_since_set)
        timeout = self._timeout
        for index, since in enumerate(others_since):
            if since is None:
                continue
            if self._cached_infos and index in (LEFT_INFO, RIGHT_INFO) and last_input[index]:
                continue  # one CameraInfo is all it needs
            # Silent: for longer than the timeout, and another input delivered two messages
            # or more after this one's last (one is what a frame slower than the timeout
            # shows when the check runs between its image and its CameraInfo).
            if most_after[index] < 2 or now - (last_input[index] or since) <= timeout:
                continue
            arriving = [self.topics[i] for i, t in enumerate(last_input)
                        if i != index and t is not None and now - t <= timeout]
            if arriving:
                self.warn(f'silent_{index}', self._silence_message(
                    index, now - (last_input[index] or since), arriving), now)
        # The inputs a set waits for (not the cached CameraInfo, with cache_camera_info).
        waited = [t for i, t in enumerate(first_since_set)
                  if not (self._cached_infos and i in (LEFT_INFO, RIGHT_INFO))]
        if all(t is not None for t in waited) and now - max(waited) > timeout:
            kinds, cause = self._no_set_cause()
            self.warn(f'no_sets_{kinds}', 'all inputs arrive but no synchronised set for '
                      f'{now - min(waited):.1f} s: {cause}', now)

    def _silence_message(self, index: int, silent: float, arriving: list[str]) -> str:
        topic = self.topics[index]
        if index in (LEFT_INFO, RIGHT_INFO):
            image = self.topics[LEFT_IMAGE if index == LEFT_INFO else RIGHT_IMAGE]
            if image in arriving:
                return (f'images arrive on {image} but no CameraInfo on {topic} for '
                        f'{silent:.1f} s: start the camera_info publisher or remap the topic '
                        '(cache_camera_info:=true if it is published only once)')
        never = self._last_input[index] is None
        message = (f'no message on {topic} {"yet" if never else ""} for {silent:.1f} s while '
                   f'{", ".join(arriving)} arrive: check that its publisher runs and the topic '
                   'name or remap (ros2 topic info -v shows publishers and their QoS)').replace(
                       '  ', ' ')
        if index in (LEFT_IMAGE, RIGHT_IMAGE) and self.best_effort[index]:
            # The camera runs (others arrive); large images are what best effort loses whole.
            message += (f'; if its images are large (megabytes each), best effort delivery '
                        'loses every one of them: subscribe reliably with qos_overrides.'
                        f'{topic}.subscription.reliability:=reliable')
        return message

    def _no_set_cause(self) -> tuple[str, str]:
        """(kinds of causes, for throttling; what the counters say and what to do)."""
        with self._lock:
            counts = list(self._count_since_set)
            repeats = list(self._repeats_since_set)
            stamps = list(self._last_stamp)
        topics = self.topics
        causes = []
        for image in (LEFT_IMAGE, RIGHT_IMAGE):
            if stamps[image] == 0:
                causes.append(('zero_stamp_images', (
                    f'the images on {topics[image]} are stamped 0 too (their driver does not '
                    'stamp them), so every frame carries one stamp and only the first forms '
                    'a set (a stamp already used is dropped), and latency and tf lookups '
                    "are meaningless: fix the driver's stamps (cache_camera_info cannot help "
                    'images)')))
        for info in (LEFT_INFO, RIGHT_INFO):
            if stamps[info] == 0 and not self._cached_infos:  # cached: its stamp is unused
                causes.append(('zero_stamp', (
                    f'the CameraInfo on {topics[info]} is stamped 0 (its driver does not stamp '
                    "it), so it never matches an image: fix the driver's stamps or set "
                    'cache_camera_info:=true')))
        for index, repeated in enumerate(repeats):
            if repeated and stamps[index] != 0:
                causes.append(('repeats', repeated_stamps_text(topics[index], repeated,
                                                               counts[index])))
        for image, info in _PAIRS:
            if counts[info] and counts[image] < LOSS_SHARE * counts[info]:
                causes.append(('lost', (
                    f'{topics[image]} delivered {counts[image]} messages while {topics[info]} '
                    f'delivered {counts[info]}: images are lost on the way (best effort QoS with '
                    'large images or a weak link); subscribe reliably (qos_overrides.'
                    f'{topics[image]}.subscription.reliability: reliable) or lower the '
                    'resolution or rate')))
        if causes:
            return (','.join(sorted({kind for kind, _ in causes})),
                    '; '.join(text for _, text in causes))
        known = [stamp for stamp in stamps if stamp is not None]
        spread = f'latest ones span {(max(known) - min(known)) / 1e9:.6f} s' if known else ''
        if self._sync_policy == 'exact':
            return 'stamps', (f'the stamps of the four inputs differ ({spread}): try '
                              'sync_policy:=approximate')
        return 'stamps', (f'the stamps of the four inputs differ by more than slop={self._slop} '
                          f's ({spread}): raise slop')


def repeated_stamps_text(topic: str, repeated: int, count: int) -> str:
    """Say that ``topic`` repeats stamps (``repeated`` of ``count`` messages), and the fix."""
    return (f'{topic} repeats stamps ({repeated} of {count} messages carry the stamp of the '
            'one before, and a stamp already used is dropped): stamp each message with its '
            'capture time')


def model_info(backend: Any, config: Any) -> dict[str, str]:
    """Return the model's identity and the settings in force, as strings for diagnostics.

    ``backend``: a DisparityBackend; ``config``: the pipeline's current PipelineConfig.
    """
    info = dict(backend.describe())
    info.update({name: str(value) for name, value in config.backend_options.items()})
    # Every pipeline setting in force: the scale, the z range and the trust filters.
    info.update({name: str(value) for name, value in vars(config).items()
                 if name != 'backend_options'})
    info.update(device_memory(backend.device))
    return info

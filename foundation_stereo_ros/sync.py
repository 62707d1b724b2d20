"""Time synchronisation of the four stereo inputs.

Pure Python (no rclpy), so it is shared by the node and the rosbag tool and unit-tested alone.

* :class:`StereoSynchronizer` groups messages from N inputs (left image, left info, right
  image, right info) into sets, with the two policies of ``message_filters``:
  ``exact`` (all stamps equal, like ``TimeSynchronizer``) and ``approximate`` (all stamps
  within ``slop`` seconds, like ``ApproximateTimeSynchronizer``). Each input keeps at most
  ``queue_size`` pending messages. Sets are emitted in time order: once a set is emitted,
  everything older is dropped, because the node only ever wants the newest data.
* A stamp that goes backwards on an input (a bag played in a loop, a restarted driver) resets
  every queue once and reports it through ``on_reset``, instead of silently stalling until
  time catches up with the old stamps.
* :class:`CachedInputSynchronizer` synchronises only some inputs and completes each set with
  the latest message of the others (CameraInfo published once: ``cache_camera_info``).

The newest complete sets go to the worker through
:class:`~foundation_stereo_ros.scheduling.CameraScheduler` (one slot per camera).
"""
from __future__ import annotations

import itertools
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

SYNC_POLICIES = ('exact', 'approximate')


@dataclass
class SyncCounters:
    """Message accounting of a :class:`StereoSynchronizer` (all monotonic)."""

    received: list[int] = field(default_factory=list)  # per input
    matched: int = 0          # complete sets emitted
    dropped: int = 0          # messages discarded without ever being part of a set
    resets: int = 0           # times the queues were reset because a stamp went backwards

    def copy(self) -> SyncCounters:
        """Return a snapshot that later updates do not touch."""
        return SyncCounters(list(self.received), self.matched, self.dropped, self.resets)


class StereoSynchronizer:
    """Group messages from ``num_inputs`` inputs into time-synchronised sets.

    Call :meth:`add` for every message; it returns the list of messages (one per input, in
    input order) when the message completed a set, else ``None``. Thread-safe.
    """

    def __init__(self, num_inputs: int = 4, *, policy: str = 'exact', queue_size: int = 10,
                 slop: float = 0.01,
                 on_reset: Callable[[int, int, int, list[int]], None] | None = None) -> None:
        """Create a synchroniser.

        Args:
            num_inputs: number of inputs that form a set (>= 1).
            policy: ``'exact'`` or ``'approximate'``.
            queue_size: pending messages kept per input (>= 1); older ones are dropped.
            slop: for ``'approximate'``, largest spread of stamps in a set, seconds (>= 0).
            on_reset: called as ``on_reset(input_index, previous_ns, new_ns, discarded)`` when a
                stamp went backwards on an input and the queues were reset; ``discarded``: the
                pending messages dropped from each input's queue.
        """
        if policy not in SYNC_POLICIES:
            raise ValueError(f'sync policy {policy!r} is not one of {SYNC_POLICIES}')
        if num_inputs < 1:
            raise ValueError(f'num_inputs must be >= 1, got {num_inputs}')
        if queue_size < 1:
            raise ValueError(f'queue_size must be >= 1, got {queue_size}')
        if not slop >= 0.0:
            raise ValueError(f'slop must be >= 0 seconds, got {slop}')
        self.num_inputs = num_inputs
        self.policy = policy
        self.queue_size = int(queue_size)
        self.slop_ns = round(slop * 1e9)
        self.on_reset = on_reset
        self._lock = threading.Lock()
        self._queues: list[deque[tuple[int, Any]]] = [deque() for _ in range(num_inputs)]
        self._last_stamp: list[int | None] = [None] * num_inputs
        # Stamp of each input's message in the last emitted set.
        self._last_emitted: list[int | None] = [None] * num_inputs
        self._counters = SyncCounters(received=[0] * num_inputs)

    @property
    def counters(self) -> SyncCounters:
        """Return a snapshot of the counters."""
        with self._lock:
            return self._counters.copy()

    def pending(self) -> list[int]:
        """Return how many messages wait in each input queue."""
        with self._lock:
            return [len(q) for q in self._queues]

    def add(self, index: int, stamp_ns: int, msg: Any) -> list[Any] | None:
        """Add ``msg`` stamped ``stamp_ns`` (integer nanoseconds) on input ``index``.

        Returns the complete set (messages in input order) if this message completed one.
        """
        if not 0 <= index < self.num_inputs:
            raise IndexError(f'input index {index} out of range 0..{self.num_inputs - 1}')
        stamp_ns = int(stamp_ns)
        reset_info = None
        with self._lock:
            self._counters.received[index] += 1
            last = self._last_stamp[index]
            if last is not None and stamp_ns < last:
                # Time went backwards on this input: nothing queued can match the new
                # timeline, and waiting for old stamps to come back would stall forever.
                discarded = [len(q) for q in self._queues]
                self._counters.dropped += sum(discarded)
                self._counters.resets += 1
                self._clear()
                reset_info = (index, last, stamp_ns, discarded)
            self._last_stamp[index] = stamp_ns
            result = self._add_locked(index, stamp_ns, msg)
        if reset_info is not None and self.on_reset is not None:
            self.on_reset(*reset_info)
        return result

    # -- internals (called with the lock held) ----------------------------------------------

    def _clear(self) -> None:
        for q in self._queues:
            q.clear()
        self._last_stamp = [None] * self.num_inputs
        self._last_emitted = [None] * self.num_inputs

    def _add_locked(self, index: int, stamp_ns: int, msg: Any) -> list[Any] | None:
        emitted = self._last_emitted[index]
        if emitted is not None and stamp_ns <= emitted:
            # A repeat of a stamp already used in a set: it can only form a stale set.
            self._counters.dropped += 1
            return None
        queue = self._queues[index]
        if queue and queue[-1][0] == stamp_ns:
            # Same stamp twice on one input: keep the newer message.
            queue.pop()
            self._counters.dropped += 1
        queue.append((stamp_ns, msg))
        while len(queue) > self.queue_size:
            queue.popleft()
            self._counters.dropped += 1
        if self.policy == 'exact':
            chosen = self._match_exact(stamp_ns)
        else:
            chosen = self._match_approximate(index, stamp_ns)
        if chosen is None:
            return None
        return self._emit(chosen)

    def _match_exact(self, stamp_ns: int) -> list[int] | None:
        positions = []
        for q in self._queues:
            pos = next((k for k, (s, _) in enumerate(q) if s == stamp_ns), None)
            if pos is None:
                return None
            positions.append(pos)
        return positions

    def _match_approximate(self, index: int, stamp_ns: int) -> list[int] | None:
        # Candidates per input: messages within slop of the new one (the new one itself for
        # its own input). Among all combinations, take the one with the smallest spread of
        # stamps, newest on ties. Queues are short, so the product stays small.
        candidates: list[list[int]] = []
        for j, q in enumerate(self._queues):
            if j == index:
                candidates.append([len(q) - 1])
                continue
            near = [k for k, (s, _) in enumerate(q) if abs(s - stamp_ns) <= self.slop_ns]
            if not near:
                return None
            candidates.append(near)
        best: tuple[int, int, tuple[int, ...]] | None = None
        for combo in itertools.product(*candidates):
            stamps = [self._queues[j][k][0] for j, k in enumerate(combo)]
            spread = max(stamps) - min(stamps)
            if spread > self.slop_ns:
                continue
            key = (spread, -sum(stamps))
            if best is None or key < best[:2]:
                best = (key[0], key[1], combo)
        return None if best is None else list(best[2])

    def _emit(self, positions: Sequence[int]) -> list[Any]:
        msgs = []
        stamps = []
        for q, pos in zip(self._queues, positions):
            stamp, msg = q[pos]
            msgs.append(msg)
            stamps.append(stamp)
            # Queues are in time order: everything before the chosen message is older than
            # the set just emitted and only ever wanted for an older set, which is stale.
            for _ in range(pos):
                q.popleft()
                self._counters.dropped += 1
            q.popleft()
        self._last_emitted = stamps
        self._counters.matched += 1
        return msgs


class CachedInputSynchronizer:
    """A :class:`StereoSynchronizer` where some inputs are not synchronised but cached.

    Messages on the ``cached`` inputs (the CameraInfo of a driver or bag that publishes it once
    or rarely) only replace that input's latest message; the other inputs are synchronised by
    stamp as usual, and each of their sets is completed with the latest cached messages (until
    every cached input has a message, the newest set waits for them and older ones are
    dropped). Same interface as
    :class:`StereoSynchronizer`; input indices, counters and ``on_reset`` use the full input
    numbering.
    """

    def __init__(self, num_inputs: int, cached: Sequence[int], *,
                 on_reset: Callable[[int, int, int, list[int]], None] | None = None,
                 **options: Any) -> None:
        """Synchronise all inputs but ``cached``; ``options``: :class:`StereoSynchronizer`'s."""
        self.num_inputs = num_inputs
        self.cached = tuple(sorted(set(cached)))
        self._live = [i for i in range(num_inputs) if i not in self.cached]
        if not self._live or any(not 0 <= i < num_inputs for i in self.cached):
            raise ValueError(f'cached inputs {cached} must be some of 0..{num_inputs - 1}')
        self._on_reset = on_reset
        self._inner = StereoSynchronizer(len(self._live), on_reset=self._reset, **options)
        self._lock = threading.Lock()
        self._latest: dict[int, Any] = {}
        self._received = [0] * num_inputs
        self._incomplete = 0  # sets dropped because a cached input had no message yet
        self._held: list[Any] | None = None  # the newest such set, completed when one comes

    @property
    def counters(self) -> SyncCounters:
        """Return a snapshot of the counters.

        A set dropped for want of a cached message counts its messages as dropped.
        """
        inner = self._inner.counters
        with self._lock:
            received = list(self._received)
            incomplete = self._incomplete
        for live, count in zip(self._live, inner.received):
            received[live] = count
        return SyncCounters(received, inner.matched - incomplete,
                            inner.dropped + incomplete * len(self._live), inner.resets)

    def pending(self) -> list[int]:
        """Return how many messages wait in each input queue (0 for the cached inputs)."""
        pending = [0] * self.num_inputs
        for live, count in zip(self._live, self._inner.pending()):
            pending[live] = count
        return pending

    def add(self, index: int, stamp_ns: int, msg: Any) -> list[Any] | None:
        """Add ``msg``; return the complete set (in input order) if it completed one."""
        with self._lock:
            if index in self.cached:
                self._received[index] += 1
                self._latest[index] = msg
                matched, self._held = self._held, None
                return None if matched is None else self._complete(matched)
        matched = self._inner.add(self._live.index(index), stamp_ns, msg)
        if matched is None:
            return None
        with self._lock:
            return self._complete(matched)

    def _complete(self, matched: list[Any]) -> list[Any] | None:
        """Return the full set of a synchronised one, or None (held) while a cache is empty."""
        if len(self._latest) < len(self.cached):
            # The first CameraInfo may come just after its images: hold the newest set.
            if self._held is not None:
                self._incomplete += 1
            self._held = matched
            return None
        full = [None] * self.num_inputs
        for live, item in zip(self._live, matched):
            full[live] = item
        for cached in self.cached:
            full[cached] = self._latest[cached]
        return full

    def _reset(self, index: int, previous_ns: int, new_ns: int, discarded: list[int]) -> None:
        if self._on_reset is not None:
            full = [0] * self.num_inputs
            for live, count in zip(self._live, discarded):
                full[live] = count
            self._on_reset(self._live[index], previous_ns, new_ns, full)


def make_synchronizer(num_inputs: int, *, cached: Sequence[int] = (), **options: Any,
                      ) -> StereoSynchronizer | CachedInputSynchronizer:
    """Build a synchroniser of ``num_inputs`` inputs; ``cached`` ones reuse their latest."""
    if cached:
        return CachedInputSynchronizer(num_inputs, cached, **options)
    return StereoSynchronizer(num_inputs, **options)

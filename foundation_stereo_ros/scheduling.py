"""Newest sets of several cameras for one worker: fair service and per-camera rate caps.

One node serves several stereo cameras with one model. Each camera's callbacks drop its newest
complete set into that camera's slot (an older one not yet taken is replaced and counted, so
latency cannot grow); the worker takes, in one call, the newest set of *every* camera that has
one, so one round serves each waiting camera once and no camera
starves however slow the model is. Within a round the sets come oldest first. A camera with a
rate cap is left out of the rounds until ``1 / max_rate`` seconds have passed since its last
set was taken; sets it delivers meanwhile replace each other (counted as ``capped``).

Pure Python (no rclpy), thread-safe; the clock is injectable for tests.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar('T')


@dataclass
class CameraCounters:
    """Accounting of one camera's slot (all monotonic)."""

    offered: int = 0       # sets put into the slot
    taken: int = 0         # sets handed to the worker
    overwritten: int = 0   # sets replaced before the worker took them (model busy)
    capped: int = 0        # sets replaced while the camera's rate cap held it back


class CameraScheduler(Generic[T]):
    """One newest-set slot per camera, taken round by round by one worker."""

    def __init__(self, count: int, max_rates: Sequence[float] | None = None, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """``count`` cameras; ``max_rates``: sets per second per camera (0: no cap)."""
        if count < 1:
            raise ValueError(f'a scheduler needs at least one camera, got {count}')
        self._count = count
        self._clock = clock
        self._cond = threading.Condition()
        self._items: list[tuple[float, T] | None] = [None] * count  # (time put, set)
        self._last_taken: list[float | None] = [None] * count
        self._periods = [0.0] * count
        self._counters = [CameraCounters() for _ in range(count)]
        self._closed = False
        self.set_max_rates(max_rates or [0.0] * count)

    def set_max_rates(self, max_rates: Sequence[float]) -> None:
        """Change the rate caps (one per camera, 0: none); applies from the next round."""
        if len(max_rates) != self._count:
            raise ValueError(f'{len(max_rates)} rate caps for {self._count} cameras')
        if any(rate < 0 for rate in max_rates):
            raise ValueError(f'rate caps must be 0 (none) or positive, got {list(max_rates)}')
        with self._cond:
            self._periods = [1.0 / rate if rate > 0 else 0.0 for rate in max_rates]
            self._cond.notify_all()

    def counters(self, camera: int) -> CameraCounters:
        """Return a snapshot of one camera's counters."""
        with self._cond:
            c = self._counters[camera]
            return CameraCounters(c.offered, c.taken, c.overwritten, c.capped)

    def put(self, camera: int, item: T) -> bool:
        """Store the newest set of ``camera``; return True if it replaced one not taken."""
        with self._cond:
            if self._closed:
                return False
            now = self._clock()
            replaced = self._items[camera] is not None
            counters = self._counters[camera]
            counters.offered += 1
            if replaced:
                if self._ready_at(camera) > now:
                    counters.capped += 1
                else:
                    counters.overwritten += 1
            self._items[camera] = (now, item)
            self._cond.notify_all()
            return replaced

    def take(self, timeout: float | None = None) -> list[tuple[int, T]]:
        """Return ``(camera, set)`` for every camera whose set may go now, oldest set first.

        Blocks until at least one may go, the scheduler is closed (empty list) or ``timeout``
        seconds pass (empty list).
        """
        deadline = None if timeout is None else self._clock() + timeout
        with self._cond:
            while not self._closed:
                now = self._clock()
                ready = sorted((entry[0], camera) for camera, entry in enumerate(self._items)
                               if entry is not None and self._ready_at(camera) <= now)
                if ready:
                    round_ = []
                    for _, camera in ready:
                        entry = self._items[camera]
                        self._items[camera] = None
                        self._last_taken[camera] = now
                        self._counters[camera].taken += 1
                        round_.append((camera, entry[1]))
                    return round_
                # Wake for a new set, or when a capped camera's set may go.
                waits = [self._ready_at(camera) - now for camera, entry in enumerate(self._items)
                         if entry is not None]
                if deadline is not None:
                    waits.append(deadline - now)
                wait = min(waits) if waits else None
                if wait is not None and wait <= 0:
                    return []  # the deadline passed
                self._cond.wait(wait)
            return []

    def close(self) -> None:
        """Wake the worker; later puts are ignored and takes return an empty list."""
        with self._cond:
            self._closed = True
            self._items = [None] * self._count
            self._cond.notify_all()

    def _ready_at(self, camera: int) -> float:
        last = self._last_taken[camera]
        return -float('inf') if last is None or not self._periods[camera] \
            else last + self._periods[camera]

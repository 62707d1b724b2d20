"""The several-camera scheduler: one round serves every waiting camera, rate caps, counters."""
import threading
import time

import pytest

from foundation_stereo_ros.scheduling import CameraScheduler


class Clock:
    """A clock the test moves by hand."""

    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_a_round_takes_the_newest_set_of_every_camera_oldest_first():
    clock = Clock()
    slots = CameraScheduler(3, clock=clock)
    slots.put(2, 'c1')
    clock.now += 0.01
    slots.put(0, 'a1')
    clock.now += 0.01
    slots.put(0, 'a2')  # replaces a1: the model was busy
    assert slots.take(timeout=0) == [(2, 'c1'), (0, 'a2')]
    assert slots.take(timeout=0) == []
    a, c = slots.counters(0), slots.counters(2)
    assert (a.offered, a.taken, a.overwritten, a.capped) == (2, 1, 1, 0)
    assert (c.offered, c.taken, c.overwritten) == (1, 1, 0)


def test_no_camera_starves_when_one_floods():
    """A camera publishing ten times faster still leaves the others one set per round."""
    clock = Clock()
    slots = CameraScheduler(2, clock=clock)
    served = {0: 0, 1: 0}
    for _ in range(20):  # each round: camera 0 sends 10 sets, camera 1 one
        for i in range(10):
            clock.now += 0.001
            slots.put(0, i)
        slots.put(1, 'x')
        for camera, _ in slots.take(timeout=0):
            served[camera] += 1
    assert served == {0: 20, 1: 20}
    assert slots.counters(0).overwritten == 20 * 9


def test_rate_cap_holds_a_camera_back_and_counts_what_it_replaces():
    clock = Clock()
    slots = CameraScheduler(2, [0.0, 10.0], clock=clock)
    slots.put(0, 'a')
    slots.put(1, 'b')
    assert [c for c, _ in slots.take(timeout=0)] == [0, 1]
    clock.now += 0.05  # half of the capped camera's 0.1 s period
    slots.put(0, 'a')
    slots.put(1, 'b1')
    slots.put(1, 'b2')
    assert slots.take(timeout=0) == [(0, 'a')], 'camera 1 waits for its period'
    assert slots.counters(1).capped == 1 and slots.counters(1).overwritten == 0
    clock.now += 0.05
    assert slots.take(timeout=0) == [(1, 'b2')]
    slots.set_max_rates([0.0, 0.0])
    slots.put(1, 'b3')
    assert slots.take(timeout=0) == [(1, 'b3')]


def test_take_waits_for_a_set_and_close_wakes_it():
    slots = CameraScheduler(2)
    got = []
    worker = threading.Thread(target=lambda: got.append(slots.take(timeout=30.0)))
    worker.start()
    slots.put(1, 'late')
    worker.join(timeout=30.0)
    assert got == [[(1, 'late')]]
    worker = threading.Thread(target=lambda: got.append(slots.take(timeout=30.0)))
    worker.start()
    slots.close()
    worker.join(timeout=30.0)
    assert not worker.is_alive() and got[-1] == []
    assert slots.put(0, 'ignored') is False


def test_capped_set_is_taken_once_its_period_passed_without_a_new_put():
    """A real clock: take() wakes by itself when the cap lets the held set go."""
    slots = CameraScheduler(1, [20.0])
    slots.put(0, 1)
    assert slots.take(timeout=5.0) == [(0, 1)]
    slots.put(0, 2)
    assert slots.take(timeout=5.0) == [(0, 2)]


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match='at least one camera'):
        CameraScheduler(0)
    with pytest.raises(ValueError, match='2 rate caps for 3 cameras'):
        CameraScheduler(3, [1.0, 2.0])
    with pytest.raises(ValueError, match='0 \\(none\\) or positive'):
        CameraScheduler(1, [-1.0])


def test_fast_producer_slow_consumer_latency_is_bounded():
    """The worker always gets a recent set, however far a camera runs ahead."""
    slots = CameraScheduler(1)
    ages = []
    produced = [0]
    stop = threading.Event()

    def producer():
        while not stop.is_set():
            produced[0] += 1
            slots.put(0, produced[0])
            time.sleep(0.0005)

    thread = threading.Thread(target=producer)
    thread.start()
    try:
        deadline = time.monotonic() + 60.0  # condition-bound; the deadline only stops a hang
        while (len(ages) < 10 or produced[0] <= 100) and time.monotonic() < deadline:
            ((_, item),) = slots.take(timeout=5.0)
            ages.append(produced[0] - item)
            time.sleep(0.01)  # slow model
    finally:
        stop.set()
        thread.join(timeout=5.0)
    # A set is a few puts old when taken (thread scheduling), never the backlog of the run: a
    # FIFO queue would hand out sets hundreds of puts old by the tenth take.
    assert max(ages) < 30
    assert produced[0] > 100
    assert slots.counters(0).overwritten > 10

"""Unit tests of the stereo synchroniser (no ROS)."""
import pytest

from foundation_stereo_ros.sync import CachedInputSynchronizer, StereoSynchronizer

MS = 1_000_000  # nanoseconds


def feed(sync, stamp_ns, order=(0, 1, 2, 3), tag=None):
    """Add one message per input at ``stamp_ns``; return the set emitted, if any."""
    out = None
    for i in order:
        result = sync.add(i, stamp_ns, (tag or stamp_ns, i))
        if result is not None:
            assert out is None, 'a single frame must complete at most one set'
            out = result
    return out


def test_exact_emits_complete_set_in_input_order():
    sync = StereoSynchronizer(policy='exact')
    assert feed(sync, 100 * MS, order=(2, 0, 3)) is None
    result = sync.add(1, 100 * MS, 'li')
    assert result == [(100 * MS, 0), 'li', (100 * MS, 2), (100 * MS, 3)]
    c = sync.counters
    assert c.matched == 1 and c.received == [1, 1, 1, 1] and c.dropped == 0
    assert sync.pending() == [0, 0, 0, 0]


def test_exact_does_not_match_nearby_stamps():
    sync = StereoSynchronizer(policy='exact')
    sync.add(0, 100 * MS, 'a')
    sync.add(1, 100 * MS, 'b')
    sync.add(2, 101 * MS, 'c')
    assert sync.add(3, 100 * MS, 'd') is None
    assert sync.counters.matched == 0


def test_exact_interleaved_frames_and_stale_set_dropped():
    sync = StereoSynchronizer(policy='exact')
    # Frame 1 incomplete (input 3 missing), frame 2 complete: frame 1 leftovers are dropped.
    feed(sync, 1 * MS, order=(0, 1, 2))
    assert feed(sync, 2 * MS) is not None
    assert sync.pending() == [0, 0, 0, 0]
    assert sync.counters.dropped == 3
    # Frame 3 completes normally afterwards.
    assert feed(sync, 3 * MS) is not None
    assert sync.counters.matched == 2


def test_queue_size_bounds_memory_and_counts_drops():
    sync = StereoSynchronizer(policy='exact', queue_size=3)
    for k in range(10):
        sync.add(0, k * MS, k)  # only the left image ever arrives
    assert sync.pending() == [3, 0, 0, 0]
    assert sync.counters.dropped == 7
    # The three newest can still complete a set.
    assert feed(sync, 9 * MS, order=(1, 2, 3)) is not None


def test_duplicate_stamp_keeps_newest_message():
    sync = StereoSynchronizer(policy='exact')
    sync.add(0, 5 * MS, 'old')
    sync.add(0, 5 * MS, 'new')
    result = feed(sync, 5 * MS, order=(1, 2, 3))
    assert result[0] == 'new'
    assert sync.counters.dropped == 1
    # A repeat of an emitted stamp never forms a second set.
    assert feed(sync, 5 * MS) is None


def test_approximate_matches_within_slop_only():
    sync = StereoSynchronizer(policy='approximate', slop=0.005)
    sync.add(0, 100 * MS, 'l')
    sync.add(1, 101 * MS, 'li')
    sync.add(2, 103 * MS, 'r')
    assert sync.add(3, 106 * MS, 'ri') is None  # 6 ms spread > 5 ms
    # A newer left image brings the spread to 5 ms: matched, the older left dropped.
    assert sync.add(0, 102 * MS, 'l2') == ['l2', 'li', 'r', 'ri']
    assert sync.counters.dropped == 1


def test_approximate_picks_tightest_set():
    sync = StereoSynchronizer(policy='approximate', slop=0.02)
    for i, s in ((0, 100), (1, 100), (2, 90), (2, 99)):
        sync.add(i, s * MS, (i, s))
    result = sync.add(3, 101 * MS, (3, 101))
    assert result == [(0, 100), (1, 100), (2, 99), (3, 101)]
    # (2, 90) was older than the chosen right image: dropped.
    assert sync.pending() == [0, 0, 0, 0]


def test_approximate_steady_stream_with_jitter():
    sync = StereoSynchronizer(policy='approximate', slop=0.004, queue_size=5)
    sets = []
    for k in range(50):
        base = k * 33 * MS
        for i, jitter in enumerate((0, 1, 2, -1)):
            r = sync.add(i, base + jitter * MS, k)
            if r is not None:
                sets.append(r)
    assert len(sets) == 50
    assert all(len(set(s)) == 1 for s in sets)  # never mixes frames


def test_approximate_zero_slop_behaves_like_exact():
    sync = StereoSynchronizer(policy='approximate', slop=0.0)
    sync.add(0, 1, 'a')
    sync.add(1, 1, 'b')
    sync.add(2, 2, 'c')
    assert sync.add(3, 1, 'd') is None
    assert sync.add(2, 1, 'e') is None  # 1 < 2 on input 2: backwards -> reset
    assert sync.counters.resets == 1


def test_stamps_going_backwards_reset_once_and_recover():
    resets = []
    sync = StereoSynchronizer(policy='exact', on_reset=lambda *a: resets.append(a))
    for k in range(1, 6):
        assert feed(sync, k * 1000 * MS) is not None
    sync.add(0, 5500 * MS, 'half')  # pending when the loop restarts
    # Bag loops: back to t=1 s. One reset, reported once, then sets flow again.
    assert feed(sync, 1000 * MS) is not None
    assert feed(sync, 2000 * MS) is not None
    assert resets == [(0, 5500 * MS, 1000 * MS, [1, 0, 0, 0])]  # input 0 went back; 'half' lost
    c = sync.counters
    assert c.resets == 1 and c.matched == 7
    assert c.dropped == 1  # the pending 'half' message


def test_invalid_arguments_rejected():
    with pytest.raises(ValueError, match='policy'):
        StereoSynchronizer(policy='fuzzy')
    with pytest.raises(ValueError, match='queue_size'):
        StereoSynchronizer(queue_size=0)
    with pytest.raises(ValueError, match='slop'):
        StereoSynchronizer(policy='approximate', slop=-1.0)
    with pytest.raises(IndexError):
        StereoSynchronizer().add(4, 0, None)


def test_cached_inputs_complete_sets_with_their_latest_message():
    """Inputs 1 and 3 (CameraInfo) recorded once, stamped 0: every image pair forms a set."""
    sync = CachedInputSynchronizer(4, (1, 3), policy='exact')
    assert sync.add(0, 10 * MS, 'L10') is None
    assert sync.add(1, 0, 'info_l') is None
    assert sync.add(2, 10 * MS, 'R10') is None  # the pair waits for the right CameraInfo
    assert sync.add(3, 0, 'info_r') == ['L10', 'info_l', 'R10', 'info_r']
    for k in (11, 12):
        assert sync.add(0, k * MS, f'L{k}') is None
        assert sync.add(2, k * MS, f'R{k}') == [f'L{k}', 'info_l', f'R{k}', 'info_r']
    assert sync.add(1, 0, 'info_l2') is None  # a new calibration replaces the old
    assert sync.add(0, 13 * MS, 'L13') is None
    assert sync.add(2, 13 * MS, 'R13') == ['L13', 'info_l2', 'R13', 'info_r']
    c = sync.counters
    assert c.matched == 4 and c.received == [4, 2, 4, 1] and c.dropped == 0
    assert sync.pending() == [0, 0, 0, 0]


def test_cached_inputs_drop_older_sets_while_waiting_and_map_resets():
    resets = []
    sync = CachedInputSynchronizer(4, (1, 3), policy='exact',
                                   on_reset=lambda *a: resets.append(a))
    for k in (1, 2):  # no CameraInfo yet: the newer pair replaces the older one
        sync.add(0, k * MS, f'L{k}')
        sync.add(2, k * MS, f'R{k}')
    sync.add(1, 0, 'il')
    assert sync.add(3, 0, 'ir') == ['L2', 'il', 'R2', 'ir']
    assert sync.counters.dropped == 2 and sync.counters.matched == 1
    sync.add(0, 5 * MS, 'L5')
    sync.add(2, 1 * MS, 'R1')  # right image goes back: reported with the full numbering
    assert resets == [(2, 2 * MS, 1 * MS, [1, 0, 0, 0])]

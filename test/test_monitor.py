"""The node's watchdogs (monitor.py) on scripted arrival times: no ROS, no clock."""
from foundation_stereo_ros.ros.monitor import NodeMonitor

TOPICS = ('/s/left/image_rect', '/s/left/camera_info', '/s/right/image_rect',
          '/s/right/camera_info')
S = 1_000_000_000  # nanoseconds per second


def monitor(**options):
    said = []
    return NodeMonitor(said.append, TOPICS, camera_info_timeout=1.0,
                       **{'sync_policy': 'exact', 'slop': 0.01, **options}), said


def frame(mon, t, stamp, inputs=(0, 1, 2, 3), stamps=None):
    for index in inputs:
        mon.input_arrived(index, t, (stamps or {}).get(index, stamp))


def test_slow_camera_checked_between_image_and_info_raises_nothing():
    mon, said = monitor()
    for k in range(5):  # a frame every 3 s, its CameraInfo 0.5 s after the images
        t = 100.0 + 3.0 * k  # first input long after the node started
        frame(mon, t, k * S, inputs=(0, 2))
        mon.check_inputs(t + 0.4)
        frame(mon, t + 0.5, k * S, inputs=(1, 3))
        mon.set_matched(t + 0.5)
        mon.check_inputs(t + 2.9)
    assert said == []


def test_a_check_between_the_camera_infos_of_one_frame_raises_nothing():
    """Slow camera whose two CameraInfos arrive in either order, checked between them.

    After frame k's left then right CameraInfo, frame k + 1's right one comes first: it is of
    another frame than the left input's last, but the right CameraInfo of frame k is not.
    """
    mon, said = monitor()
    for k in range(6):
        t = 100.0 + 3.0 * k
        frame(mon, t, k * S, inputs=(0, 2))
        order = (1, 3) if k % 2 == 0 else (3, 1)
        frame(mon, t + 0.5, k * S, inputs=order[:1])
        mon.check_inputs(t + 0.9)  # the left CameraInfo last came 3.4 s ago (timeout 1 s)
        frame(mon, t + 1.0, k * S, inputs=order[1:])
        mon.set_matched(t + 1.0)
    assert said == []


def test_silent_camera_info_and_silent_image_are_named():
    mon, said = monitor()
    for k in range(20):  # 10 Hz images, no left CameraInfo ever
        frame(mon, 10.0 + 0.1 * k, k * S, inputs=(0, 2, 3))
    mon.check_inputs(12.0)
    assert len(said) == 1
    assert said[0].startswith('images arrive on /s/left/image_rect but no CameraInfo on '
                              '/s/left/camera_info for 2.0 s')  # since the first image
    mon, said = monitor()
    for k in range(20):
        frame(mon, 10.0 + 0.1 * k, k * S, inputs=(0, 1, 3))
    mon.check_inputs(12.0)
    assert said[0].startswith('no message on /s/right/image_rect yet for 2.0 s while')


def test_no_set_causes_from_the_counters():
    cases = {  # stamps per input (None: the frame's), expected words
        'info stamped 0': ({1: 0, 3: 0}, 'the CameraInfo on /s/left/camera_info is stamped 0'),
        'repeated stamps': ({0: 7 * S}, '/s/left/image_rect repeats stamps (19 of 20'),
        'differ': ({2: None}, 'the stamps of the four inputs differ (latest ones span 0.0'),
    }
    for name, (fixed, words) in cases.items():
        mon, said = monitor()
        for k in range(20):
            stamps = {i: (k * S + 5_000_000 if s is None else s) for i, s in fixed.items()}
            frame(mon, 10.0 + 0.1 * k, k * S, stamps=stamps)
        mon.check_inputs(12.0)
        assert len(said) == 1 and words in said[0], (name, said)
        assert ('approximate' in said[0]) == (name == 'differ'), (name, said)
    mon, said = monitor()
    for k in range(20):  # a quarter of the left images arrive
        frame(mon, 10.0 + 0.1 * k, k * S, inputs=(0, 1, 3) if k % 4 == 0 else (1, 2, 3))
    mon.check_inputs(12.0)
    assert '/s/left/image_rect delivered 5 messages while /s/left/camera_info delivered 20' \
        in said[0]


def test_cached_camera_info_is_not_awaited():
    """cache_camera_info: CameraInfo once; images that never pair are still reported."""
    mon, said = monitor(cache_camera_info=True)
    frame(mon, 10.0, 0, inputs=(1, 3))
    for k in range(20):  # right images 5 ms later than the left ones
        frame(mon, 10.0 + 0.1 * k, k * S, inputs=(0, 2), stamps={2: k * S + 5_000_000})
    mon.check_inputs(12.0)
    # One warning: no set; the CameraInfo, silent since its one message, is not reported.
    assert len(said) == 1 and 'no synchronised set' in said[0], said


def test_everything_stamped_0_says_the_images_are_too():
    """Images stamped 0 as well: cache_camera_info cannot help, and the warning says so."""
    for cached in (False, True):
        mon, said = monitor(cache_camera_info=cached)
        for k in range(20):
            frame(mon, 10.0 + 0.1 * k, 0)
            if k == 0:
                mon.set_matched(10.0)  # the first frame forms the one set there will be
        mon.check_inputs(12.0)
        assert len(said) == 1, said
        assert 'the images on /s/left/image_rect are stamped 0 too' in said[0], said
        assert 'only the first forms a set' in said[0]
        # The CameraInfo advice only where it applies.
        assert ('set cache_camera_info:=true' in said[0]) == (not cached), said


def test_silent_best_effort_image_names_large_messages_and_the_reliable_fix():
    for best_effort in (True, False):
        mon, said = monitor()
        mon.best_effort = [best_effort, False, best_effort, False]
        for k in range(20):
            frame(mon, 10.0 + 0.1 * k, k * S, inputs=(1, 2, 3))
        mon.check_inputs(12.0)
        hint = ('best effort delivery loses every one of them: subscribe reliably with '
                'qos_overrides./s/left/image_rect.subscription.reliability:=reliable')
        assert (hint in said[0]) == best_effort, said

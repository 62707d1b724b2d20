"""Unit tests of the node's counters and the DiagnosticArray built from them (no ROS graph)."""
import math

import pytest
from diagnostic_msgs.msg import DiagnosticStatus

from foundation_stereo_ros.ros.diagnostics import (
    NodeStats,
    build_diagnostic_array,
    device_memory,
)

INPUTS = ('left/image_rect', 'left/camera_info', 'right/image_rect', 'right/camera_info')
MODEL = {'backend': 'sgbm', 'device': 'cpu'}


def statuses(snap):
    array = build_diagnostic_array(snap, prefix='ns/stereo', hardware_id='cpu', model=MODEL)
    return {s.name.split(': ')[1]: s for s in array.status}


def values(status):
    return {kv.key: kv.value for kv in status.values}


def test_rates_latency_and_stage_means_per_window():
    stats = NodeStats(INPUTS, now=100.0)
    for _ in range(20):
        for index in range(4):
            stats.count_input(index)
    stats.count_processed(0.2, {'inference': 0.1, 'publish': 0.01}, now=100.5)
    stats.count_processed(0.4, {'inference': 0.3, 'publish': 0.03}, now=101.5)
    snap = stats.snapshot(102.0, {'sets dropped (model busy)': 7})
    assert snap.input_rates == [10.0] * 4 and snap.processed_rate == 1.0
    assert snap.latency_mean == pytest.approx(0.3) and snap.latency_max == 0.4
    assert snap.stage_means == pytest.approx({'inference': 0.2, 'publish': 0.02})

    s = statuses(snap)
    assert s['input'].level == DiagnosticStatus.OK
    assert values(s['input'])['left/image_rect rate (Hz)'] == '10.00'
    assert values(s['input'])['sync sets dropped (model busy)'] == '7'
    p = values(s['processing'])
    assert p['output rate (Hz)'] == '1.00' and p['latency mean (ms)'] == '300.0'
    assert p['stage inference (ms)'] == '200.0' and p['pairs processed'] == '2'
    assert s['processing'].level == DiagnosticStatus.OK
    assert s['model'].hardware_id == 'cpu' and values(s['model']) == MODEL

    assert p['stage times age (s)'] == '0.5'

    # The next window starts empty; totals carry on, and the stage times of the last pairs
    # stay (a model slower than the diagnostics period), with their age.
    snap = stats.snapshot(104.0)
    assert snap.input_rates == [0.0] * 4 and snap.input_totals == [20] * 4
    assert math.isnan(snap.latency_mean)
    assert snap.stage_means == pytest.approx({'inference': 0.2, 'publish': 0.02})
    p = values(statuses(snap)['processing'])
    assert p['latency mean (ms)'] == 'n/a' and p['stage inference (ms)'] == '200.0'
    assert p['stage times age (s)'] == '2.5'
    # New pairs replace them.
    stats.count_processed(0.1, {'inference': 0.05, 'publish': 0.01}, now=104.5)
    snap = stats.snapshot(105.0)
    assert snap.stage_means == pytest.approx({'inference': 0.05, 'publish': 0.01})
    assert snap.stage_age == pytest.approx(0.5)


def test_no_stage_times_before_the_first_pair():
    stats = NodeStats(INPUTS, now=0.0)
    p = values(statuses(stats.snapshot(1.0))['processing'])
    assert not [k for k in p if k.startswith('stage')]


def test_levels_say_what_is_wrong():
    stats = NodeStats(INPUTS, now=0.0)
    s = statuses(stats.snapshot(1.0))
    assert s['input'].level == DiagnosticStatus.WARN and s['input'].message == 'no input received'
    assert s['processing'].message == 'waiting for input'

    stats.count_input(0)
    stats.count_input(2)
    s = statuses(stats.snapshot(2.0))
    assert s['input'].message == 'no messages on left/camera_info, right/camera_info'
    assert s['processing'].level == DiagnosticStatus.WARN

    for index in range(4):
        stats.count_input(index)
    stats.count_event('out_of_memory')
    stats.count_event('bad_input')
    stats.count_event('bad_input')
    s = statuses(stats.snapshot(3.0))
    assert s['processing'].level == DiagnosticStatus.WARN
    assert 'bad input x2' in s['processing'].message
    assert 'out of memory x1' in s['processing'].message
    assert values(s['processing'])['out of memory'] == '1'

    for index in range(4):
        stats.count_input(index)
    stats.count_event('skipped_no_subscribers')
    s = statuses(stats.snapshot(4.0))
    assert s['processing'].level == DiagnosticStatus.OK
    assert s['processing'].message == 'idle: no subscribers to any output'


def test_unknown_event_rejected_and_cpu_has_no_gpu_memory():
    with pytest.raises(ValueError, match='unknown event'):
        NodeStats(INPUTS, now=0.0).count_event('oops')
    assert device_memory('cpu') == {}


def test_stamps_ahead_of_the_clock_are_a_warning_not_a_negative_latency():
    stats = NodeStats(INPUTS, now=0.0)
    for index in range(4):
        stats.count_input(index)
    stats.count_processed(-1000.25, {'inference': 0.1})  # stamped 1000 s in the future
    processing = statuses(stats.snapshot(1.0))['processing']
    assert processing.level == DiagnosticStatus.WARN
    assert processing.message.startswith('input stamps are 1000250 ms ahead of this clock')


def test_share_of_pixels_each_stage_removed_and_an_empty_output_is_a_warning():
    stats = NodeStats(INPUTS, now=0.0)
    for index in range(4):
        stats.count_input(index)
    stats.count_processed(0.1, {}, {'invalid': 0.1, 'left_right': 0.02, 'edges': 0.0})
    stats.count_processed(0.1, {}, {'invalid': 0.3, 'left_right': 0.04, 'edges': 0.01})
    s = statuses(stats.snapshot(1.0))
    p = values(s['processing'])
    assert p['removed invalid (%)'] == '20.0' and p['removed left right (%)'] == '3.0'
    assert p['removed edges (%)'] == '0.5'
    assert s['processing'].level == DiagnosticStatus.OK

    # Almost nothing left (a baseline in millimetres): WARN, naming the stage.
    for index in range(4):
        stats.count_input(index)
    stats.count_processed(0.1, {}, {'invalid': 0.05, 'z_range': 0.95})
    s = statuses(stats.snapshot(2.0))
    assert s['processing'].level == DiagnosticStatus.WARN
    assert 'z range stage removed 95%' in s['processing'].message

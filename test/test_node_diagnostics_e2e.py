"""The node's /diagnostics with a model slower than the diagnostics period, over DDS.

Most diagnostics periods then finish no pair; the per-stage times of the last pairs must
stay in every report, with their age, instead of vanishing until the next pair.
"""
from __future__ import annotations

import os

from diagnostic_msgs.msg import DiagnosticArray
from node_harness import (
    NodeProcess,
    Rig,
    diagnostics_of,
    wait_until,
)
from stereo_msgs.msg import DisparityImage
from test_node_e2e import (  # noqa: F401
    frame,
    scene,
)


def test_stage_times_stay_between_slow_pairs(ros_context, frame):  # noqa: F811
    namespace = f'/slowdiag{os.getpid()}'
    # 1.5 s per pair, a report every 0.2 s: most reports finish no pair.
    node = NodeProcess('-p', 'backend:=slow', '-p', 'diagnostics_period:=0.2',
                       '-r', f'__ns:={namespace}', FSR_TEST_SLOW_BACKEND='1.5')
    rig = Rig(ros_context, namespace)
    found = []

    def kept_between_pairs():
        for array_msg in rig.messages('/diagnostics'):
            _, values = diagnostics_of(array_msg, 'processing', namespace)
            if values and values['output rate (Hz)'] == '0.00' and \
                    'stage inference (ms)' in values and \
                    float(values['stage times age (s)']) > 0.3:
                found.append(values)
                return True
        return False

    try:
        rig.subscribe('disparity', DisparityImage)
        rig.subscribe('/diagnostics', DiagnosticArray)
        assert wait_until(kept_between_pairs, timeout=90.0,
                          action=lambda: rig.publish(frame)), node.output
    finally:
        rig.close()
        assert node.stop() == 0, node.output
    values = found[0]
    # The inference stage holds the slow backend's sleep.
    assert float(values['stage inference (ms)']) >= 1500.0, values
    assert int(values['pairs processed']) >= 1

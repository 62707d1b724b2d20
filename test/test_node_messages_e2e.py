"""The node's warnings name causes the messages themselves do not show, over DDS.

Each case runs the node as a subprocess (sgbm) and feeds it from a test node.
"""
from __future__ import annotations

import os

from node_harness import (
    NodeProcess,
    Rig,
    wait_until,
)
from stereo_msgs.msg import DisparityImage
from test_node_e2e import (  # noqa: F401
    frame,
    scene,
)


def run_until_said(context, name, text, publish, *params):
    namespace = f'/{name}{os.getpid()}'
    args = ['-p', 'backend:=sgbm', '-p', 'camera_info_timeout:=0.5', '-p',
            'diagnostics_period:=0.2', '-r', f'__ns:={namespace}']
    for param in params:
        args += ['-p', param]
    node = NodeProcess(*args)
    rig = Rig(context, namespace)
    try:
        rig.subscribe('disparity', DisparityImage)
        assert wait_until(lambda: text in node.output, timeout=90.0,
                          action=lambda: publish(rig)), node.output
    finally:
        rig.close()
        assert node.stop() == 0, node.output
    return node.output, namespace


def test_everything_stamped_0_names_the_images(ros_context, frame):  # noqa: F811
    """cache_camera_info:=true and images stamped 0: one set, then the real cause."""
    out, namespace = run_until_said(ros_context, 'zero', 'are stamped 0 too',
                                    lambda rig: rig.publish(frame, sec=0),
                                    'cache_camera_info:=true')
    assert f'the images on {namespace}/left/image_rect are stamped 0 too' in out, out
    assert 'set cache_camera_info:=true' not in out, out


def test_silent_best_effort_image_names_large_messages(ros_context, frame):  # noqa: F811
    """The left images never arrive (as 8000x6000 ones over best effort): the fix is named."""
    out, namespace = run_until_said(ros_context, 'large', 'best effort delivery',
                                    lambda rig: rig.publish(frame, skip=(0,)))
    assert (f'subscribe reliably with qos_overrides.{namespace}/left/image_rect.subscription.'
            'reliability:=reliable') in out, out

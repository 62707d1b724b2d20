"""Entry point of ``python -m``: the synthetic stereo camera node.

The code is :mod:`foundation_stereo_ros.ros.synthetic_camera`; this module keeps the
documented command working::

    python -m foundation_stereo_ros.synthetic.camera_node
"""
import sys

try:  # a Ctrl-C while the guard itself is imported: the same quiet exit (STOPPED)
    from foundation_stereo_ros.interrupts import exit_on_interrupt
except KeyboardInterrupt:  # at once: a second Ctrl-C must not meet finalisation
    import os

    os._exit(0)

with exit_on_interrupt():
    from foundation_stereo_ros.ros.synthetic_camera import main

if __name__ == '__main__':
    sys.exit(main())

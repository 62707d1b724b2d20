"""Entry point of ``python -m``: the stereo node.

The code is :mod:`foundation_stereo_ros.ros.node`; this module keeps the documented command
working::

    python -m foundation_stereo_ros.node --ros-args -p backend:=sgbm
"""
import sys

try:  # a Ctrl-C while the guard itself is imported: the same quiet exit (STOPPED)
    from foundation_stereo_ros.interrupts import exit_on_interrupt
except KeyboardInterrupt:  # at once: a second Ctrl-C must not meet finalisation
    import os

    os._exit(0)

with exit_on_interrupt():
    from foundation_stereo_ros.ros.node import main

if __name__ == '__main__':
    sys.exit(main())

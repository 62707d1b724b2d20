"""Entry point of ``python -m``: the stereo node as a lifecycle (managed) node.

The code is :mod:`foundation_stereo_ros.ros.lifecycle_node`::

    python -m foundation_stereo_ros.lifecycle_node --ros-args -p backend:=sgbm
"""
import sys

from foundation_stereo_ros.interrupts import exit_on_interrupt

with exit_on_interrupt():
    from foundation_stereo_ros.ros.lifecycle_node import main

if __name__ == '__main__':
    sys.exit(main())

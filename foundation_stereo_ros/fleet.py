"""Entry point of ``python -m``: many rosbags on Ray, each the bag tool's output.

The code is :mod:`foundation_stereo_ros.tools.fleet`; this module keeps the documented command
working::

    python -m foundation_stereo_ros.fleet BAGS... --out DIR
"""
import sys

from foundation_stereo_ros.interrupts import INTERRUPTED, exit_on_interrupt

with exit_on_interrupt(INTERRUPTED):
    from foundation_stereo_ros.tools.fleet import main

if __name__ == '__main__':
    sys.exit(main())

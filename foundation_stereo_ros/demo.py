"""Entry point of ``python -m``: the offline demo (one pair to files).

The code is :mod:`foundation_stereo_ros.tools.demo`; this module keeps the documented command
working::

    python -m foundation_stereo_ros.demo --backend sgbm
"""
import sys

try:  # a Ctrl-C while the guard itself is imported: the same quiet exit (INTERRUPTED)
    from foundation_stereo_ros.interrupts import INTERRUPTED, exit_on_interrupt
except KeyboardInterrupt:  # at once: a second Ctrl-C must not meet finalisation
    import os

    os._exit(130)

with exit_on_interrupt(INTERRUPTED):
    from foundation_stereo_ros.tools.demo import main

if __name__ == '__main__':
    sys.exit(main())

"""Entry point of ``python -m``: the valid_iters x scale x hierarchical sweep.

The code is :mod:`foundation_stereo_ros.tools.sweep`; this module keeps the documented command
working::

    python -m foundation_stereo_ros.sweep --help
"""
import sys

try:  # a Ctrl-C while the guard itself is imported: the same quiet exit (INTERRUPTED)
    from foundation_stereo_ros.interrupts import INTERRUPTED, exit_on_interrupt
except KeyboardInterrupt:  # at once: a second Ctrl-C must not meet finalisation
    import os

    os._exit(130)

with exit_on_interrupt(INTERRUPTED):
    from foundation_stereo_ros.tools.sweep import main

if __name__ == '__main__':
    sys.exit(main())

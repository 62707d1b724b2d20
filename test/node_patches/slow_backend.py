"""A test-only backend that sleeps in every inference (see sitecustomize.py)."""
import os
import time

from foundation_stereo_ros.backends.sgbm import SgbmBackend


class SlowBackend(SgbmBackend):
    """SGBM that first sleeps ``FSR_TEST_SLOW_BACKEND`` seconds, printing when it starts/ends."""

    name = 'slow'

    def compute(self, left, right, **options):
        """Print ``slow backend: inference started``, sleep, print ``...finished``, run SGBM."""
        print('slow backend: inference started', flush=True)
        time.sleep(float(os.environ['FSR_TEST_SLOW_BACKEND']))
        print('slow backend: inference finished', flush=True)
        return super().compute(left, right)

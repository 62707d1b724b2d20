"""A test-only backend whose life shows in the output (see sitecustomize.py)."""
import weakref

from foundation_stereo_ros.backends.sgbm import SgbmBackend

BUILT = 'tracked backend: built'
RELEASED = 'tracked backend: released'


class TrackedBackend(SgbmBackend):
    """SGBM (64 disparities) that prints when built and when nothing refers to it any more."""

    name = 'tracked'

    def __init__(self) -> None:
        """Build the matcher and arrange the release message."""
        super().__init__(num_disparities=64)
        print(BUILT, flush=True)
        weakref.finalize(self, print, RELEASED, flush=True)

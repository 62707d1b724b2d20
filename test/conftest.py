"""Shared test setup: keep DDS on this machine and give each run its own domain."""
import os
import random
import sys
from pathlib import Path

import pytest

# Set before rclpy is imported anywhere, so every node in the test run stays on localhost.
os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
os.environ.setdefault('ROS_DOMAIN_ID', str(random.randint(1, 101)))

TEST_DIR = Path(__file__).resolve().parent
DATA_DIR = TEST_DIR / 'data'
# ../shared sits beside the repository on development machines and in CI; not in a fresh clone.
SHARED_REFERENCE = TEST_DIR.parent.parent / 'shared' / 'reference'

sys.path.insert(0, str(TEST_DIR))  # seeded_weights.py


@pytest.fixture(scope='module')
def hiera_golden():
    """Official outputs on a 120x200 asset crop (seeded vits, 2 iterations), as tensors.

    Hierarchical (small_ratio 0.5) and padded-demo paths. Not committed (derived from the
    official assets): read from the shared reference and skipped when it is absent.
    """
    import numpy as np
    import torch
    path = SHARED_REFERENCE / 'golden' / 'vits_hiera_assets_120x200.npz'
    if not path.is_file():
        pytest.skip(f'asset-derived goldens are not committed; {path} is absent '
                    f'(needs the shared reference folder beside the repository)')
    with np.load(path) as z:
        return {k: torch.from_numpy(z[k]) for k in z.files}


CFFS_CHECKPOINT = SHARED_REFERENCE / 'ffs' / 'cffs_like' / 'model_best_bp2_serialize.pth'


def cffs_demo_frame() -> tuple[list, object]:
    """Return the official FFS demo crop (120x200) as four node inputs, and its golden disparity.

    The golden ``demo_disp``: 2 iterations on the replicate-padded pair; the camera has doffs 0.
    Skips the calling test when the shared cffs_like checkpoint is absent.
    """
    import numpy as np

    from foundation_stereo_ros.camera import StereoCamera
    from foundation_stereo_ros.ros import conversions
    from foundation_stereo_ros.ros.synthetic_camera import camera_info_pair

    if not CFFS_CHECKPOINT.is_file():
        pytest.skip(f'FFS reference checkpoint not found at {CFFS_CHECKPOINT}')
    golden = np.load(DATA_DIR / 'golden_ffs_hiera.npz')
    left, right = (np.ascontiguousarray(golden[k][0].transpose(1, 2, 0).astype(np.uint8))
                   for k in ('left', 'right'))
    camera = StereoCamera(width=200, height=120, fx=100.0, fy=100.0, cx=100.0, cy=60.0,
                          baseline=0.1)
    left_info, right_info = camera_info_pair(camera, 'left_cam', 'right_cam')
    frame = [conversions.array_to_image(left, 'rgb8'), left_info,
             conversions.array_to_image(right, 'rgb8'), right_info]
    frame[0].header.frame_id = 'left_cam'
    return frame, golden['demo_disp'][0, 0]

"""Shared test setup: keep DDS on this machine and give each run its own domain."""
import os
import random
import signal
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

# A suite started in the background of a script (`./scripts/test.sh &`) inherits SIGINT
# ignored, and so would every process it starts: the Ctrl-C tests need Python's default.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


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


def frame_messages(left, right, camera) -> list:
    """Return a golden (3, H, W) pair and its camera as the node's four input messages.

    Left image (rgb8, frame 'left_cam'), left CameraInfo, right image, right CameraInfo.
    """
    import numpy as np

    from foundation_stereo_ros.ros import conversions
    from foundation_stereo_ros.ros.synthetic_camera import camera_info_pair

    left_info, right_info = camera_info_pair(camera, 'left_cam', 'right_cam')
    left, right = (np.ascontiguousarray(image.transpose(1, 2, 0).astype(np.uint8))
                   for image in (left, right))
    frame = [conversions.array_to_image(left, 'rgb8'), left_info,
             conversions.array_to_image(right, 'rgb8'), right_info]
    frame[0].header.frame_id = 'left_cam'
    return frame


def golden_frame() -> tuple[list, object]:
    """Return the golden synthetic pair (96x64, fx 80, B 0.1) as node inputs, and its disparity.

    The disparity is the official network's, 2 iterations on the seeded ViT-S checkpoint
    (doffs 0).
    """
    import numpy as np

    from foundation_stereo_ros.camera import StereoCamera

    golden = np.load(DATA_DIR / 'golden_model_synth.npz')
    camera = StereoCamera(width=96, height=64, fx=80.0, fy=80.0, cx=47.5, cy=31.5,
                          baseline=0.1)
    return (frame_messages(golden['left'][0], golden['right'][0], camera),
            golden['disp_test_iters2'][0, 0])


@pytest.fixture(scope='module')
def ros_context():
    """Return an rclpy context of its own for a module's nodes (shut down afterwards)."""
    import rclpy

    context = rclpy.Context()
    rclpy.init(context=context)
    yield context
    rclpy.try_shutdown(context=context)


def cffs_demo_frame() -> tuple[list, object]:
    """Return the official FFS demo crop (120x200) as four node inputs, and its golden disparity.

    The golden ``demo_disp``: 2 iterations on the replicate-padded pair; the camera has doffs 0.
    Skips the calling test when the shared cffs_like checkpoint is absent.
    """
    import numpy as np

    from foundation_stereo_ros.camera import StereoCamera

    if not CFFS_CHECKPOINT.is_file():
        pytest.skip(f'FFS reference checkpoint not found at {CFFS_CHECKPOINT}')
    golden = np.load(DATA_DIR / 'golden_ffs_hiera.npz')
    camera = StereoCamera(width=200, height=120, fx=100.0, fy=100.0, cx=100.0, cy=60.0,
                          baseline=0.1)
    frame = frame_messages(golden['left'][0], golden['right'][0], camera)
    return frame, golden['demo_disp'][0, 0]

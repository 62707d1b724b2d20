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

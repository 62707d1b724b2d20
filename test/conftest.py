"""Shared test setup: keep DDS on this machine and give each run its own domain."""
import os
import random
import sys
from pathlib import Path

# Set before rclpy is imported anywhere, so every node in the test run stays on localhost.
os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
os.environ.setdefault('ROS_DOMAIN_ID', str(random.randint(1, 101)))

TEST_DIR = Path(__file__).resolve().parent
DATA_DIR = TEST_DIR / 'data'
# ../shared sits beside the repository on development machines and in CI; not in a fresh clone.
SHARED_REFERENCE = TEST_DIR.parent.parent / 'shared' / 'reference'

sys.path.insert(0, str(TEST_DIR))  # seeded_weights.py

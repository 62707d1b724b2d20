"""Test-only changes to a node subprocess, chosen by environment variables.

test_node_e2e.py puts this folder first on the subprocess's PYTHONPATH, so Python imports this
module at start, before the node's module:

* ``FSR_TEST_HUMBLE_RCLPY=1``: remove the parameter-callback methods that rclpy gained after
  Humble (Iron and later) from ``rclpy.node.Node``, so the node runs against Humble's API.
* ``FSR_TEST_SLOW_BACKEND=SECONDS``: register the backend ``slow`` (slow_backend.py), which
  sleeps that long in every inference, like a large network on a slow device.
* ``FSR_TEST_TRACKED_BACKEND=1``: register the backend ``tracked`` (tracked_backend.py), an
  SGBM that prints when it is built and when it is garbage collected (the model released).
* ``FSR_TEST_SLOW_IMPORT=1``: importing torch prints ``importing torch`` and waits a minute
  first, so a test can interrupt the import.
"""
import os
import sys

IRON_PARAMETER_CALLBACKS = (
    'add_pre_set_parameters_callback', 'remove_pre_set_parameters_callback',
    'add_post_set_parameters_callback', 'remove_post_set_parameters_callback',
)

if os.environ.get('FSR_TEST_HUMBLE_RCLPY'):
    from rclpy.node import Node

    removed = [name for name in IRON_PARAMETER_CALLBACKS if hasattr(Node, name)]
    for name in removed:
        delattr(Node, name)
    print(f'humble rclpy: removed Node.{", Node.".join(removed)}', flush=True)

if os.environ.get('FSR_TEST_SLOW_BACKEND'):
    from foundation_stereo_ros.backends import BACKENDS

    BACKENDS['slow'] = ('slow_backend', 'SlowBackend')

if os.environ.get('FSR_TEST_TRACKED_BACKEND'):
    from foundation_stereo_ros.backends import BACKENDS

    BACKENDS['tracked'] = ('tracked_backend', 'TrackedBackend')

if os.environ.get('FSR_TEST_SLOW_IMPORT'):
    import importlib.abc
    import time

    class _SlowTorchImport(importlib.abc.MetaPathFinder):
        """Delays the first import of torch by a minute."""

        def find_spec(self, name, path, target=None):
            """Wait before torch is looked up; find nothing (the normal finders do)."""
            if name == 'torch':
                sys.meta_path.remove(self)
                print('importing torch', flush=True)
                time.sleep(60.0)

    sys.meta_path.insert(0, _SlowTorchImport())

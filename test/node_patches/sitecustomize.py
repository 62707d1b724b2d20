"""Test-only changes to a node subprocess, chosen by environment variables.

test_node_e2e.py puts this folder first on the subprocess's PYTHONPATH, so Python imports this
module at start, before the node's module:

* ``FSR_TEST_HUMBLE_RCLPY=1``: remove the parameter-callback methods that rclpy gained after
  Humble (Iron and later) from ``rclpy.node.Node`` and make the modules it gained after Humble
  unimportable, so the node (and, collected under it, the tests) run against Humble's API.
* ``FSR_TEST_SLOW_BACKEND=SECONDS``: register the backend ``slow`` (slow_backend.py), which
  sleeps that long in every inference, like a large network on a slow device.
* ``FSR_TEST_MARK_START=1``: print ``package import starts`` when the executable's first line
  imports :mod:`foundation_stereo_ros.interrupts`: the moment its own code begins (what comes
  before, the interpreter's start-up, site and loading the entry module, is out of its
  reach), for the start-up interrupt sweep.
* ``FSR_TEST_SLOW_IMPORT=1``: importing torch prints ``importing torch`` and waits a minute
  first, so a test can interrupt the import.
"""
import os
import sys

IRON_PARAMETER_CALLBACKS = (
    'add_pre_set_parameters_callback', 'remove_pre_set_parameters_callback',
    'add_post_set_parameters_callback', 'remove_post_set_parameters_callback',
)

# Modules of rclpy that Humble's does not have (Iron: parameter_client, parameter_event_handler,
# event_handler (Humble: qos_event), service_introspection, type_description_service,
# type_hash; Jazzy: clock_type).
IRON_MODULES = (
    'rclpy.parameter_client', 'rclpy.parameter_event_handler', 'rclpy.event_handler',
    'rclpy.service_introspection', 'rclpy.type_description_service', 'rclpy.type_hash',
    'rclpy.clock_type',
)

if os.environ.get('FSR_TEST_HUMBLE_RCLPY'):
    import importlib.abc

    class _NoIronModules(importlib.abc.MetaPathFinder):
        """Refuses the rclpy modules that arrived after Humble, as Humble's rclpy would."""

        def find_spec(self, name, path, target=None):
            """Raise ModuleNotFoundError for a module of IRON_MODULES; else find nothing.

            Only for imports from outside rclpy: this rclpy's own modules use them.
            """
            if name in IRON_MODULES and not _imported_by_rclpy():
                raise ModuleNotFoundError(f'No module named {name!r} (Humble rclpy)', name=name)

    def _imported_by_rclpy():
        frame = sys._getframe(2)
        while frame is not None and frame.f_globals.get('__name__', '').startswith(
                ('importlib', '_frozen_importlib')):
            frame = frame.f_back
        return frame is not None and frame.f_globals.get('__name__', '').startswith('rclpy')

    sys.meta_path.insert(0, _NoIronModules())

    from rclpy.node import Node

    removed = [name for name in IRON_PARAMETER_CALLBACKS if hasattr(Node, name)]
    for name in removed:
        delattr(Node, name)
    print(f'humble rclpy: removed Node.{", Node.".join(removed)}', flush=True)

if os.environ.get('FSR_TEST_SLOW_BACKEND'):
    from foundation_stereo_ros.backends import BACKENDS

    BACKENDS['slow'] = ('slow_backend', 'SlowBackend')

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

if os.environ.get('FSR_TEST_MARK_START'):
    import importlib.abc

    class _MarkStart(importlib.abc.MetaPathFinder):
        """Prints a line when the interrupt guard is first looked up; finds nothing itself."""

        def find_spec(self, name, path, target=None):
            """Print ``package import starts`` for the guard's first lookup."""
            if name == 'foundation_stereo_ros.interrupts':
                sys.meta_path.remove(self)
                print('package import starts', flush=True)

    sys.meta_path.insert(0, _MarkStart())

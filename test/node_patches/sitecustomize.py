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
* ``FSR_TEST_TRACKED_BACKEND=1``: register the backend ``tracked`` (tracked_backend.py), an
  SGBM that prints when it is built and when it is garbage collected (the model released).
* ``FSR_TEST_SLOW_IMPORT=1``: importing torch prints ``importing torch`` and waits a minute
  first, so a test can interrupt the import.
* ``FSR_TEST_NO_RAY=1``: ``import ray`` fails as if Ray were not installed.
* ``FSR_TEST_CRASH_ONCE=PATH``: the process dies (``os._exit``) in its second SGBM inference
  if it is the first to rename the file PATH to ``PATH.fired``: one worker of a fleet dies
  mid-bag once, the test deciding when by creating PATH.
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

if os.environ.get('FSR_TEST_NO_RAY'):
    import importlib.abc

    class _NoRay(importlib.abc.MetaPathFinder):
        """Finds ``ray`` nowhere."""

        def find_spec(self, name, path, target=None):
            """Refuse ray and its submodules."""
            if name.split('.')[0] == 'ray':
                raise ModuleNotFoundError(f"No module named '{name}'", name=name)

    sys.meta_path.insert(0, _NoRay())

if os.environ.get('FSR_TEST_CRASH_ONCE'):
    import importlib.abc
    import importlib.util

    def _crash_on_second_call(backend_class):
        compute, calls = backend_class.compute, []
        armed = os.environ['FSR_TEST_CRASH_ONCE']

        def crashing_compute(self, *args, **kwargs):
            calls.append(1)
            if len(calls) == 2:
                try:
                    os.rename(armed, armed + '.fired')  # atomic: one process wins
                except OSError:
                    pass
                else:
                    os._exit(3)
            return compute(self, *args, **kwargs)

        backend_class.compute = crashing_compute

    class _PatchSgbm(importlib.abc.MetaPathFinder):
        """Patches SgbmBackend when its module is first imported (workers import it late)."""

        def find_spec(self, name, path, target=None):
            """Find the SGBM module normally, and patch its class once it has run."""
            if name != 'foundation_stereo_ros.backends.sgbm':
                return None
            sys.meta_path.remove(self)
            spec = importlib.util.find_spec(name)
            exec_module = spec.loader.exec_module

            def exec_and_patch(module):
                exec_module(module)
                _crash_on_second_call(module.SgbmBackend)

            spec.loader.exec_module = exec_and_patch
            return spec

    sys.meta_path.insert(0, _PatchSgbm())

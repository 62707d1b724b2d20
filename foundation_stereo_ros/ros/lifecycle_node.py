"""The stereo node as a managed (lifecycle) node, for bring-up under a lifecycle manager.

Same topics, parameters and processing as :mod:`.node` (both drive one
:class:`~foundation_stereo_ros.ros.stereo_core.StereoCore`); only when each step runs differs:

* unconfigured: parameters are declared and may be set, read-only ones included;
* configure: read the parameters, load and warm up the backend, create the (lifecycle)
  publishers. A failure returns FAILURE with the message the plain node gives at start, and the
  node stays unconfigured for a corrected retry;
* activate: subscribe and start processing; outputs are published only while active;
* deactivate: unsubscribe and stop processing, the model stays loaded;
* cleanup: drop the publishers and the model (device memory returned);
* shutdown, from any state: what cleanup does, then the node is finalized.

    ros2 run foundation_stereo_ros foundation_stereo_lifecycle_node --ros-args -p backend:=sgbm
    ros2 lifecycle set /foundation_stereo configure
    ros2 lifecycle set /foundation_stereo activate
"""
from __future__ import annotations

import sys
from typing import Any

from foundation_stereo_ros.interrupts import exit_on_interrupt
from foundation_stereo_ros.ros.runner import run_node

with exit_on_interrupt():  # Ctrl-C during the seconds of importing rclpy and torch
    from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

    from foundation_stereo_ros import settings
    from foundation_stereo_ros.backends.base import DisparityBackend
    from foundation_stereo_ros.ros import params as ros_params
    from foundation_stereo_ros.ros.stereo_core import StartupError, StereoCore, parameter_error

# How a read-only parameter changes once the node is configured.
CHANGE_WHEN_UNCONFIGURED = ('deactivate and clean up the node, set {name}:={value}, configure '
                            'it again (ros2 lifecycle set <node> cleanup)')


class FoundationStereoLifecycleNode(LifecycleNode):
    """The stereo node, managed; ``backend`` injects a ready backend (tests)."""

    def __init__(self, *, backend: DisparityBackend | None = None,
                 node_name: str = 'foundation_stereo', **node_kwargs: Any) -> None:
        """Declare the parameters; nothing else is built before the configure transition."""
        super().__init__(node_name, **node_kwargs)
        self.core = StereoCore(self, managed=True, backend=backend)
        # Parameters given at start that are unusable: reported by configure until set right.
        self._problems: dict[str, str] = {}
        ros_params.declare(self, settings.SETTINGS, problems=self._problems)
        ros_params.on_change(self, settings.SETTINGS, self._check_changes, self._apply_changes)
        self.core.warn_undeclared_parameters()
        self.get_logger().info(
            f'unconfigured; configure and activate it (ros2 lifecycle set '
            f'{self.get_fully_qualified_name()} configure, then activate)')

    @property
    def busy_at_exit(self) -> bool:
        """Tell whether inference was still running when the node was destroyed."""
        return self.core.busy_at_exit

    # -- transitions -----------------------------------------------------------------------------

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Read the parameters and load the backend; FAILURE (logged) says what to do."""
        try:
            if self._problems:
                raise parameter_error('; '.join(self._problems.values()))
            self.core.configure(ros_params.current_values(self, settings.SETTINGS))
        except StartupError as exc:
            self.get_logger().error(f'configure failed: {exc}')
            return TransitionCallbackReturn.FAILURE
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Enable the publishers, subscribe and start processing."""
        result = super().on_activate(state)
        if result == TransitionCallbackReturn.SUCCESS:
            self.core.activate()
            self.get_logger().info('active: processing')
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop processing and unsubscribe; the model stays loaded."""
        self.core.deactivate()
        self.get_logger().info('inactive: model loaded, not subscribed')
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Drop the publishers and the model."""
        self.core.cleanup()
        self.get_logger().info('unconfigured: model released')
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Release everything, from whichever state the node is in."""
        self.core.cleanup()
        return super().on_shutdown(state)

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Release everything after a failed transition; the node goes back to unconfigured."""
        self.core.cleanup()
        return super().on_error(state)

    # -- parameters ------------------------------------------------------------------------------

    def _check_changes(self, changes: dict[str, Any]) -> str | None:
        if self.core.configured:
            return self.core.check_changes(changes, CHANGE_WHEN_UNCONFIGURED)
        # Unconfigured: any setting may change; each value must be valid (configure judges
        # them together, so warmup_width and warmup_height may be set one after the other).
        reasons = [reason for name, value in changes.items()
                   if (reason := settings.check_value(name, value))]
        return '; '.join(reasons) or None

    def _apply_changes(self, changes: dict[str, Any]) -> None:
        for name in changes:
            self._problems.pop(name, None)
        if self.core.configured:
            self.core.apply_changes(changes)

    def destroy_node(self) -> None:
        """Stop processing and release the model, then the ROS side (Ctrl-C in any state)."""
        if hasattr(self, 'core'):
            self.core.deactivate()
            self.core.log_stop()
            self.core.cleanup()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Run the lifecycle node until SIGINT/SIGTERM; returns the process exit code."""
    return run_node(FoundationStereoLifecycleNode, 'foundation_stereo', (StartupError,), args)


if __name__ == '__main__':
    sys.exit(main())

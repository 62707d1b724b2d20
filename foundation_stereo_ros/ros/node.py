"""ROS 2 node: rectified stereo pairs in, disparity, depth, point cloud and diagnostics out.

Subscribes (relative names, so namespaces and remaps work)::

    left/image_rect  left/camera_info  right/image_rect  right/camera_info

or, with ``rectify:=true``, ``left/image_raw`` and ``right/image_raw`` (rectified here with
their CameraInfo); with ``image_transport:=compressed`` each image topic's ``/compressed``
(sensor_msgs/CompressedImage, JPEG or PNG), after remapping as image_transport does. With
``cameras:=[front, rear]`` it serves several cameras through one model: each camera's topics
under its namespace (``front/left/image_rect``... in, ``front/disparity``... out).

Publishes ``disparity`` (stereo_msgs/DisparityImage), ``depth/image_rect`` (32FC1 metres) and
``depth/camera_info``, ``points`` (organized PointCloud2, xyz + rgb), ``disparity/image_color``
(rgb8 colour map) and ``/diagnostics``. Outputs carry the input stamp and the left frame.

This module is the plain node: it configures and activates the shared
:class:`~foundation_stereo_ros.ros.stereo_core.StereoCore` at start (the lifecycle node,
:mod:`.lifecycle_node`, runs the same steps from its transitions). Parameters come from
:mod:`.settings`; warnings and watchdogs from :mod:`.monitor`.

    python -m foundation_stereo_ros.node --ros-args -p backend:=sgbm
"""
from __future__ import annotations

try:  # a Ctrl-C while the guard itself is imported (console script): the same quiet exit
    from foundation_stereo_ros.interrupts import STOPPED, exit_on_interrupt, quiet_main
except KeyboardInterrupt:  # at once: a second Ctrl-C must not meet finalisation
    import os

    os._exit(0)

# Ctrl-C during the seconds of importing rclpy and torch, and the standard library before them
# (a console script imports this module first).
with exit_on_interrupt():
    import sys
    from typing import Any

    from rclpy.node import Node

    from foundation_stereo_ros import settings
    from foundation_stereo_ros.backends.base import DisparityBackend
    from foundation_stereo_ros.ros import params as ros_params
    from foundation_stereo_ros.ros.runner import run_node
    from foundation_stereo_ros.ros.stereo_core import (
        HOW_TO_SET,
        SHUTDOWN_GRACE,
        StartupError,
        StereoCore,
        parameter_error,
    )

__all__ = ['HOW_TO_SET', 'SHUTDOWN_GRACE', 'FoundationStereoNode', 'StartupError', 'main']


class FoundationStereoNode(Node):
    """The stereo node; ``backend`` injects a ready backend (tests), else one is built."""

    def __init__(self, *, backend: DisparityBackend | None = None,
                 node_name: str = 'foundation_stereo', **node_kwargs: Any) -> None:
        """Declare parameters, build the backend and the ROS interfaces, start the worker."""
        super().__init__(node_name, **node_kwargs)
        self.core = StereoCore(self, backend=backend)
        try:
            try:
                values = ros_params.declare(self, settings.SETTINGS)
            except ros_params.ParameterError as exc:
                raise parameter_error(exc) from exc
            self.core.configure(values)
        except StartupError as exc:
            exc.logger = self.get_logger()
            raise
        ros_params.on_change(self, settings.SETTINGS, self._check_changes,
                             self.core.apply_changes)
        self.core.activate()
        self.core.warn_undeclared_parameters()

    # The first camera's parts, by their names of the one-camera node (tests, tools).
    @property
    def settings(self) -> settings.Settings:
        """Return the settings in force at start."""
        return self.core.settings

    @property
    def backend(self) -> DisparityBackend:
        """Return the backend every camera shares."""
        return self.core.backend

    @property
    def pipeline(self) -> Any:
        """Return the pipeline every camera shares."""
        return self.core.pipeline

    @property
    def stats(self) -> Any:
        """Return the first camera's counters."""
        return self.core.channels[0].stats

    @property
    def sync(self) -> Any:
        """Return the first camera's synchroniser."""
        return self.core.channels[0].sync

    @property
    def busy_at_exit(self) -> bool:
        """Tell whether inference was still running when the node was destroyed."""
        return self.core.busy_at_exit

    def _check_changes(self, changes: dict[str, Any]) -> str | None:
        return self.core.check_changes(changes, settings.RESTART_HINT)

    def destroy_node(self) -> None:
        """Stop the worker, then the ROS side.

        The sets in progress get :data:`SHUTDOWN_GRACE` seconds; a network inference that
        runs longer is abandoned (``busy_at_exit``), and ``run_node`` ends the process
        without waiting for it.
        """
        if hasattr(self, 'core'):
            self.core.deactivate()
            self.core.log_stop()
            self.core.cleanup()
        super().destroy_node()


@quiet_main(STOPPED)
def main(args: list[str] | None = None) -> int:
    """Run the node until SIGINT/SIGTERM; returns the process exit code."""
    return run_node(FoundationStereoNode, 'foundation_stereo', (StartupError,), args)


if __name__ == '__main__':
    sys.exit(main())

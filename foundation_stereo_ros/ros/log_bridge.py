"""The package's Python ``logging`` records, forwarded to a ROS logger.

Code below the node (backends, model loading) logs with the standard ``logging`` module so it
stays free of ROS; the node installs :class:`RosLogHandler` so those lines (a compilation at a
new input size, a warm-up's duration) reach the ROS log like its own.
"""
from __future__ import annotations

import logging
from typing import Any

PACKAGE_LOGGER = 'foundation_stereo_ros'


class RosLogHandler(logging.Handler):
    """Send each record to an rclpy logger at the matching severity."""

    def __init__(self, ros_logger: Any) -> None:
        """``ros_logger``: an rclpy logger (``node.get_logger()``)."""
        super().__init__(logging.INFO)
        self.ros_logger = ros_logger

    def emit(self, record: logging.LogRecord) -> None:
        """Forward one record."""
        try:
            message = self.format(record)
            if record.levelno >= logging.ERROR:
                self.ros_logger.error(message)
            elif record.levelno >= logging.WARNING:
                self.ros_logger.warning(message)
            else:
                self.ros_logger.info(message)
        except Exception:  # noqa: BLE001 - logging must never take the node down
            self.handleError(record)


def forward_package_logs(ros_logger: Any) -> RosLogHandler:
    """Route INFO and above of the package's loggers to ``ros_logger``; returns the handler.

    Remove it with :func:`stop_forwarding` when the node goes away.
    """
    handler = RosLogHandler(ros_logger)
    logger = logging.getLogger(PACKAGE_LOGGER)
    logger.addHandler(handler)
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    return handler


def stop_forwarding(handler: RosLogHandler) -> None:
    """Remove a handler installed by :func:`forward_package_logs`."""
    logging.getLogger(PACKAGE_LOGGER).removeHandler(handler)

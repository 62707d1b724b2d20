"""The init/spin/shutdown logic shared by the package's node executables."""
from __future__ import annotations

from collections.abc import Callable

import rclpy
import rclpy.logging
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node


def run_node(make_node: Callable[[], Node], logger_name: str,
             startup_errors: tuple[type[BaseException], ...],
             args: list[str] | None = None) -> int:
    """Initialise rclpy, spin the node ``make_node()`` builds and return the exit code.

    SIGINT/SIGTERM (``KeyboardInterrupt`` or ``ExternalShutdownException``) end the spin
    quietly and give exit code 0, without a traceback. A startup error, one of
    ``startup_errors`` raised while the node is built or spinning, is logged as fatal on the
    logger ``logger_name`` and gives exit code 1; any other exception propagates. The node is
    destroyed and rclpy shut down in every case. ``args`` go to :func:`rclpy.init`.
    """
    rclpy.init(args=args)
    node = None
    code = 0
    try:
        node = make_node()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except startup_errors as exc:
        rclpy.logging.get_logger(logger_name).fatal(str(exc))
        code = 1
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return code

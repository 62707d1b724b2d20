"""Start, spin and stop the package's node executables; Ctrl-C never ends in a traceback.

Imports nothing heavy at module level (rclpy only inside :func:`run_node`), so an executable
imports it before its guarded heavy imports (:mod:`foundation_stereo_ros.interrupts`).
"""
from __future__ import annotations

import contextlib
import itertools
import re
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from foundation_stereo_ros.interrupts import (
    STOPPED,
    exit_now,
    exit_on_interrupt,
    leave_on_next_interrupt,
)

if TYPE_CHECKING:
    from rclpy.node import Node

# Exit code when the node cannot start (bad parameters, missing checkpoint, bad --ros-args).
FAILED_TO_START = 1


def ros_arguments_problem(args: Sequence[str] | None) -> str | None:
    """Say what is wrong with the ``--ros-args`` of ``args`` that rcl would refuse, if known."""
    argv = list(sys.argv if args is None else args)
    for flag, value in itertools.pairwise(argv):
        if flag == '--params-file' and not Path(value).is_file():
            return (f'the parameters file {value} does not exist: fix the path given to '
                    '--params-file (ros2 launch: params_file:=...)')
    return None


def _rcl_message(exc: BaseException) -> str:
    # rcl appends source locations (", at /project/src/parser.c:271") that help nobody here.
    return re.sub(r', at \S+:\d+', '', str(exc))


def _note_interrupts() -> list[int]:
    """Record SIGINTs (then raise KeyboardInterrupt as Python does) in the returned list.

    Set before :func:`rclpy.init`, whose own handler chains to this one. Also over a SIGINT
    ignored since the process started (a background job of a script): rclpy's handler takes
    SIGINT anyway and shuts the context down (rclcpp does the same, and ``ros2 launch`` stops
    its nodes with SIGINT), so the node must see the interrupt to stop quietly.
    """
    interrupted: list[int] = []

    def on_interrupt(signum: int, frame: object) -> None:
        interrupted.append(signum)
        raise KeyboardInterrupt

    if signal.getsignal(signal.SIGINT) in (signal.default_int_handler, signal.SIG_IGN):
        with contextlib.suppress(ValueError):  # not the main thread
            signal.signal(signal.SIGINT, on_interrupt)
    return interrupted


def run_node(make_node: Callable[[], Node], logger_name: str,
             startup_errors: tuple[type[BaseException], ...],
             args: list[str] | None = None) -> int:
    """Initialise rclpy, spin the node ``make_node()`` builds and return the exit code.

    SIGINT/SIGTERM (``KeyboardInterrupt`` or ``ExternalShutdownException``) end the spin
    quietly with :data:`STOPPED`; a second Ctrl-C while the node shuts down leaves at once,
    also without a traceback. A node whose ``busy_at_exit`` is true after ``destroy_node``
    (a worker thread still inside native code) is left with ``os._exit``: finalising the
    interpreter under such a thread aborts the process. A startup error, one of
    ``startup_errors`` raised while the node is built or spinning, or arguments rcl refuses
    (a missing ``--params-file``), is logged as fatal and gives :data:`FAILED_TO_START`;
    a startup error's ``logger`` attribute, when set, is the node's own logger (its real name
    and namespace), else ``logger_name`` is used. Any other exception propagates.
    ``args`` go to :func:`rclpy.init`.
    """
    with exit_on_interrupt():  # imported already; a Ctrl-C may still land on these lines
        import rclpy
        import rclpy.logging
        from rclpy.executors import ExternalShutdownException
        from rclpy.impl.implementation_singleton import rclpy_implementation

        from foundation_stereo_ros.ros import params

        params.use_arguments(args)  # the parameter checks read the same -p and params files
    node = None
    code = STOPPED
    interrupted = _note_interrupts()
    try:
        try:
            rclpy.init(args=args)
        except rclpy_implementation.RCLError as exc:
            problem = ros_arguments_problem(args) or (
                f'the ROS arguments are invalid: {_rcl_message(exc)}')
            rclpy.logging.get_logger(logger_name).fatal(f'cannot start: {problem}')
            return FAILED_TO_START
        node = make_node()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        # Stopping: a further Ctrl-C (ros2 launch forwards the terminal's, so it comes
        # twice) ends the process at once, also during finalisation, never in a traceback.
        leave_on_next_interrupt(code)
    except startup_errors as exc:
        logger = getattr(exc, 'logger', None) or rclpy.logging.get_logger(logger_name)
        logger.fatal(str(exc))
        code = FAILED_TO_START
    except RuntimeError:
        # Kilted's rclpy: a Ctrl-C landing while take_message builds the Python message
        # comes out as pybind11's RuntimeError ("Unable to convert call argument").
        if not interrupted:
            raise
        leave_on_next_interrupt(code)
    finally:
        try:
            if node is not None:
                node.destroy_node()
            rclpy.try_shutdown()
        except KeyboardInterrupt:  # a second Ctrl-C while stopping: do not wait any longer
            exit_now(code)
    if getattr(node, 'busy_at_exit', False):
        exit_now(code)
    return code

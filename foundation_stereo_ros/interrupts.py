"""Ctrl-C at start-up: the seconds of importing rclpy and torch end quietly, never in a traceback.

Imports nothing heavy, so every executable (the nodes and the offline tools) can guard its
heavy imports with :func:`exit_on_interrupt` before they run.

Why a signal handler and not ``except KeyboardInterrupt``: importing torch swallows an
interrupt that lands while it imports numpy (its C code clears the error and goes on without
numpy), one raised inside ``__set_name__`` comes out wrapped in a RuntimeError, and one raised
inside torch's C++ start-up can abort the process. The guard's SIGINT handler ends the process
from the handler, before any exception exists. After the first interrupt has been taken,
further ones (``ros2 launch`` forwards the terminal's Ctrl-C, so it arrives twice) end the
process at once with the same code instead of a traceback from a finaliser or a death by
signal. What runs before an executable's first line (the interpreter's start-up, ``site``,
loading the entry module) is out of the package's reach.
"""
import sys

try:  # an interrupt in these imports, before the guard exists, ends the process the same way
    import contextlib
    import functools
    import os
    import signal
    from collections.abc import Callable, Iterator
except KeyboardInterrupt:  # pragma: no cover - a window of milliseconds
    import os

    os._exit(0)

# Exit code of a process stopped by SIGINT/SIGTERM: a requested stop is a clean exit.
STOPPED = 0
# Exit code of an offline tool stopped by Ctrl-C: the shell's convention for SIGINT (128 + 2).
INTERRUPTED = 130


def exit_now(code: int) -> None:
    """Leave at once with ``code``, without interpreter finalisation.

    For a process that is stopping: a thread may still be inside torch, or torch only half
    imported, and finalisers would then print tracebacks or abort.
    """
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def leave_on_next_interrupt(code: int) -> None:
    """Make any further SIGINT or SIGTERM end the process at once with ``code``."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError):  # not the main thread: signals land there
            signal.signal(signum, lambda *_: exit_now(code))


def _ignore_interrupts() -> None:
    """Ignore SIGINT from now on: the process is ending (finalisation only remains).

    SIG_IGN rather than a handler: Python puts its own handlers back to the default at the
    very end of finalisation, where a Ctrl-C would then kill the process by signal.
    """
    with contextlib.suppress(ValueError):  # not the main thread
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def quiet_main(interrupted_code: int) -> Callable[[Callable[..., int]], Callable[..., int]]:
    """Decorate an executable's ``main``: no traceback for Ctrl-C, even after it returned.

    A KeyboardInterrupt that escapes ``main`` gives ``interrupted_code``. Called as the
    process's entry (no arguments: the command line is ``sys.argv``), once ``main`` has
    returned or raised SystemExit (argparse's ``--help``) further Ctrl-C are ignored while
    the interpreter finalises (torch's atexit handlers); a call with arguments (a test, a
    script) leaves the process's signal handling alone.
    """
    def decorate(main: Callable[..., int]) -> Callable[..., int]:
        @functools.wraps(main)
        def wrapper(*args: object, **kwargs: object) -> int:
            entry = not args and not kwargs
            try:
                return main(*args, **kwargs)
            except KeyboardInterrupt:
                return interrupted_code
            finally:
                if entry:
                    _ignore_interrupts()
        return wrapper
    return decorate


@contextlib.contextmanager
def exit_on_interrupt(code: int = STOPPED) -> Iterator[None]:
    """End the process at once with ``code`` on a Ctrl-C inside the block.

    For the imports at the top of an executable module (torch takes seconds): a Ctrl-C then
    ends the process like a Ctrl-C while it spins, whether it runs as a console script or
    with ``python -m``. The block's own SIGINT handler exits from the handler itself, so no
    KeyboardInterrupt travels through the code being imported (which may swallow it, wrap it
    or abort in C++ over it), and there is nothing to finalise half-imported.
    """
    def on_interrupt(signum: int, frame: object) -> None:
        exit_now(code)

    try:
        previous = signal.signal(signal.SIGINT, on_interrupt)
    except ValueError:  # not the main thread (imported from a thread): no handler to set
        previous = None
    try:
        yield
    except KeyboardInterrupt:  # only without the handler
        exit_now(code)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)

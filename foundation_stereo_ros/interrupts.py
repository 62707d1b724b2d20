"""Ctrl-C at start-up: the seconds of importing rclpy and torch end quietly, never in a traceback.

Imports nothing heavy, so every executable (the nodes and the offline tools) can guard its
heavy imports with :func:`exit_on_interrupt` before they run.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

# Exit code of a process stopped by SIGINT/SIGTERM: a requested stop is a clean exit.
STOPPED = 0
# Exit code of an offline tool stopped by Ctrl-C: the shell's convention for SIGINT (128 + 2).
INTERRUPTED = 130


@contextlib.contextmanager
def exit_on_interrupt(code: int = STOPPED) -> Iterator[None]:
    """Turn Ctrl-C inside the block into a quiet exit with ``code``.

    For the imports at the top of an executable module (torch takes seconds): a Ctrl-C then
    ends the process like a Ctrl-C while it spins, whether it runs as a console script or
    with ``python -m``.
    """
    try:
        yield
    except KeyboardInterrupt:
        raise SystemExit(code) from None

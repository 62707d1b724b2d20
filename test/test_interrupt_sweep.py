"""Ctrl-C at any moment of start-up ends the node, the bag tool and the demo quietly.

Each program is started once to measure its start-up (from the moment the package's own code
begins, marked by the test patch ``FSR_TEST_MARK_START``, to its first output), then started
again and again with SIGINT sent at moments spread over that span, once or twice 5 ms apart
(``ros2 launch`` forwards the terminal's Ctrl-C, so it arrives twice). Every run must exit
promptly with 0 or 130 and print no traceback.

The moments are ``FSR_INTERRUPT_SWEEP_MS`` apart (CI: a coarse sweep of five moments
per program, placed afresh each run; ``FSR_INTERRUPT_SWEEP_MS=20`` sweeps every 20 ms).
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from test_node_e2e import node_env

MARK = 'package import starts'
PROGRAMS = {  # name: (command, text of its first output)
    'node': ([sys.executable, '-m', 'foundation_stereo_ros.node', '--ros-args', '-p',
              'backend:=sgbm'], 'sgbm backend on'),
    'bag_tool': ([sys.executable, '-m', 'foundation_stereo_ros.bag_tool', '--help'], 'usage:'),
    'demo': ([sys.executable, '-m', 'foundation_stereo_ros.demo', '--help'], 'usage:'),
}
CODES = (0, 130)
EXIT_TIMEOUT = 30.0  # a loaded 2-core machine; a swallowed interrupt runs on for ever
COARSE_MOMENTS = 5
PARALLEL = 3


class Run:
    """One start of a program, its output read by a thread and the times lines came."""

    def __init__(self, command):
        self.proc = subprocess.Popen(command, env=node_env(FSR_TEST_MARK_START='1'), text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.lines = []
        self.seen = {}  # text -> monotonic time it was first seen
        self.events = {MARK: threading.Event()}
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def watch(self, text):
        self.events.setdefault(text, threading.Event())

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line)
            for text, event in self.events.items():
                if text in line and not event.is_set():
                    self.seen[text] = time.monotonic()
                    event.set()
        for event in self.events.values():
            event.set()  # the program ended: nobody waits for ever

    @property
    def output(self):
        return ''.join(self.lines)

    def finish(self):
        try:
            code = self.proc.wait(timeout=EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = 'still running'
        self.reader.join(timeout=5.0)
        return code


def start_up_span(name):
    """Seconds from the package's first line to the program's first output."""
    command, first = PROGRAMS[name]
    run = Run(command)
    run.watch(first)
    assert run.events[first].wait(120.0) and first in run.seen, run.output
    span = run.seen[first] - run.seen[MARK]
    if run.proc.poll() is None:
        run.proc.send_signal(signal.SIGINT)
    assert run.finish() in CODES, run.output
    return span


def interrupted_run(name, delay, twice):
    """Start ``name``, send SIGINT ``delay`` s after its package code began; return the run."""
    run = Run(PROGRAMS[name][0])
    assert run.events[MARK].wait(120.0) and MARK in run.seen, run.output
    time.sleep(max(0.0, run.seen[MARK] + delay - time.monotonic()))  # the moment under test
    for _ in range(2 if twice else 1):
        if run.proc.poll() is None:
            run.proc.send_signal(signal.SIGINT)
        time.sleep(0.005)
    return run, run.finish()


def moments(span):
    step = os.environ.get('FSR_INTERRUPT_SWEEP_MS')
    if step:
        count = int(span * 1000 / float(step)) + 1
        return [k * float(step) / 1000 for k in range(count)]
    # Coarse: evenly spread with a random phase, so repeated CI runs cover other moments.
    phase = random.random()
    return [(k + phase) * span / COARSE_MOMENTS for k in range(COARSE_MOMENTS)]


@pytest.mark.parametrize('name', list(PROGRAMS))
def test_ctrl_c_at_any_moment_of_start_up(name):
    span = start_up_span(name)
    cases = [(delay, twice) for delay in moments(span) for twice in (False, True)]
    with ThreadPoolExecutor(PARALLEL) as pool:
        results = list(pool.map(lambda case: (case, *interrupted_run(name, *case)), cases))
    bad = [f'SIGINT {"twice " if twice else ""}at {delay * 1000:.0f} ms: exit {code}\n'
           f'{run.output[-2000:]}'
           for (delay, twice), run, code in results
           if code not in CODES or 'Traceback' in run.output
           or 'KeyboardInterrupt' in run.output]
    assert not bad, f'{name}, start-up {span:.2f} s, {len(bad)} of {len(cases)} runs:\n' \
        + '\n'.join(bad)

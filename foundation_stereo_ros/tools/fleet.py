r"""Many rosbags at once on Ray: each bag in, the bag tool's output bag out, resumable.

    python -m foundation_stereo_ros.fleet BAGS... --out DIR [--address ADDRESS] \
        [--workers N] [--retries 2] [the bag tool's options]

``BAGS`` are bag folders or files (.mcap, .db3), folders of bags or globs. Each bag is one unit
of work: one worker (a Ray actor that loads the model once, one per GPU, else one per CPU core)
processes it start to end through the bag tool's per-bag step
(:class:`~foundation_stereo_ros.tools.bags.BagStep`) into ``DIR/<the input's name>``.

With no ``--address`` (nor ``RAY_ADDRESS``) Ray starts on this machine, on the loopback address
only and without its dashboard. ``--address HOST:6379`` (or ``auto``) joins a running cluster
(``ray start --head`` on one machine, ``ray start --address=HOST:6379`` on the others): then
every path must be the same on every machine (a shared filesystem), which is checked on every
node before any bag starts.

Resumable: a bag is written in ``DIR/.partial/<name>`` and moved to ``DIR/<name>`` only after
its output bag is closed, so ``DIR/<name>`` is always complete. A rerun skips complete outputs
and redoes partial ones from scratch. A worker that dies mid-bag has its bag retried on a new
worker (``--retries`` times) while the others go on; a bag that cannot be read or is damaged
is reported with the reason and the run goes on. Ctrl-C stops the workers and keeps every
finished bag. Ray is an optional extra: ``pip install 'foundation_stereo_ros[fleet]'`` (or
``pip install -r requirements-fleet.txt``).
"""
from __future__ import annotations

import argparse
import csv
import glob
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from foundation_stereo_ros.interrupts import INTERRUPTED, exit_on_interrupt

with exit_on_interrupt(INTERRUPTED):  # Ctrl-C during the seconds of importing torch
    from tqdm import tqdm

    from foundation_stereo_ros.settings import Settings
    from foundation_stereo_ros.tools.bags import (
        BAG_FILES,
        NO_PAIR,
        BagError,
        BagOptions,
        BagProgress,
        BagStep,
        add_arguments,
        settings_from_args,
        uninterruptible,
    )

LOG = logging.getLogger('foundation_stereo_fleet')

RAY_MISSING = ('the fleet tool runs on Ray, which is not installed: pip install '
               "'foundation_stereo_ros[fleet]' (or, in a checkout, pip install -r "
               'requirements-fleet.txt)')
PARTIAL = '.partial'        # DIR/.partial/<name>: bags being written
RECORDS = '.fleet'          # DIR/.fleet/<name>.json: the summary row of each complete bag
SUMMARY = 'summary.csv'
COLUMNS = ('bag', 'status', 'sets', 'skipped', 'seconds', 'worker', 'input', 'reason')
# Statuses of a bag in the summary.
# Seconds Ctrl-C waits for the results of bags whose workers are returning them.
STOP_GRACE = 1.0
COMPLETE, EARLIER, FAILED, INTERRUPTED_BAG, NOT_RUN = (
    'complete', 'complete earlier', 'failed', 'interrupted', 'not run')
# How often a worker reports its frames to the progress bar.
REPORT_SECONDS = 0.2


def build_parser() -> argparse.ArgumentParser:
    """Command-line interface: the bags, where to write, Ray, then the bag tool's options."""
    p = argparse.ArgumentParser(
        prog='python -m foundation_stereo_ros.fleet',
        description='Disparity, depth and point clouds for many rosbags of a stereo camera, on '
                    'the workers of a Ray cluster (this machine by default).')
    p.add_argument('bags', nargs='+', help='bag folders or files (.mcap, .db3), folders of '
                   'bags, or globs (quoted: "runs/*.mcap")')
    p.add_argument('--out', type=Path, required=True,
                   help='output folder: one output bag per input, named like it')
    p.add_argument('--address', default=os.environ.get('RAY_ADDRESS'),
                   help='Ray cluster to join (HOST:6379, or auto for the one started on this '
                        'machine with `ray start --head`); every path must then be visible on '
                        'every machine. Default: RAY_ADDRESS, else Ray starts on this machine '
                        '(loopback only)')
    p.add_argument('--workers', type=int,
                   help='number of workers (default: one per GPU, else one per CPU core)')
    p.add_argument('--retries', type=int, default=2,
                   help='times a bag is retried when its worker dies (default: %(default)s)')
    add_arguments(p)
    p.add_argument('--quiet', action='store_true', help='no progress bar')
    return p


# -- the bags -----------------------------------------------------------------------------------

@dataclass
class Job:
    """One input bag and what became of it (a row of the summary)."""

    bag: Path
    name: str
    status: str = NOT_RUN
    sets: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    worker: str = ''
    reason: str = ''
    attempts: int = 0

    def row(self) -> dict[str, str]:
        """Return the summary's columns."""
        ran = self.status not in (NOT_RUN, EARLIER)
        return {'bag': self.name, 'status': self.status,
                'sets': '' if self.status == NOT_RUN else str(self.sets),
                'skipped': ' '.join(f'{k}={v}' for k, v in sorted(self.skipped.items())),
                'seconds': f'{self.seconds:.2f}' if ran else '', 'worker': self.worker,
                'input': str(self.bag), 'reason': self.reason}


def _is_bag(path: Path) -> bool:
    return (path.is_file() and path.suffix in BAG_FILES) or (
        path.is_dir() and ((path / 'metadata.yaml').is_file()
                           or any(f.suffix in BAG_FILES for f in path.iterdir())))


def find_bags(specs: list[str]) -> list[Path]:
    """Expand the command line's bags: bag folders or files, folders of bags, globs."""
    bags: list[Path] = []
    for spec in specs:
        matches = ([Path(m) for m in sorted(glob.glob(spec))] if glob.has_magic(spec)
                   else [Path(spec)])
        found: list[Path] = []
        for path in matches:
            if not path.is_dir() or (path / 'metadata.yaml').is_file():
                found.append(path)
            elif any(f.suffix in BAG_FILES for f in path.iterdir() if f.is_file()) and not any(
                    _is_bag(d) for d in path.iterdir() if d.is_dir()):
                found.append(path)  # a bag folder whose metadata.yaml is missing
            else:
                found.extend(sorted(p for p in path.iterdir() if _is_bag(p)))
        missing = [p for p in found if not p.exists()]
        if missing or not found:
            raise BagError(f'no bag found at {spec}: give bag folders or files (.mcap, .db3), '
                           'folders of bags, or a glob')
        bags.extend(p for p in found if p not in bags)
    return bags


def output_name(bag: Path) -> str:
    """Return the output's name: the bag folder's, or the bag file's without its suffix."""
    return bag.stem if bag.is_file() else bag.name


def make_jobs(bags: list[Path]) -> list[Job]:
    """One job per bag; two inputs of one name would write one output: refused."""
    jobs = [Job(bag.resolve(), output_name(bag)) for bag in bags]
    by_name: dict[str, list[str]] = {}
    for job in jobs:
        by_name.setdefault(job.name, []).append(str(job.bag))
    clashes = {n: p for n, p in by_name.items() if len(p) > 1}
    if clashes:
        raise BagError('inputs with the same name would write the same output: '
                       + '; '.join(f'{n}: {", ".join(p)}' for n, p in clashes.items())
                       + '. Run them into different --out folders')
    return jobs


def skip_complete(jobs: list[Job], out: Path) -> None:
    """Mark the jobs whose output is complete from an earlier run (with that run's figures)."""
    for job in jobs:
        if (out / job.name).is_dir():
            record = out / RECORDS / f'{job.name}.json'
            try:
                earlier = json.loads(record.read_text())
            except (OSError, ValueError):
                earlier = {}
            job.sets = int(earlier.get('sets', 0))
            job.skipped = dict(earlier.get('skipped', {}))
            job.worker = str(earlier.get('worker', ''))
            job.status = EARLIER


# -- the worker ---------------------------------------------------------------------------------

class _Reporter(BagProgress):
    """Tells the progress board how many frames of its bag are known and done."""

    def __init__(self, board: Any, name: str) -> None:
        self.board, self.name = board, name
        self.known = self.done = 0
        self.last = 0.0

    def start(self, messages: int, frames: int) -> None:
        self.known = frames
        self._report()

    def message(self, frame: bool) -> None:
        if frame:
            self.done += 1
            if time.monotonic() - self.last > REPORT_SECONDS:
                self._report()

    def close(self) -> None:
        self._report()

    def _report(self) -> None:
        self.last = time.monotonic()
        if self.board is not None:
            self.board.report.remote(self.name, self.done, self.known)


class BagWorker:
    """A Ray actor's body: the model loaded once, then bag after bag (``__call__``)."""

    def __init__(self, values: dict[str, Any], options: BagOptions, out: str,
                 board: Any = None) -> None:
        """Load the backend; a failure is kept for :meth:`ready` to report."""
        logging.basicConfig(level=logging.INFO, format='fleet: %(levelname)s: %(message)s')
        self.out = Path(out)
        self.board = board
        self.where = f'{os.uname().nodename}:{os.getpid()}'
        self.error = ''
        self.step: BagStep | None = None
        try:
            self.step = BagStep(Settings(values), options)
        except BagError as exc:
            self.error = str(exc)

    def ready(self) -> tuple[str, str]:
        """Where the worker runs, and why its backend could not start ('' when it did)."""
        return self.where, self.error

    def __call__(self, bag: str, name: str) -> dict[str, Any]:
        """Process one bag into ``out/.partial/name``, then move it to ``out/name``."""
        if self.step is None:
            return {'worker': self.where, 'sets': 0, 'skipped': {}, 'seconds': 0.0,
                    'status': FAILED, 'reason': self.error}
        partial = self.out / PARTIAL / name
        shutil.rmtree(partial, ignore_errors=True)  # an earlier attempt's: replaced
        start = time.monotonic()
        result = {'worker': self.where, 'sets': 0, 'skipped': {}}
        try:
            summary = self.step.run(Path(bag), partial, _Reporter(self.board, name))
        except BagError as exc:
            return {**result, 'status': FAILED, 'reason': str(exc),
                    'seconds': time.monotonic() - start}
        result.update(sets=summary['pairs_processed'], skipped=summary['pairs_skipped'],
                      seconds=time.monotonic() - start)
        if 'interrupted' in summary:
            stopped = summary['interrupted']
            status = INTERRUPTED_BAG if stopped.startswith('interrupted') else FAILED
            return {**result, 'status': status,
                    'reason': f'{stopped}; the part done is in {partial}'}
        if summary['pairs_processed'] == 0:
            return {**result, 'status': FAILED, 'reason': NO_PAIR}
        _write_json(self.out / RECORDS / f'{name}.json', result)
        os.replace(partial, self.out / name)  # the output is complete only now
        return {**result, 'status': COMPLETE}


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` to ``path`` atomically (a reader sees the old file or the new one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile('w', dir=path.parent, delete=False, suffix='.tmp') as f:
        json.dump(data, f)
    os.replace(f.name, path)


class ProgressBoard:
    """A Ray actor the workers tell their frames known and done, per bag."""

    def __init__(self) -> None:
        """Start with no bag."""
        self.bags: dict[str, tuple[int, int]] = {}

    def report(self, name: str, done: int, known: int) -> None:
        """Set a bag's figures (a retried bag starts again from 0)."""
        self.bags[name] = (done, known)

    def totals(self) -> tuple[int, int]:
        """Frames done and frames known over all bags."""
        return (sum(d for d, _ in self.bags.values()), sum(k for _, k in self.bags.values()))


# -- Ray ----------------------------------------------------------------------------------------

def import_ray() -> Any:
    """Import Ray, or say how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise BagError(f'{RAY_MISSING} ({exc})') from None
    return ray


def start_ray(ray: Any, address: str | None) -> bool:
    """Join ``address``, or start Ray on this machine (loopback only); True if started here.

    A Ray already initialised in this process (a caller's, a test's) is used as it is.
    """
    if ray.is_initialized():
        return False
    try:
        if address:
            ray.init(address=address, log_to_driver=True)
        else:
            ray.init(address='local', _node_ip_address='127.0.0.1', include_dashboard=False,
                     log_to_driver=True)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = (f'the Ray cluster at {address}: start one with `ray start --head` (then '
                 '`ray start --address=HEAD:6379` on the other machines), or leave out '
                 '--address and RAY_ADDRESS to run on this machine') if address else 'Ray here'
        raise BagError(f'cannot start or join {where}: {type(exc).__name__}: {exc}') from exc
    return True


def default_workers(ray: Any) -> tuple[int, float]:
    """Return the workers and GPUs per worker: one per GPU of the cluster, else per CPU."""
    resources = ray.cluster_resources()
    gpus = int(resources.get('GPU', 0))
    if gpus:
        return gpus, 1.0
    return max(1, int(resources.get('CPU', 1))), 0.0


def check_paths_on_every_node(ray: Any, paths: list[str], out: Path) -> None:
    """Run a task on every node that checks the inputs exist and ``out`` is writable there."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    def missing_on_node(paths: list[str], out: str) -> list[str]:
        # Defined here so Ray ships it by value: the node's task imports nothing of the package.
        missing = [p for p in paths if not os.path.exists(p)]
        try:
            with tempfile.NamedTemporaryFile(dir=out, prefix='.fleet-check-'):
                pass
        except OSError as exc:
            missing.append(f'{out} (not writable: {exc.strerror})')
        return missing

    check = ray.remote(num_cpus=0)(missing_on_node)
    nodes = [n for n in ray.nodes() if n.get('Alive')]
    refs = [check.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
        n['NodeID'], soft=False)).remote(paths, str(out)) for n in nodes]
    problems = []
    for node, missing in zip(nodes, ray.get(refs)):
        if missing:
            problems.append(f'node {node["NodeManagerAddress"]} does not see '
                            + ', '.join(missing[:5]) + (' ...' if len(missing) > 5 else ''))
    if problems:
        raise BagError('; '.join(problems) + '. Every worker reads the inputs and writes --out '
                       'at the same paths: put them on a filesystem shared by every machine of '
                       'the cluster, mounted at the same place, and give absolute paths')


# -- the run ------------------------------------------------------------------------------------

@dataclass
class _Fleet:
    """The workers and the bags in flight."""

    ray: Any
    make_worker: Any
    retries: int
    idle: list = field(default_factory=list)
    running: dict = field(default_factory=dict)   # result ref -> (actor, job)

    def start_workers(self, count: int) -> None:
        """Start ``count`` workers; a backend that cannot start is a BagError."""
        actors = [self.make_worker() for _ in range(count)]
        for where, error in self.ray.get([a.ready.remote() for a in actors]):
            if error:
                for actor in actors:
                    self.ray.kill(actor)
                raise BagError(error)
        self.idle.extend(actors)

    def submit(self, job: Job) -> None:
        """Give ``job`` to an idle worker."""
        actor = self.idle.pop()
        job.attempts += 1
        self.running[actor.__call__.remote(str(job.bag), job.name)] = (actor, job)

    def finished(self, ref: Any, pending: deque) -> Job | None:
        """Return the job of a finished ref; None when its worker died and it is retried."""
        actor, job = self.running.pop(ref)
        try:
            result = self.ray.get(ref)
        except self.ray.exceptions.RayActorError as exc:
            self.ray.kill(actor)
            self.idle.append(self.make_worker())  # a fresh worker takes its place
            if job.attempts <= self.retries:
                LOG.warning('the worker of %s died (%s): retrying it (attempt %d of %d)',
                            job.name, type(exc).__name__, job.attempts + 1, self.retries + 1)
                pending.appendleft(job)
                return None
            job.status = FAILED
            job.reason = f'its worker died {job.attempts} times: {str(exc).splitlines()[0]}'
            return job
        except self.ray.exceptions.RayTaskError as exc:  # not the input's fault: a bug, a disk
            self.idle.append(actor)
            cause = exc.cause if isinstance(exc.cause, BaseException) else exc
            job.status = FAILED
            job.reason = f'{type(cause).__name__}: {cause}'
            return job
        self.idle.append(actor)
        job.status, job.reason = result['status'], result.get('reason', '')
        job.sets, job.skipped = result['sets'], result['skipped']
        job.seconds, job.worker = result['seconds'], result['worker']
        return job

    def stop(self) -> None:
        """Kill every worker (Ctrl-C): their partial outputs stay partial.

        A bag whose worker already returned (its output closed and renamed) is counted as it
        finished, not as interrupted: its result is collected first, within a short grace.
        """
        if self.running:
            done, _ = self.ray.wait(list(self.running), num_returns=len(self.running),
                                    timeout=STOP_GRACE)
            for ref in done:
                self.finished(ref, deque())  # nothing is retried after Ctrl-C
        for actor, job in self.running.values():
            job.status = INTERRUPTED_BAG
            job.reason = 'stopped by Ctrl-C; it is redone on the next run'
        for actor in [*self.idle, *(a for a, _ in self.running.values())]:
            self.ray.kill(actor)
        self.running.clear()
        self.idle.clear()


def process(args: argparse.Namespace, jobs: list[Job], chosen: Settings) -> bool:
    """Run the jobs that are not complete on Ray; returns whether it was interrupted."""
    todo = deque(j for j in jobs if j.status == NOT_RUN)
    if not todo:
        return False
    ray = import_ray()
    started = start_ray(ray, args.address)
    try:
        check_paths_on_every_node(ray, [str(j.bag) for j in todo], args.out.resolve())
        count, gpus = default_workers(ray)
        count = min(args.workers or count, len(todo))
        board = ray.remote(num_cpus=0)(ProgressBoard).remote()
        actor = ray.remote(BagWorker).options(num_cpus=1, num_gpus=gpus, max_restarts=0)
        fleet = _Fleet(ray, lambda: actor.remote(dict(chosen), BagOptions.from_args(args),
                                                 str(args.out.resolve()), board), args.retries)
        with tqdm(total=0, unit='frame', desc=f'{len(todo)} bags', disable=args.quiet,
                  dynamic_ncols=True) as bar:
            fleet.start_workers(count)
            try:
                _schedule(ray, fleet, todo, board, bar)
            except KeyboardInterrupt:
                fleet.stop()
                return True
    finally:
        if started:
            with uninterruptible():  # a second Ctrl-C must not cut the shutdown short
                ray.shutdown()
    return False


def _schedule(ray: Any, fleet: _Fleet, todo: deque, board: Any, bar: Any) -> None:
    """Keep every worker busy until every bag is done; the bar follows the board."""
    while todo or fleet.running:
        while todo and fleet.idle:
            fleet.submit(todo.popleft())
        done, _ = ray.wait(list(fleet.running), num_returns=1, timeout=0.5)
        for ref in done:
            job = fleet.finished(ref, todo)
            if job is not None and job.status != COMPLETE:
                LOG.warning('%s: %s: %s', job.name, job.status, job.reason)
        frames, known = ray.get(board.totals.remote())
        bar.total = known
        bar.n = frames
        bar.refresh()


# -- the summary --------------------------------------------------------------------------------

def summary_table(jobs: list[Job], seconds: float) -> str:
    """Return a fixed-width table of the jobs, then totals."""
    rows = [job.row() for job in jobs]
    shown = [c for c in COLUMNS if c != 'input']
    widths = {c: max([len(c), *(len(r[c]) for r in rows)]) for c in shown if c != 'reason'}
    lines = ['  '.join(c.ljust(widths.get(c, 0)) for c in shown).rstrip()]
    lines += ['  '.join(r[c].ljust(widths.get(c, 0)) for c in shown).rstrip() for r in rows]
    complete = [j for j in jobs if j.status in (COMPLETE, EARLIER)]
    ran = [j for j in jobs if j.status == COMPLETE]
    sets = sum(j.sets for j in ran)
    footer = f'{len(complete)} of {len(jobs)} bags complete ({len(ran)} in this run)'
    if ran and seconds > 0:
        footer += (f'; {sets} sets in {seconds:.1f} s (start-up included): '
                   f'{len(ran) / seconds:.3f} bags/s, {sets / seconds:.2f} sets/s')
    return '\n'.join([*lines, footer])


def write_summary(path: Path, jobs: list[Job]) -> None:
    """One CSV row per bag (``DIR/summary.csv``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, 'w', newline='', encoding='utf-8') as stream:
        writer = csv.DictWriter(stream, COLUMNS)
        writer.writeheader()
        writer.writerows(job.row() for job in jobs)


def run(args: argparse.Namespace) -> tuple[list[Job], bool]:
    """Find the bags, run those not complete, write the summary.

    Returns the jobs and whether the run was interrupted.
    """
    chosen = settings_from_args(args)
    if args.workers is not None and args.workers < 1:
        raise BagError(f'--workers must be at least 1, got {args.workers}')
    if args.retries < 0:
        raise BagError(f'--retries must be 0 or more, got {args.retries}')
    jobs = make_jobs(find_bags(args.bags))
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BagError(f'cannot create --out {args.out}: {exc}; give a writable folder') from exc
    skip_complete(jobs, args.out)
    start = time.monotonic()
    interrupted = process(args, jobs, chosen)
    print(summary_table(jobs, time.monotonic() - start))
    write_summary(args.out / SUMMARY, jobs)
    return jobs, interrupted


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM stops the run like Ctrl-C


def main(argv: list[str] | None = None) -> int:
    """Console entry point; returns the exit code.

    0 when every bag is complete, 1 when some bag failed, 2 on bad input (Ray missing
    included), 130 when interrupted (every finished bag is kept).
    """
    logging.basicConfig(level=logging.INFO, format='fleet: %(levelname)s: %(message)s')
    args = build_parser().parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        jobs, interrupted = run(args)
    except BagError as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print('fleet: interrupted before any bag started', file=sys.stderr)
        return INTERRUPTED
    finally:
        signal.signal(signal.SIGTERM, previous)
    if interrupted:
        print(f'fleet: interrupted; the complete bags are in {args.out}, the others are '
              'redone by the next run', file=sys.stderr)
        return INTERRUPTED
    return 0 if all(j.status in (COMPLETE, EARLIER) for j in jobs) else 1


if __name__ == '__main__':
    sys.exit(main())

#!/usr/bin/env python3
r"""The fleet tool on a local Ray: bags and frames per second with 1 and 2 workers.

Generates ``--bags`` bags of ``--frames`` stereo frames (generated scenes, the bag tool tests'
writer) and prints, on this machine:

* the bag tool on one bag (in process, model loaded once, as a worker does): seconds per bag;
* Ray's start-up (``ray.init`` on 127.0.0.1, no dashboard) and one worker's start-up (an
  actor that loads the model);
* the fleet over all bags with 1 and 2 workers (and ``--workers`` more): wall seconds, bags/s,
  frames/s, and the per-bag overhead against the bag tool,
  ``(wall - worker start-up) * workers / bags - bag tool seconds per bag``;
* memory per worker: the peak resident size of a worker process after a bag.

    PYTHONPATH=. python benchmarks/bench_fleet.py --bags 4 --frames 4 --size 120x160
    PYTHONPATH=. python benchmarks/bench_fleet.py --backend foundation_stereo \
        --checkpoint P --device cuda --workers 1 2 4 --bags 16 --frames 50

Run it inside a network namespace with only loopback up where you can (``unshare -n``), as the
tests do. Measured 2026-12-03 on the shared 2-core development VM under heavy load (other
engineers' jobs, load average 6.5), SGBM, 120x160, 4 bags of 4 frames; single figures vary by
2x and more between runs:

    bag tool per bag 0.11 s | Ray start-up 6.4 s | worker start-up 2.6 s | worker peak RSS 0.37 GB
    workers  wall s  bags/s  frames/s  overhead/bag s
    1        9.0     0.44    1.8       1.51
    2        12.0    0.33    1.3       4.63

and 8 bags of 4 frames, 1 worker, in another run (load as high):

    bag tool per bag 1.24 s | Ray start-up 9.7 s | worker start-up 3.3 s | worker peak RSS 0.37 GB
    1        18.3    0.44    1.8       0.63

At this size the fleet's time is all overhead: the actors' start (a process each that imports
torch and loads the backend) and the path check on every node, then 0.6 to 1.5 s per bag more
than the bag tool in process (not broken down here: a new worker's first-bag warm-up, the remote
calls and progress reports, on cores that are taken); a second worker on two loaded cores only
adds its start. The overhead is per bag and per worker, not per frame: it
shrinks against a recorded bag of minutes of frames through a network on a GPU.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import shutil
import sys
import tempfile
import time
from pathlib import Path

import ray

from foundation_stereo_ros.synthetic.scenes import make_scene
from foundation_stereo_ros.tools import fleet
from foundation_stereo_ros.tools.bags import BagOptions, BagStep

REPO_ROOT = Path(__file__).resolve().parent.parent

TOPICS = ('/stereo/left/image_rect', '/stereo/left/camera_info', '/stereo/right/image_rect',
          '/stereo/right/camera_info')


def peak_rss_gb(pid: int) -> float:
    """Peak resident memory of a local process (VmHWM), in GB."""
    for line in Path(f'/proc/{pid}/status').read_text().splitlines():
        if line.startswith('VmHWM:'):
            return int(line.split()[1]) / 1e6
    return float('nan')


def main() -> None:
    """Print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--bags', type=int, default=4)
    parser.add_argument('--frames', type=int, default=4, help='stereo frames per bag')
    parser.add_argument('--size', default='120x160', help='HxW of the generated frames')
    parser.add_argument('--workers', type=int, nargs='+', default=[1, 2])
    args, tool_args = parser.parse_known_args()
    tool_args = tool_args or ['--backend', 'sgbm', '--num-disparities', '32']
    height, width = (int(v) for v in args.size.split('x'))
    tool_parser = fleet.build_parser()
    options = tool_parser.parse_args(['x', '--out', 'x', '--topics', *TOPICS, *tool_args])
    chosen = fleet.settings_from_args(options)

    sys.path.insert(0, str(REPO_ROOT / 'test'))  # the bag tool tests' generated-bag writer
    from test_bag_tool import frames_of, write_bag

    with tempfile.TemporaryDirectory(prefix='bench_fleet_') as tmp:
        root = Path(tmp)
        scenes = [make_scene(width, height, seed=seed) for seed in (1, 2)]
        for k in range(args.bags):
            write_bag(root / 'in' / f'bag_{k:03d}', 'mcap', frames_of(scenes, args.frames),
                      list(range(1, args.frames + 1)))
        bags = sorted((root / 'in').iterdir())

        step = BagStep(chosen, BagOptions.from_args(options))
        step.run(bags[0], root / 'warm-up')
        start = time.perf_counter()
        step.run(bags[0], root / 'bag_tool')
        bag_seconds = time.perf_counter() - start

        start = time.perf_counter()
        ray.init(address='local', _node_ip_address='127.0.0.1', include_dashboard=False,
                 log_to_driver=False)
        ray_start = time.perf_counter() - start
        worker_class = ray.remote(fleet.BagWorker).options(num_cpus=1)
        start = time.perf_counter()
        worker = worker_class.remote(dict(chosen), BagOptions.from_args(options),
                                     str(root / 'probe'))
        where, error = ray.get(worker.ready.remote())
        worker_start = time.perf_counter() - start
        if error:
            sys.exit(error)
        ray.get(worker.__call__.remote(str(bags[0]), 'probe'))
        rss = peak_rss_gb(int(where.rsplit(':', 1)[1]))
        ray.kill(worker)

        print(f'bag tool per bag {bag_seconds:.2f} s | Ray start-up {ray_start:.1f} s | '
              f'worker start-up {worker_start:.1f} s | worker peak RSS {rss:.2f} GB')
        print('workers  wall s  bags/s  frames/s  overhead/bag s')
        for count in args.workers:
            out = root / f'out_{count}'
            argv = [str(root / 'in'), '--out', str(out), '--workers', str(count), '--quiet',
                    '--topics', *TOPICS, *tool_args]
            start = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):  # the fleet's own table
                code = fleet.main(argv)
            wall = time.perf_counter() - start
            if code != 0:
                sys.exit(f'the fleet exited with {code}')
            frames = args.bags * args.frames
            overhead = (wall - worker_start) * count / args.bags - bag_seconds
            print(f'{count:<8} {wall:<7.1f} {args.bags / wall:<7.2f} {frames / wall:<9.1f} '
                  f'{overhead:.2f}')
            shutil.rmtree(out)
        ray.shutdown()


if __name__ == '__main__':
    main()

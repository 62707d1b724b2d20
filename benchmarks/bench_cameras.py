#!/usr/bin/env python3
"""N stereo cameras through one node against N separate nodes: throughput, latency, memory.

For each camera count of ``--counts`` this starts either one node serving every camera
(``cameras:=[cam0, cam1, ...]``: one model, sets of one size batched) or one node per camera
(each its own copy of the model), publishes a generated scene on every camera at ``--rate`` Hz
from this process, and after every camera's first output (warm-up) measures for
``--duration`` seconds: total sets per second over all cameras, each camera's output rate and
latency p50/p99 (receipt time minus the input stamp: decode, inference, publication and DDS),
and the resident memory of the node processes together (the largest seen).

    PYTHONPATH=. python benchmarks/bench_cameras.py                  # FFS cffs_like, CPU
    PYTHONPATH=. python benchmarks/bench_cameras.py --counts 1 2 --width 96 --height 64 \
        --duration 5 --json cameras.json                             # tiny (what CI can run)
    PYTHONPATH=. python benchmarks/bench_cameras.py --device cuda -p precision:=fp16

The checkpoint defaults to the Fast-FoundationStereo reference ``cffs_like`` in
``../shared/reference/ffs`` (seeded, not trained: the figures are speed and memory, not
accuracy). Keeps DDS on this machine (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST) on
ROS_DOMAIN_ID (default 78 when unset).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import rclpy
from common import percentile, rss_mib
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import qos_profile_sensor_data
from stereo_msgs.msg import DisparityImage

from foundation_stereo_ros.ros.stereo_io import INPUT_TOPICS, INPUT_TYPES
from foundation_stereo_ros.ros.synthetic_camera import scene_to_messages
from foundation_stereo_ros.synthetic.scenes import make_scene

REPO_ROOT = Path(__file__).resolve().parent.parent
FFS_CHECKPOINT = (REPO_ROOT.parent / 'shared' / 'reference' / 'ffs' / 'cffs_like'
                  / 'model_best_bp2_serialize.pth')
ONE_NODE, SEPARATE = 'one node', 'separate nodes'


class Cameras:
    """Publishes one scene per camera at a rate and records each camera's output latencies."""

    def __init__(self, node, base: str, count: int, width: int, height: int) -> None:
        self.node = node
        self.lock = threading.Lock()
        self.latencies: list[list[float]] = [[] for _ in range(count)]
        self.frames = []
        self.pubs = []
        self.subs = []
        for index in range(count):
            scene = make_scene(width, height, seed=10 * index)
            self.frames.append(list(scene_to_messages(scene, 'rgb8', f'cam{index}_left',
                                                      f'cam{index}_right')))
            self.pubs.append([node.create_publisher(t, f'{base}/cam{index}/{name}',
                                                    qos_profile_sensor_data)
                              for name, t in zip(INPUT_TOPICS, INPUT_TYPES)])
            self.subs.append(node.create_subscription(
                DisparityImage, f'{base}/cam{index}/disparity', self._receiver(index), 10))

    def _receiver(self, index: int):
        def receive(msg: DisparityImage) -> None:
            now = self.node.get_clock().now().nanoseconds
            stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
            with self.lock:
                self.latencies[index].append((now - stamp) / 1e9)
        return receive

    def publish(self) -> None:
        stamp = self.node.get_clock().now().to_msg()
        for pubs, frame in zip(self.pubs, self.frames):
            for pub, msg in zip(pubs, frame):
                msg.header.stamp = stamp
                pub.publish(msg)

    def close(self) -> None:
        for pubs in self.pubs:
            for pub in pubs:
                self.node.destroy_publisher(pub)
        for sub in self.subs:
            self.node.destroy_subscription(sub)

    def reset(self) -> None:
        with self.lock:
            for values in self.latencies:
                values.clear()

    def snapshot(self) -> list[list[float]]:
        with self.lock:
            return [list(values) for values in self.latencies]


def node_command(namespace: str, cameras: list[str], args: argparse.Namespace) -> list[str]:
    command = [sys.executable, '-m', 'foundation_stereo_ros.node', '--ros-args',
               '-r', f'__ns:={namespace}', '-p', 'backend:=foundation_stereo',
               '-p', f'checkpoint:={args.checkpoint}', '-p', f'device:={args.device}']
    if cameras:
        command += ['-p', f'cameras:=[{", ".join(cameras)}]']
    for param in args.param:
        command += ['-p', param]
    return command


def run_case(ros_node, count: int, mode: str, args: argparse.Namespace) -> dict:
    """Start the node(s) for ``count`` cameras, warm up, measure; return the row."""
    with tempfile.TemporaryFile('w+') as log:  # the nodes' output, shown if they fail
        return _run_case(ros_node, count, mode, args, log)


def _run_case(ros_node, count: int, mode: str, args: argparse.Namespace, log) -> dict:
    base = f'/bench_cams{os.getpid()}_{count}_{"one" if mode == ONE_NODE else "sep"}'
    names = [f'cam{i}' for i in range(count)]
    if mode == ONE_NODE:
        commands = [node_command(base, names, args)]
    else:
        commands = [node_command(f'{base}/{name}', [], args) for name in names]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(REPO_ROOT)] + [p for p in os.environ.get('PYTHONPATH', '').split(os.pathsep) if p]))
    procs = [subprocess.Popen(c, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
             for c in commands]
    cameras = Cameras(ros_node, base, count, args.width, args.height)
    stop = threading.Event()
    peak_rss = [0.0]

    def drive() -> None:
        period = 1.0 / args.rate
        next_time = time.monotonic()
        while not stop.is_set():
            cameras.publish()
            peak_rss[0] = max(peak_rss[0], sum(rss_mib(p.pid) for p in procs))
            next_time += period
            stop.wait(max(0.0, next_time - time.monotonic()))

    driver = threading.Thread(target=drive, daemon=True)
    driver.start()
    row = {'cameras': count, 'mode': mode, 'processes': len(procs)}
    try:
        deadline = time.monotonic() + args.first_output_timeout
        while not all(cameras.snapshot()) and time.monotonic() < deadline:
            if any(p.poll() is not None for p in procs):
                break
            time.sleep(0.1)
        if not all(cameras.snapshot()):
            log.seek(0)
            row['error'] = 'no output from every camera: ' + log.read()[-500:]
            return row
        cameras.reset()
        peak_rss[0] = 0.0
        start = time.monotonic()
        time.sleep(args.duration)
        elapsed = time.monotonic() - start
        latencies = cameras.snapshot()
        row.update(
            total_sets_per_s=sum(len(v) for v in latencies) / elapsed,
            per_camera=[{'camera': name, 'hz': len(v) / elapsed,
                         'p50_ms': percentile(v, 50) * 1e3, 'p99_ms': percentile(v, 99) * 1e3}
                        for name, v in zip(names, latencies)],
            rss_mib=peak_rss[0])
        return row
    finally:
        stop.set()
        driver.join(timeout=5.0)
        cameras.close()
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in procs:
            try:
                proc.wait(timeout=20.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def table(rows: list[dict]) -> str:
    lines = [('| cameras | mode | processes | total sets/s | per camera Hz | latency p50 ms '
              '| latency p99 ms | resident MiB |'),
             '| --- | --- | --- | --- | --- | --- | --- | --- |']
    for row in rows:
        if 'error' in row:
            lines.append(f'| {row["cameras"]} | {row["mode"]} | {row["processes"]} | '
                         f'error: {row["error"][:120]!r} | | | | |')
            continue
        cams = row['per_camera']
        lines.append(
            f'| {row["cameras"]} | {row["mode"]} | {row["processes"]} | '
            f'{row["total_sets_per_s"]:.2f} | ' + ' / '.join(f'{c["hz"]:.2f}' for c in cams)
            + ' | ' + ' / '.join(f'{c["p50_ms"]:.0f}' for c in cams) + ' | '
            + ' / '.join(f'{c["p99_ms"]:.0f}' for c in cams) + f' | {row["rss_mib"]:.0f} |')
    return '\n'.join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--counts', type=int, nargs='+', default=[1, 2, 4])
    parser.add_argument('--width', type=int, default=160)
    parser.add_argument('--height', type=int, default=96)
    parser.add_argument('--rate', type=float, default=10.0, help='each camera, Hz')
    parser.add_argument('--duration', type=float, default=15.0, help='seconds measured')
    parser.add_argument('--first-output-timeout', type=float, default=180.0)
    parser.add_argument('--checkpoint', default=str(FFS_CHECKPOINT))
    parser.add_argument('--device', default='cpu')
    parser.add_argument('-p', '--param', action='append', default=None,
                        help='extra node parameter NAME:=VALUE (default valid_iters:=2)')
    parser.add_argument('--json', help='also write the rows here')
    args = parser.parse_args(argv)
    args.param = args.param if args.param is not None else ['valid_iters:=2']
    if not Path(args.checkpoint).is_file():
        parser.error(f'checkpoint {args.checkpoint} not found (the FFS reference lives in '
                     '../shared/reference/ffs; pass --checkpoint)')

    # DDS on this machine only (read by rclpy.init and by the node processes).
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    os.environ.setdefault('ROS_DOMAIN_ID', '78')
    rclpy.init()
    ros_node = rclpy.create_node(f'bench_cameras{os.getpid()}')
    executor = SingleThreadedExecutor()
    executor.add_node(ros_node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    rows = []
    try:
        for count in args.counts:
            for mode in (ONE_NODE,) if count == 1 else (ONE_NODE, SEPARATE):
                row = run_case(ros_node, count, mode, args)
                row.update(width=args.width, height=args.height, rate=args.rate,
                           params=args.param, device=args.device)
                rows.append(row)
                print(json.dumps(row), flush=True)
    finally:
        executor.shutdown(timeout_sec=5.0)
        spinner.join(timeout=5.0)  # a spinner left in rclpy at exit aborts the interpreter
        ros_node.destroy_node()
        rclpy.try_shutdown()
    print(f'\n{args.width}x{args.height}, each camera {args.rate:g} Hz, {args.device}, '
          f'{" ".join(args.param)}; {os.cpu_count()} cores\n')
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())

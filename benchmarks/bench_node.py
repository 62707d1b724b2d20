#!/usr/bin/env python3
"""End-to-end figures of the stereo node over DDS: latency, rates, per-stage times, memory.

Starts the synthetic camera (``--rate`` Hz, ``--width`` x ``--height``) and the stereo node as
two processes in one namespace, subscribes to the node's outputs from this process and prints,
per window of ``--window`` seconds: camera and output rates, end-to-end latency (receipt time
minus the input stamp: conversion, inference, publication and DDS transport), the image rates
the node itself receives ("L/R in", last second; at 720p30 a Python subscriber on a small
machine loses many best-effort images in DDS before any node code runs), the node's per-stage
times (from /diagnostics) and its resident memory. "busy": sets dropped because the model was
busy (newest-pair policy); "unmatch": input messages that never completed a set (a partner
lost by best-effort DDS, or late). With a camera faster than the model the latency must stay
flat and the memory must not grow: the node always processes the newest pair, drops the rest.

    PYTHONPATH=. python benchmarks/bench_node.py [--duration 30 --rate 30 --backend sgbm]
    PYTHONPATH=. python benchmarks/bench_node.py --rate 60 --duration 600 --window 10
        # long run: 10 minutes at 1280x720 and 60 Hz into a slower model; ends with the
        # plateau summary (latency, RSS, threads, open files per tenth of the run and their
        # slopes over the second half)
    PYTHONPATH=. python benchmarks/bench_node.py --backend foundation_stereo --checkpoint P \
        --width 640 --height 480 -p compile:=true -p warmup_width:=640 -p warmup_height:=480 \
        --json summary.json        # also write the whole run's summary (used by gpu_check.py)

Keeps DDS on this machine (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST) on ROS_DOMAIN_ID (default
77 when unset).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import rclpy
from common import percentile, rss_mib
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from stereo_msgs.msg import DisparityImage

from foundation_stereo_ros.ros.topic_names import INPUT_TOPICS, LEFT_INFO

ROOT = Path(__file__).resolve().parent.parent

OUTPUT_TYPES = {'disparity': DisparityImage, 'depth/image_rect': Image, 'points': PointCloud2,
                'disparity/image_color': Image}


def threads_and_files(pid: int) -> tuple[int, int]:
    """Thread count and open file descriptors of a process: what a slow leak grows besides RSS."""
    with open(f'/proc/{pid}/status') as status:
        threads = next(int(line.split()[1]) for line in status if line.startswith('Threads:'))
    return threads, len(os.listdir(f'/proc/{pid}/fd'))


# Plateau thresholds of the long-run summary: growth below these counts as flat. RSS wanders
# by tens of MiB between windows as the allocator reuses image buffers; keeping one more 720p
# image per minute would be 2.6 MiB/min.
FLAT_RSS_MIB_PER_MIN = 1.0
FLAT_LATENCY_SHARE_PER_MIN = 0.01


def slope_per_min(times_s: list[float], values: list[float]) -> tuple[float, float]:
    """Least-squares slope of values against time and its standard error, both per minute.

    NaN for fewer than 4 finite values.
    """
    pairs = [(t, v) for t, v in zip(times_s, values) if math.isfinite(v)]
    if len(pairs) < 4:
        return math.nan, math.nan
    times, ys = zip(*pairs)
    fit = statistics.linear_regression(times, ys)
    residual = sum((y - fit.intercept - fit.slope * t) ** 2 for t, y in pairs) / (len(pairs) - 2)
    spread = sum((t - statistics.fmean(times)) ** 2 for t in times)
    return fit.slope * 60.0, math.sqrt(residual / spread) * 60.0


def growth_verdict(slope: float, error: float, flat: float) -> str:
    """Judge a slope against the ``flat`` threshold, its standard error taken into account.

    'flat' when the slope is below ``flat`` beyond two standard errors, 'GROWS' when above it
    beyond two standard errors, else 'undecided' (run longer).
    """
    if not math.isfinite(slope):
        return 'undecided'
    if slope + 2 * error < flat:
        return 'flat'
    return 'GROWS' if slope - 2 * error > flat else 'undecided'


def plateau_summary(windows: list[dict]) -> dict:
    """Print the run per tenth (latency, RSS, threads, files) and how they grow after warm-up.

    ``windows`` holds one dict per printed row: ``t0`` and ``t`` (its start and end, s since the
    measurement began), ``latencies`` (s), ``rss`` (MiB), ``threads``, ``files``. The slopes are
    fitted to the windows after the first tenth of the run (warm-up: caches, allocator arenas).
    Returns the slopes and verdicts for the JSON summary.
    """
    parts = min(10, len(windows))
    size = len(windows) / parts
    print(f'{"minutes":>13} {"lat p50":>8} {"lat p95":>8} {"RSS med":>8} {"RSS max":>8} '
          f'{"threads":>7} {"files":>5}')
    for i in range(parts):
        chunk = windows[round(i * size):round((i + 1) * size)]
        latencies = [x for w in chunk for x in w['latencies']]
        rss = [w['rss'] for w in chunk]
        print(f'{chunk[0]["t0"] / 60:5.1f} - {chunk[-1]["t"] / 60:5.1f} '
              f'{percentile(latencies, 50) * 1e3:8.0f} {percentile(latencies, 95) * 1e3:8.0f} '
              f'{statistics.median(rss):8.1f} {max(rss):8.1f} '
              f'{max(w["threads"] for w in chunk):7d} {max(w["files"] for w in chunk):5d}')
    settled = windows[round(size):]
    times = [w['t'] for w in settled]
    lat_p50 = [percentile(w['latencies'], 50) * 1e3 for w in settled]
    median_p50 = _median_finite(lat_p50)
    rss_slope = slope_per_min(times, [w['rss'] for w in settled])
    lat_slope = slope_per_min(times, lat_p50)
    result = {
        'rss_slope_mib_per_min': rss_slope,
        'rss_verdict': growth_verdict(*rss_slope, FLAT_RSS_MIB_PER_MIN),
        'latency_p50_slope_ms_per_min': lat_slope,
        'latency_verdict': growth_verdict(*lat_slope, FLAT_LATENCY_SHARE_PER_MIN * median_p50),
        'threads_first_last': [settled[0]['threads'], settled[-1]['threads']],
        'files_first_last': [settled[0]['files'], settled[-1]['files']],
    }
    print(f'bench_node: after warm-up ({times[0] / 60:.1f}-{times[-1] / 60:.1f} min), slope +- '
          f'standard error: RSS {rss_slope[0]:+.2f} +- {rss_slope[1]:.2f} MiB/min '
          f'({result["rss_verdict"]}; flat means below {FLAT_RSS_MIB_PER_MIN:g}), latency p50 '
          f'{lat_slope[0]:+.1f} +- {lat_slope[1]:.1f} ms/min ({result["latency_verdict"]}; flat '
          f'means below {FLAT_LATENCY_SHARE_PER_MIN:.0%} of its median {median_p50:.0f} ms); '
          'threads '
          f'{result["threads_first_last"][0]} -> {result["threads_first_last"][1]}, open files '
          f'{result["files_first_last"][0]} -> {result["files_first_last"][1]}')
    return result


class Probe:
    """Subscribes to the outputs, the camera's CameraInfo and /diagnostics; thread-safe."""

    def __init__(self, node: rclpy.node.Node, outputs: list[str]) -> None:
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.outputs = 0
        self.inputs = 0
        self.stages: dict[str, str] = {}
        self.busy = 0       # node totals: sets dropped because the model was busy,
        self.unmatched = 0  # messages that never completed a set (lost or late)
        self.node_rates = [float('nan')] * 2  # image rates as the node receives them
        self.clock = node.get_clock()
        first = outputs[0]
        for topic in outputs:
            node.create_subscription(
                OUTPUT_TYPES[topic], topic,
                (lambda msg: self._on_output(msg)) if topic == first else (lambda msg: None), 5)
        node.create_subscription(CameraInfo, INPUT_TOPICS[LEFT_INFO], self._on_input,
                                 qos_profile_sensor_data)
        node.create_subscription(DiagnosticArray, '/diagnostics', self._on_diagnostics, 10)

    def _on_output(self, msg) -> None:
        now = self.clock.now().nanoseconds
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        with self.lock:
            self.latencies.append((now - stamp) / 1e9)
            self.outputs += 1

    def _on_input(self, msg) -> None:
        with self.lock:
            self.inputs += 1

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.endswith('foundation_stereo: processing'):
                with self.lock:
                    self.stages = {kv.key: kv.value for kv in status.values
                                   if kv.key.startswith('stage ')}
            elif status.name.endswith('foundation_stereo: input'):
                values = {kv.key: kv.value for kv in status.values}
                with self.lock:
                    self.busy = int(values.get('sync sets dropped (model busy)', 0))
                    self.unmatched = int(values.get('sync messages dropped', 0))
                    self.node_rates = [float(values.get(f'{side}/image_rect rate (Hz)', 'nan'))
                                       for side in ('left', 'right')]

    def take(self) -> tuple[list[float], int, int, dict[str, str], int, int, list]:
        with self.lock:
            latencies, self.latencies = self.latencies, []
            result = (latencies, self.inputs, self.outputs, dict(self.stages), self.busy,
                      self.unmatched, list(self.node_rates))
            self.inputs = self.outputs = 0
            return result


def _median_finite(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return statistics.median(finite) if finite else math.nan


def start(module: str, namespace: str, *ros_args: str) -> subprocess.Popen:
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(p for p in (str(ROOT), env.get('PYTHONPATH')) if p)
    # Logs go to a file: a pipe nobody reads would block the process once full.
    log = tempfile.TemporaryFile(mode='w+')  # noqa: SIM115 - lives as long as the process
    proc = subprocess.Popen([sys.executable, '-m', module, '--ros-args', '-r',
                             f'__ns:={namespace}', *ros_args], env=env,
                            stdout=log, stderr=subprocess.STDOUT, text=True)
    proc.log = log
    return proc


def log_of(proc: subprocess.Popen) -> str:
    proc.log.seek(0)
    return proc.log.read()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--width', type=int, default=1280)
    parser.add_argument('--height', type=int, default=720)
    parser.add_argument('--rate', type=float, default=30.0, help='camera rate (Hz)')
    parser.add_argument('--duration', type=float, default=30.0, help='seconds measured')
    parser.add_argument('--window', type=float, default=5.0, help='seconds per printed row')
    parser.add_argument('--backend', default='sgbm')
    parser.add_argument('--checkpoint', default='')
    parser.add_argument('--num-disparities', type=int, default=128)
    parser.add_argument('--qos', choices=('sensor_data', 'reliable'), default='sensor_data',
                        help='QoS of the camera publishers and the node inputs')
    parser.add_argument('--outputs', nargs='+', default=['disparity', 'depth/image_rect',
                                                         'points'], choices=sorted(OUTPUT_TYPES))
    parser.add_argument('-p', '--param', action='append', default=[], metavar='NAME:=VALUE',
                        help='another node parameter (repeatable), e.g. -p valid_iters:=8')
    parser.add_argument('--first-output-timeout', type=float, default=120.0,
                        help='seconds to wait for the first output (model load, warm-up)')
    parser.add_argument('--json', default='', metavar='PATH',
                        help='write the summary of the whole run there as JSON')
    args = parser.parse_args()
    # Read by rclpy.init() here and inherited by the two processes.
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    os.environ.setdefault('ROS_DOMAIN_ID', '77')

    namespace = f'/bench{os.getpid()}'
    camera = start('foundation_stereo_ros.ros.synthetic_camera', namespace,
                   '-p', f'width:={args.width}', '-p', f'height:={args.height}',
                   '-p', f'rate:={float(args.rate)}', '-p', 'moving:=false',
                   '-p', f'qos:={args.qos}')
    node_args = ['--params-file', str(ROOT / 'config' / 'foundation_stereo.yaml'),
                 '-p', f'backend:={args.backend}',
                 '-p', f'num_disparities:={args.num_disparities}']
    for topic in INPUT_TOPICS:  # the node's inputs take the camera's QoS (standard overrides)
        node_args += ['-p', f'qos_overrides.{namespace}/{topic}.subscription.reliability:='
                      + ('best_effort' if args.qos == 'sensor_data' else 'reliable')]
    if args.checkpoint:
        node_args += ['-p', f'checkpoint:={args.checkpoint}']
    for param in args.param:
        node_args += ['-p', param]
    stereo = start('foundation_stereo_ros.ros.node', namespace, *node_args)

    rclpy.init()
    node = rclpy.create_node('bench_probe', namespace=namespace)
    probe = Probe(node, args.outputs)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    code = 0
    try:
        print(f'bench_node: {args.width}x{args.height} camera at {args.rate} Hz, backend '
              f'{args.backend}, outputs {" ".join(args.outputs)}; waiting for the first '
              'output...', flush=True)
        start_wait = time.monotonic()
        deadline = start_wait + args.first_output_timeout
        while time.monotonic() < deadline and not probe.outputs:
            if camera.poll() is not None or stereo.poll() is not None:
                dead = camera if camera.poll() is not None else stereo
                raise RuntimeError('a process died:\n' + log_of(dead))
            time.sleep(0.1)
        if not probe.outputs:
            raise RuntimeError(f'no output within {args.first_output_timeout:g} s:\n'
                               + log_of(stereo)[-2000:])
        first_output_s = time.monotonic() - start_wait
        print(f'{"t (s)":>6} {"cam Hz":>7} {"L/R in":>9} {"out Hz":>7} {"lat p50":>8} '
              f'{"lat p95":>8} {"lat max":>8} {"busy":>6} {"unmatch":>7} {"RSS MiB":>8}  '
              'stages (ms)')
        all_latencies, rss, windows = [], [], []
        *_, busy0, unmatched0, _ = probe.take()
        totals = {'inputs': 0, 'outputs': 0, 'busy': 0, 'unmatched': 0}
        node_rates_seen: list[list[float]] = []
        begin = time.monotonic()
        while time.monotonic() - begin < args.duration:
            window_start = time.monotonic() - begin
            time.sleep(args.window)
            latencies, inputs, outputs, stages, busy, unmatched, node_rates = probe.take()
            all_latencies += latencies
            rss.append(rss_mib(stereo.pid))
            threads, files = threads_and_files(stereo.pid)
            windows.append({'t0': window_start, 't': time.monotonic() - begin,
                            'latencies': latencies, 'rss': rss[-1], 'threads': threads,
                            'files': files})
            totals['inputs'] += inputs
            totals['outputs'] += outputs
            totals['busy'] += busy - busy0
            totals['unmatched'] += unmatched - unmatched0
            node_rates_seen.append(node_rates)
            stage_text = ' '.join(f'{k[6:].split(" ")[0]}={v}' for k, v in stages.items())
            print(f'{time.monotonic() - begin:6.0f} {inputs / args.window:7.1f} '
                  f'{node_rates[0]:4.0f}/{node_rates[1]:<4.0f} {outputs / args.window:7.2f} '
                  f'{percentile(latencies, 50) * 1e3:8.0f} {percentile(latencies, 95) * 1e3:8.0f} '
                  f'{max(latencies, default=0) * 1e3:8.0f} {busy - busy0:6d} '
                  f'{unmatched - unmatched0:7d} {rss[-1]:8.1f}  {stage_text}', flush=True)
            busy0, unmatched0 = busy, unmatched
        half = len(all_latencies) // 2
        if half:
            first, second = all_latencies[:half], all_latencies[half:]
            print(f'bench_node: latency median first half {statistics.median(first) * 1e3:.0f} '
                  f'ms, second half {statistics.median(second) * 1e3:.0f} ms; RSS first '
                  f'{rss[0]:.1f} MiB, last {rss[-1]:.1f} MiB, max {max(rss):.1f} MiB')
        long_run = plateau_summary(windows) if len(windows) >= 6 else {}
        if args.json:
            measured = time.monotonic() - begin
            summary = {
                'width': args.width, 'height': args.height, 'camera_rate_set_hz': args.rate,
                'backend': args.backend, 'params': args.param, 'measured_s': measured,
                'first_output_s': first_output_s, 'outputs': totals['outputs'],
                'latency_p50_ms': percentile(all_latencies, 50) * 1e3,
                'latency_p99_ms': percentile(all_latencies, 99) * 1e3,
                'latency_max_ms': max(all_latencies, default=math.nan) * 1e3,
                'camera_hz': totals['inputs'] / measured,
                'output_hz': totals['outputs'] / measured,
                'node_input_hz': _median_finite([r[0] for r in node_rates_seen]),
                'dropped_busy': totals['busy'], 'dropped_unmatched': totals['unmatched'],
                'rss_max_mib': max(rss, default=math.nan),
                **long_run,
            }
            Path(args.json).write_text(json.dumps(summary, indent=1) + '\n')
    except RuntimeError as exc:
        print(f'bench_node: error: {exc}', file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        print('bench_node: interrupted')
    finally:
        executor.shutdown()
        spinner.join(timeout=5.0)  # a spinner left in rclpy at exit aborts the interpreter
        node.destroy_node()
        rclpy.try_shutdown()
        for proc in (camera, stereo):
            proc.send_signal(signal.SIGINT)
        for proc in (camera, stereo):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
    return code


if __name__ == '__main__':
    sys.exit(main())

r"""Offline: a rosbag2 of a stereo camera in; the same bag plus disparity, depth and points out.

    python -m foundation_stereo_ros.bag_tool IN_BAG OUT_BAG \
        [--topics LEFT RIGHT LEFT_INFO RIGHT_INFO] [--backend sgbm|foundation_stereo] \
        [--checkpoint model_best_bp2.pth] [--storage mcap|sqlite3]

Reads .mcap and .db3 bags (a bag folder or the file itself) with ``rosbags``, synchronises the
four stereo topics with the node's synchroniser, runs the node's pipeline on every set and
writes every input message (copied byte for byte) plus the outputs to OUT_BAG. Outputs are
stamped like their input and written at the log time of the message that completed the set,
on ``<ns>/disparity``, ``<ns>/depth/image_rect``, ``<ns>/depth/camera_info`` and
``<ns>/points``, where ``<ns>`` is the namespace of the left camera (``/stereo`` for
``/stereo/left/image_rect``) unless --output-namespace says otherwise.
"""
from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from rclpy.serialization import deserialize_message, serialize_message
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore
from sensor_msgs.msg import CameraInfo, Image
from tqdm import tqdm

from foundation_stereo_ros.backends import make_backend
from foundation_stereo_ros.node_params import DEFAULTS, NodeSettings
from foundation_stereo_ros.pipeline import PipelineConfig, StereoPipeline
from foundation_stereo_ros.stereo_io import (
    OUTPUT_TOPICS,
    OUTPUT_TYPES,
    PairDecoder,
    PairError,
    output_header,
    output_messages,
)
from foundation_stereo_ros.sync import StereoSynchronizer

LOG = logging.getLogger('foundation_stereo_bag')

DEFAULT_TOPICS = ('/left/image_rect', '/right/image_rect', '/left/camera_info',
                  '/right/camera_info')
DEFAULT_OUTPUTS = ('disparity', 'depth/image_rect', 'depth/camera_info', 'points')
STORAGES = {'mcap': StoragePlugin.MCAP, 'sqlite3': StoragePlugin.SQLITE3}
# ROS type names of the outputs, for the bag's connection records.
ROS_TYPE_NAMES = {msg_type: f'{msg_type.__module__.split(".")[0]}/msg/{msg_type.__name__}'
                  for msg_type in OUTPUT_TYPES}


class BagToolError(RuntimeError):
    """A problem with the user's bags or options, reported without a traceback."""


def build_parser() -> argparse.ArgumentParser:
    """Command-line interface."""
    p = argparse.ArgumentParser(
        prog='python -m foundation_stereo_ros.bag_tool',
        description='Add disparity, depth and point clouds to a rosbag2 of a stereo camera.')
    p.add_argument('in_bag', type=Path, help='input bag: folder, .mcap or .db3 file')
    p.add_argument('out_bag', type=Path, help='output bag folder (must not exist)')
    p.add_argument('--topics', nargs=4, default=list(DEFAULT_TOPICS),
                   metavar=('LEFT', 'RIGHT', 'LEFT_INFO', 'RIGHT_INFO'),
                   help='rectified image and CameraInfo topics (default: %(default)s)')
    p.add_argument('--output-namespace', help='namespace of the output topics (default: '
                   'that of the left camera, e.g. /stereo for /stereo/left/image_rect)')
    p.add_argument('--outputs', nargs='+', choices=OUTPUT_TOPICS, default=list(DEFAULT_OUTPUTS),
                   help='outputs to write (default: %(default)s)')
    p.add_argument('--storage', choices=sorted(STORAGES),
                   help='storage of the output bag (default: that of the input)')
    p.add_argument('--backend', choices=('foundation_stereo', 'sgbm'),
                   default=DEFAULTS['backend'])
    p.add_argument('--checkpoint', default='',
                   help='model_best_bp2.pth with its cfg.yaml beside it (foundation_stereo)')
    p.add_argument('--device', default=DEFAULTS['device'], help='auto, cuda, cuda:N or cpu')
    p.add_argument('--precision', default=DEFAULTS['precision'], choices=('fp32', 'fp16', 'bf16'))
    p.add_argument('--valid-iters', type=int, default=DEFAULTS['valid_iters'])
    p.add_argument('--hierarchical', action='store_true')
    p.add_argument('--small-ratio', type=float, default=DEFAULTS['small_ratio'])
    p.add_argument('--scale', type=float, default=DEFAULTS['scale'],
                   help='run the backend on images resized by this factor (0, 1]')
    p.add_argument('--z-near', type=float, default=DEFAULTS['z_near'])
    p.add_argument('--z-far', type=float, default=DEFAULTS['z_far'])
    p.add_argument('--keep-invisible', action='store_true',
                   help='keep disparities whose match falls outside the right image')
    p.add_argument('--num-disparities', type=int, default=DEFAULTS['num_disparities'],
                   help='sgbm search range (multiple of 16)')
    p.add_argument('--block-size', type=int, default=DEFAULTS['block_size'], help='sgbm, odd')
    p.add_argument('--sync', choices=('exact', 'approximate'), default=DEFAULTS['sync_policy'])
    p.add_argument('--slop', type=float, default=DEFAULTS['slop'],
                   help='approximate sync: largest stamp spread of a set (seconds)')
    p.add_argument('--quiet', action='store_true', help='no progress bar')
    return p


def settings_from_args(args: argparse.Namespace) -> NodeSettings:
    """Validate the command line with the node's rules and defaults."""
    if args.backend == 'foundation_stereo' and not args.checkpoint:
        raise BagToolError('--backend foundation_stereo needs --checkpoint '
                           'PATH/model_best_bp2.pth (cfg.yaml beside it), or use --backend sgbm')
    values = {
        'backend': args.backend, 'checkpoint': args.checkpoint, 'device': args.device,
        'precision': args.precision, 'valid_iters': args.valid_iters,
        'hierarchical': args.hierarchical, 'small_ratio': args.small_ratio,
        'scale': args.scale, 'z_near': args.z_near, 'z_far': args.z_far,
        'remove_invisible': not args.keep_invisible, 'num_disparities': args.num_disparities,
        'block_size': args.block_size, 'sync_policy': args.sync, 'slop': args.slop,
    }
    try:
        return NodeSettings.from_values(values)
    except ValueError as exc:
        raise BagToolError(str(exc).replace('_', '-')) from exc


def input_storage(path: Path) -> str:
    """'mcap' or 'sqlite3', from the file or the files in the bag folder."""
    files = [path] if path.is_file() else sorted(path.iterdir())
    suffixes = {f.suffix for f in files}
    return 'sqlite3' if '.db3' in suffixes and '.mcap' not in suffixes else 'mcap'


def output_namespace(left_topic: str) -> str:
    """'/stereo' for '/stereo/left/image_rect'; '' for '/left/image_rect'."""
    parts = left_topic.strip('/').split('/')
    return '/' + '/'.join(parts[:-2]) if len(parts) > 2 else ''


def _copy_connection(writer: Writer, conn: Any, typestore: Any) -> Any:
    """Add an output connection like ``conn``; None if it cannot be copied."""
    ext = conn.ext
    kwargs = {'serialization_format': getattr(ext, 'serialization_format', 'cdr'),
              'offered_qos_profiles': getattr(ext, 'offered_qos_profiles', ())}
    if conn.msgtype in typestore.types:
        return writer.add_connection(conn.topic, conn.msgtype, typestore=typestore, **kwargs)
    if conn.msgdef and conn.msgdef.data:
        return writer.add_connection(conn.topic, conn.msgtype, msgdef=conn.msgdef.data,
                                     rihs01=conn.digest, **kwargs)
    return None


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Process the bag; returns the summary (also printed)."""
    settings = settings_from_args(args)
    if not args.in_bag.exists():
        raise BagToolError(f'input bag not found: {args.in_bag}')
    if args.out_bag.exists():
        raise BagToolError(f'output bag {args.out_bag} exists: remove it or choose another name')
    storage = args.storage or input_storage(args.in_bag)
    left_topic, right_topic, left_info_topic, right_info_topic = args.topics
    # Synchroniser inputs in the node's order: left image, left info, right image, right info.
    stereo_topics = {left_topic: (0, Image), left_info_topic: (1, CameraInfo),
                     right_topic: (2, Image), right_info_topic: (3, CameraInfo)}
    namespace = (args.output_namespace if args.output_namespace is not None
                 else output_namespace(left_topic)).rstrip('/')

    backend = make_backend(settings.backend, **settings.backend_options())
    pipeline = StereoPipeline(backend, PipelineConfig(**settings.pipeline_options()))
    decoder = PairDecoder(LOG)
    sync = StereoSynchronizer(4, policy=settings.sync_policy, queue_size=settings.queue_size,
                              slop=settings.slop, on_reset=lambda i, a, b: LOG.warning(
                                  'stamps went backwards on %s (%.3f s -> %.3f s): '
                                  'synchronising afresh', args.topics[[0, 2, 1, 3][i]],
                                  a / 1e9, b / 1e9))
    typestore = get_typestore(Stores.ROS2_JAZZY)
    events: Counter[str] = Counter()
    seconds: list[float] = []
    skipped_topics = set()
    written = Counter()

    with Reader(args.in_bag) as reader:
        present = {c.topic: c.msgtype for c in reader.connections}
        missing = [t for t in stereo_topics if t not in present]
        if missing:
            candidates = sorted(t for t, m in present.items()
                                if m in ('sensor_msgs/msg/Image', 'sensor_msgs/msg/CameraInfo'))
            raise BagToolError(f'topics {missing} are not in {args.in_bag}; image and camera '
                               f'info topics there: {candidates}. Pass --topics LEFT RIGHT '
                               'LEFT_INFO RIGHT_INFO')
        for topic, (_, msg_type) in stereo_topics.items():
            if present[topic] != ROS_TYPE_NAMES.get(msg_type, ''):
                raise BagToolError(f'{topic} holds {present[topic]}, expected '
                                   f'{ROS_TYPE_NAMES[msg_type]}')
        args.out_bag.parent.mkdir(parents=True, exist_ok=True)
        with Writer(args.out_bag, version=8, storage_plugin=STORAGES[storage]) as writer:
            copies = {}
            for conn in reader.connections:
                copies[conn.id] = _copy_connection(writer, conn, typestore)
                if copies[conn.id] is None:
                    skipped_topics.add(conn.topic)
            outputs = {
                topic: writer.add_connection(f'{namespace}/{topic}', ROS_TYPE_NAMES[msg_type],
                                             typestore=typestore)
                for topic, msg_type in zip(OUTPUT_TOPICS, OUTPUT_TYPES) if topic in args.outputs}
            progress = tqdm(total=reader.message_count, unit='msg', disable=args.quiet,
                            desc='stereo', dynamic_ncols=True)
            for conn, timestamp, raw in reader.messages():
                progress.update()
                if copies[conn.id] is not None:
                    writer.write(copies[conn.id], timestamp, raw)
                if conn.topic not in stereo_topics:
                    continue
                index, msg_type = stereo_topics[conn.topic]
                msg = deserialize_message(bytes(raw), msg_type)
                stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
                matched = sync.add(index, stamp, msg)
                if matched is None:
                    continue
                start = time.perf_counter()
                produced = _process(matched, pipeline, decoder, args.outputs, events)
                seconds.append(time.perf_counter() - start)
                for topic, out in produced.items():
                    writer.write(outputs[topic], timestamp, serialize_message(out))
                    written[topic] += 1
                progress.set_postfix(pairs=written[args.outputs[0]], refresh=False)
            progress.close()

    counters = sync.counters
    summary = {
        'pairs_processed': len(seconds) - sum(events.values()),
        'pairs_skipped': dict(events),
        'stereo_messages': sum(counters.received),
        'messages_unmatched': counters.dropped,
        'seconds_per_pair': round(sum(seconds) / len(seconds), 4) if seconds else math.nan,
        'out_bag': str(args.out_bag),
        'storage': storage,
        'written': {f'{namespace}/{t}': n for t, n in written.items()},
    }
    if skipped_topics:
        summary['not_copied'] = sorted(skipped_topics)
    print('bag_tool: ' + ', '.join(f'{k}={v}' for k, v in summary.items()))
    return summary


def _process(matched: list, pipeline: StereoPipeline, decoder: PairDecoder,
             wanted: list[str], events: Counter) -> dict[str, Any]:
    left_msg, left_info, right_msg, right_info = matched
    try:
        left, right, camera = decoder.decode(left_msg, left_info, right_msg, right_info)
        result = pipeline.process(left, right, camera, want_depth='depth/image_rect' in wanted,
                                  want_points='points' in wanted)
    except PairError as exc:
        if not events[exc.event]:
            LOG.warning('%s', exc)
        events[exc.event] += 1
        return {}
    except torch.cuda.OutOfMemoryError as exc:
        if not events['out_of_memory']:
            LOG.warning('CUDA out of memory, pair skipped (%s): try --scale 0.5, --precision '
                        'fp16 or --hierarchical', exc)
        events['out_of_memory'] += 1
        torch.cuda.empty_cache()
        return {}
    return output_messages(result, camera, output_header(left_msg, left_info), left,
                           left_info, wanted)


def main(argv: list[str] | None = None) -> int:
    """Console entry point: 0 when pairs were processed, 1 when none, 2 on bad input."""
    logging.basicConfig(level=logging.INFO, format='bag_tool: %(levelname)s: %(message)s')
    args = build_parser().parse_args(argv)
    try:
        summary = run(args)
    except BagToolError as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    if summary['pairs_processed'] == 0:
        print('error: no stereo pair was processed: check --topics, and --sync approximate if '
              'the four topics are not stamped identically', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())

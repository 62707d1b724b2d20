r"""Offline: a rosbag2 of a stereo camera in; the same bag plus disparity, depth and points out.

    python -m foundation_stereo_ros.bag_tool IN_BAG OUT_BAG \
        [--topics LEFT LEFT_INFO RIGHT RIGHT_INFO] [--backend sgbm|foundation_stereo] \
        [--checkpoint model_best_bp2.pth] [--storage mcap|sqlite3]

Reads .mcap and .db3 bags (a bag folder or the file itself) with ``rosbags``, synchronises the
four stereo topics with the node's synchroniser, runs the node's stereo-set step on every set and
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

from rclpy.serialization import deserialize_message, serialize_message
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore
from tqdm import tqdm

from foundation_stereo_ros import settings
from foundation_stereo_ros.backends import make_backend
from foundation_stereo_ros.pipeline import PipelineConfig, StereoPipeline
from foundation_stereo_ros.settings import Settings
from foundation_stereo_ros.stereo_io import (
    INPUT_TOPICS,
    INPUT_TYPES,
    OUTPUT_TOPICS,
    OUTPUT_TYPES,
    PairError,
    StereoSetProcessor,
    stamp_ns,
)
from foundation_stereo_ros.sync import StereoSynchronizer

LOG = logging.getLogger('foundation_stereo_bag')

DEFAULT_TOPICS = tuple('/' + topic for topic in INPUT_TOPICS)
DEFAULT_OUTPUTS = ('disparity', 'depth/image_rect', 'depth/camera_info', 'points')
STORAGES = {'mcap': StoragePlugin.MCAP, 'sqlite3': StoragePlugin.SQLITE3}
# ROS type names of the inputs and outputs, for the bag's connection records.
ROS_TYPE_NAMES = {msg_type: f'{msg_type.__module__.split(".")[0]}/msg/{msg_type.__name__}'
                  for msg_type in (*INPUT_TYPES, *OUTPUT_TYPES)}
BAG_SETTINGS = (settings.BACKEND, settings.PIPELINE, settings.SYNC)


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
                   metavar=tuple(t.replace('/', '_').upper() for t in INPUT_TOPICS),
                   help='the stereo image and CameraInfo topics, in this order '
                        '(default: %(default)s)')
    p.add_argument('--output-namespace', help='namespace of the output topics (default: '
                   'that of the left camera, e.g. /stereo for /stereo/left/image_rect)')
    p.add_argument('--outputs', nargs='+', choices=OUTPUT_TOPICS, default=list(DEFAULT_OUTPUTS),
                   help='outputs to write (default: %(default)s)')
    p.add_argument('--storage', choices=sorted(STORAGES),
                   help='storage of the output bag (default: that of the input)')
    settings.add_arguments(p, BAG_SETTINGS)
    p.add_argument('--quiet', action='store_true', help='no progress bar')
    return p


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Validate the command line with the node's rules and defaults."""
    try:
        return settings.from_args(args, BAG_SETTINGS)
    except settings.SettingsError as exc:
        raise BagToolError(str(exc)) from exc


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
    chosen = settings_from_args(args)
    if not args.in_bag.exists():
        raise BagToolError(f'input bag not found: {args.in_bag}')
    if args.out_bag.exists():
        raise BagToolError(f'output bag {args.out_bag} exists: remove it or choose another name')
    storage = args.storage or input_storage(args.in_bag)
    # Synchroniser slot of each topic: the INPUT_TOPICS order, as everywhere.
    stereo_topics = {topic: (index, msg_type)
                     for index, (topic, msg_type) in enumerate(zip(args.topics, INPUT_TYPES))}
    namespace = (args.output_namespace if args.output_namespace is not None
                 else output_namespace(args.topics[0])).rstrip('/')

    backend = make_backend(chosen.backend, **chosen.backend_options())
    processor = StereoSetProcessor(
        StereoPipeline(backend, PipelineConfig(**chosen.pipeline_options())), LOG)
    sync = StereoSynchronizer(len(INPUT_TOPICS), policy=chosen.sync_policy,
                              queue_size=chosen.queue_size, slop=chosen.slop,
                              on_reset=lambda i, a, b: LOG.warning(
                                  'stamps went backwards on %s (%.3f s -> %.3f s): '
                                  'synchronising afresh', args.topics[i], a / 1e9, b / 1e9))
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
                                if m in {ROS_TYPE_NAMES[t] for t in INPUT_TYPES})
            raise BagToolError(f'topics {missing} are not in {args.in_bag}; image and camera '
                               f'info topics there: {candidates}. Pass --topics '
                               + ' '.join(t.replace('/', '_').upper() for t in INPUT_TOPICS))
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
                matched = sync.add(index, stamp_ns(msg), msg)
                if matched is None:
                    continue
                start = time.perf_counter()
                produced = _process(matched, processor, args.outputs, events)
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


def _process(matched: list, processor: StereoSetProcessor, wanted: list[str],
             events: Counter) -> dict[str, Any]:
    try:
        return processor.process(matched, wanted).messages
    except PairError as exc:
        if not events[exc.event]:
            LOG.warning('%s', exc)
        events[exc.event] += 1
        return {}


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

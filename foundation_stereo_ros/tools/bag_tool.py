r"""Offline: a rosbag2 of a stereo camera in; the same bag plus disparity, depth and points out.

    python -m foundation_stereo_ros.bag_tool IN_BAG OUT_BAG \
        [--topics LEFT LEFT_INFO RIGHT RIGHT_INFO] [--backend sgbm|foundation_stereo] \
        [--checkpoint model_best_bp2.pth] [--storage mcap|sqlite3]

Reads .mcap and .db3 bags (a bag folder or the file itself) with ``rosbags``, synchronises the
four stereo topics with the node's synchroniser (image topics of sensor_msgs/Image or
CompressedImage, told by their type; raw images with --rectify), runs the node's stereo-set
step on every set and writes every input message (copied byte for byte) plus the outputs to
OUT_BAG. Ctrl-C (SIGINT, SIGTERM) or a damaged input stops the run but keeps the work done:
the output bag is closed properly (readable, with its metadata.yaml) and the summary says why
it stopped. A message that does not decode is skipped and counted. Outputs are stamped like
their input and written at the log time of the message that completed the set, on
``<ns>/disparity``, ``<ns>/depth/image_rect``, ``<ns>/depth/camera_info`` and
``<ns>/points``, where ``<ns>`` is the namespace of the left camera (``/stereo`` for
``/stereo/left/image_rect``) unless --output-namespace says otherwise.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import math
import signal
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from foundation_stereo_ros.interrupts import INTERRUPTED, exit_on_interrupt, quiet_main

with exit_on_interrupt(INTERRUPTED):  # Ctrl-C during the seconds of importing torch
    from rosbags.rosbag2 import Reader, ReaderError, StoragePlugin, Writer, WriterError
    from rosbags.typesys import Stores, get_typestore
    from tqdm import tqdm

    from foundation_stereo_ros import settings
    from foundation_stereo_ros.backends import make_backend
    from foundation_stereo_ros.pipeline import PipelineConfig, StereoPipeline
    from foundation_stereo_ros.ros.bag_messages import ROS_TYPE_NAMES, SLOT_TYPES, decode, encode
    from foundation_stereo_ros.ros.monitor import repeated_stamps_text
    from foundation_stereo_ros.ros.stereo_io import (
        COMPRESSED_SUFFIX,
        INPUT_TOPICS,
        LEFT_IMAGE,
        LEFT_INFO,
        OUTPUT_TOPICS,
        OUTPUT_TYPES,
        RIGHT_IMAGE,
        RIGHT_INFO,
        PairError,
        StereoSetProcessor,
        input_topics,
        stamp_ns,
    )
    from foundation_stereo_ros.settings import Settings
    from foundation_stereo_ros.sync import make_synchronizer

LOG = logging.getLogger('foundation_stereo_bag')

DEFAULT_OUTPUTS = ('disparity', 'depth/image_rect', 'depth/camera_info', 'points')
STORAGES = {'mcap': StoragePlugin.MCAP, 'sqlite3': StoragePlugin.SQLITE3}
BAG_SETTINGS = (settings.BACKEND, settings.PIPELINE, settings.SYNC, settings.INPUT)
BAG_FILES = ('.mcap', '.db3')


class BagToolError(RuntimeError):
    """A problem with the user's bags or options, reported without a traceback."""


def build_parser() -> argparse.ArgumentParser:
    """Command-line interface."""
    p = argparse.ArgumentParser(
        prog='python -m foundation_stereo_ros.bag_tool',
        description='Add disparity, depth and point clouds to a rosbag2 of a stereo camera.')
    p.add_argument('in_bag', type=Path, help='input bag: folder, .mcap or .db3 file')
    p.add_argument('out_bag', type=Path, help='output bag folder (must not exist)')
    p.add_argument('--topics', nargs=4,
                   metavar=tuple(t.replace('/', '_').upper() for t in INPUT_TOPICS),
                   help='the stereo image and CameraInfo topics, in this order; images of '
                        'type Image or CompressedImage (default: '
                        + ' '.join(default_topics()) + ', with --rectify '
                        + ' '.join(default_topics(rectify=True)) + ')')
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


def default_topics(rectify: bool = False) -> list[str]:
    """Return the node's input topics at the root namespace: /left/image_rect..."""
    return ['/' + topic for topic in input_topics(rectify)]


def bag_path(path: Path) -> Path:
    """Return the path to open: ``path``, or its only bag file when it lacks metadata.yaml."""
    if not path.exists():
        raise BagToolError(f'input bag not found: {path}')
    if path.is_file() or (path / 'metadata.yaml').is_file():
        return path
    files = sorted(f for f in path.iterdir() if f.suffix in BAG_FILES)
    if len(files) == 1:
        LOG.warning('%s has no metadata.yaml (a recording that was cut off?): reading %s '
                    'directly', path, files[0].name)
        return files[0]
    raise BagToolError(
        f'{path} has no metadata.yaml and ' + (
            f'{len(files)} bag files ({", ".join(f.name for f in files)}): pass one of them'
            if files else 'no .mcap or .db3 file: pass a rosbag2 folder or file'))


def _open_reader(path: Path) -> Reader:
    try:
        reader = Reader(path)
        reader.open()
    except (ReaderError, OSError, ValueError, KeyError) as exc:
        hint = ('; a recording cut off before its end (Ctrl-C, a crash) has no footer: repair '
                'it with `mcap recover IN.mcap -o FIXED.mcap` (mcap CLI) or `ros2 bag reindex`'
                if path.suffix == '.mcap' or any(path.glob('*.mcap')) else '')
        raise BagToolError(f'cannot read the input bag {path}: {exc}{hint}') from exc
    return reader


class _DamagedInput(Exception):
    """Reading the input bag failed part way (a corrupt chunk, a cut-off file)."""


def _messages(reader: Reader) -> Any:
    """Yield the reader's messages; a failure to read one becomes :class:`_DamagedInput`."""
    iterator = reader.messages()
    while True:
        try:
            item = next(iterator)
        except StopIteration:
            return
        except Exception as exc:  # rosbags raises ReaderError, but also struct/zstd errors
            raise _DamagedInput(f'{type(exc).__name__}: {exc}') from exc
        yield item


@contextlib.contextmanager
def _uninterruptible() -> Any:
    """Ignore SIGINT and SIGTERM inside the block (main thread only, where signals land)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, signal.SIG_IGN)
                for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM stops the run like Ctrl-C: the output bag is closed


def input_storage(path: Path) -> str:
    """'mcap' or 'sqlite3', from the file or the files in the bag folder."""
    files = [path] if path.is_file() else sorted(path.iterdir())
    suffixes = {f.suffix for f in files}
    return 'sqlite3' if '.db3' in suffixes and '.mcap' not in suffixes else 'mcap'


def output_namespace(left_topic: str) -> str:
    """'/stereo' for '/stereo/left/image_rect' (and its /compressed); '' for '/left/...'."""
    parts = left_topic.removesuffix(COMPRESSED_SUFFIX).strip('/').split('/')
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
    """Process the bag; returns the summary (also printed).

    Stops early, keeping what was done, on Ctrl-C or a damaged input: the summary's
    ``interrupted`` then says why.
    """
    chosen = settings_from_args(args)
    in_bag = bag_path(args.in_bag)
    if args.out_bag.exists():
        raise BagToolError(f'output bag {args.out_bag} exists: remove it or choose another name')
    storage = args.storage or input_storage(in_bag)
    topics = args.topics or default_topics(chosen.rectify)
    namespace = (args.output_namespace if args.output_namespace is not None
                 else output_namespace(topics[0])).rstrip('/')

    try:
        backend = make_backend(chosen.backend, **chosen.backend_options())
    except Exception as exc:  # the checkpoint or device: any failure is the user's to fix
        what = ('--checkpoint (a FoundationStereo .pth with its cfg.yaml beside it), --device '
                'and --precision, or use --backend sgbm' if chosen.backend == 'foundation_stereo'
                else 'the backend options')
        raise BagToolError(f'cannot start the {chosen.backend} backend: {type(exc).__name__}: '
                           f'{exc}. Check {what}') from exc
    processor = StereoSetProcessor(
        StereoPipeline(backend, PipelineConfig(**chosen.pipeline_options())), LOG,
        rectify=chosen.rectify)
    sync = make_synchronizer(
        len(INPUT_TOPICS), policy=chosen.sync_policy, queue_size=chosen.queue_size,
        slop=chosen.slop, cached=(LEFT_INFO, RIGHT_INFO) if chosen.cache_camera_info else (),
        on_reset=lambda i, a, b, lost: LOG.warning(
            'stamps went backwards on %s (%.3f s -> %.3f s): discarded %d messages waiting '
            'for a set; synchronising afresh', topics[i], a / 1e9, b / 1e9, sum(lost)))
    if chosen.cache_camera_info:
        LOG.warning('--cache-camera-info: every pair uses the latest CameraInfo of each camera, '
                    'whatever its stamp')
    typestore = get_typestore(Stores.ROS2_JAZZY)
    events: Counter[str] = Counter()
    seconds: list[float] = []
    skipped_topics = set()
    written = Counter()
    undecodable: Counter[str] = Counter()
    interrupted = ''
    read = 0
    stamps = _StampRepeats(len(INPUT_TOPICS))

    with contextlib.closing(_open_reader(in_bag)) as reader:
        present = {c.topic: c.msgtype for c in reader.connections}
        missing = [t for t in topics if t not in present]
        if missing:
            candidates = sorted(t for t, m in present.items()
                                if any(m in slot for slot in SLOT_TYPES))
            raise BagToolError(f'topics {missing} are not in {args.in_bag}; image and camera '
                               f'info topics there: {candidates}. Pass --topics '
                               + ' '.join(t.replace('/', '_').upper() for t in INPUT_TOPICS))
        # Synchroniser slot and message type of each topic: the INPUT_TOPICS order.
        stereo_topics = {}
        for index, topic in enumerate(topics):
            if present[topic] not in SLOT_TYPES[index]:
                raise BagToolError(f'{topic} holds {present[topic]}, expected '
                                   + ' or '.join(SLOT_TYPES[index]))
            stereo_topics[topic] = (index, SLOT_TYPES[index][present[topic]])
        try:
            args.out_bag.parent.mkdir(parents=True, exist_ok=True)
            writer = Writer(args.out_bag, version=8, storage_plugin=STORAGES[storage])
            writer.open()
        except (OSError, WriterError) as exc:
            raise BagToolError(f'cannot write the output bag {args.out_bag}: {exc}; choose a '
                               'writable place that does not exist yet') from exc
        # Everything below ends in writer.close(): the bag keeps the work done, readable.
        try:
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
            for conn, timestamp, raw in _messages(reader):
                read += 1
                progress.update()
                if copies[conn.id] is not None:
                    writer.write(copies[conn.id], timestamp, raw)
                if conn.topic not in stereo_topics:
                    continue
                index, msg_type = stereo_topics[conn.topic]
                try:
                    msg = decode(raw, msg_type)
                except Exception as exc:  # noqa: BLE001 - rclpy raises RMWError, a RuntimeError
                    if not undecodable:
                        LOG.warning('skipped a message on %s that does not decode as %s: %s',
                                    conn.topic, ROS_TYPE_NAMES[msg_type], exc)
                    undecodable[conn.topic] += 1
                    continue
                stamps.add(index, stamp_ns(msg))
                matched = sync.add(index, stamp_ns(msg), msg)
                if matched is None:
                    continue
                start = time.perf_counter()
                produced = _process(matched, processor, args.outputs, events)
                seconds.append(time.perf_counter() - start)
                for topic, out in produced.items():
                    writer.write(outputs[topic], timestamp, encode(out))
                    written[topic] += 1
                progress.set_postfix(pairs=written[args.outputs[0]], refresh=False)
            progress.close()
        except KeyboardInterrupt:
            interrupted = f'interrupted (Ctrl-C) after {read} of {reader.message_count} messages'
        except _DamagedInput as exc:
            interrupted = (f'stopped after {read} of {reader.message_count} messages: the input '
                           f'bag is damaged there ({exc})')
        finally:
            with _uninterruptible():  # a second Ctrl-C must not cut the closing short
                writer.close()

    counters = sync.counters
    summary = {
        'pairs_processed': len(seconds) - sum(events.values()),
        'pairs_skipped': dict(events),
        'stereo_messages': sum(counters.received),
        # Dropped by the synchroniser, plus those still waiting for a set at the end.
        'messages_unmatched': counters.dropped + sum(sync.pending()),
        'seconds_per_pair': round(sum(seconds) / len(seconds), 4) if seconds else math.nan,
        'out_bag': str(args.out_bag),
        'storage': storage,
        'written': {f'{namespace}/{t}': n for t, n in written.items()},
    }
    if undecodable:
        summary['messages_undecodable'] = dict(undecodable)
    if skipped_topics:
        summary['not_copied'] = sorted(skipped_topics)
    if interrupted:
        summary['interrupted'] = interrupted
    _warn_rare_camera_info(counters.received, chosen.cache_camera_info, topics)
    stamps.warn(topics)
    print('bag_tool: ' + ', '.join(f'{k}={v}' for k, v in summary.items()))
    if interrupted:
        print(f'bag_tool: {interrupted}; {args.out_bag} holds the work done until then',
              file=sys.stderr)
    return summary


class _StampRepeats:
    """Counts, per input, the messages that carry the stamp of the one before (as the node)."""

    def __init__(self, inputs: int) -> None:
        self.last: list[int | None] = [None] * inputs
        self.repeated = [0] * inputs
        self.count = [0] * inputs

    def add(self, index: int, stamp: int) -> None:
        self.count[index] += 1
        self.repeated[index] += stamp == self.last[index]
        self.last[index] = stamp

    def warn(self, topics: list[str]) -> None:
        for index, repeated in enumerate(self.repeated):
            if repeated and index in (LEFT_IMAGE, RIGHT_IMAGE):
                LOG.warning('%s', repeated_stamps_text(topics[index], repeated,
                                                       self.count[index]))


def _warn_rare_camera_info(received: list[int], cached: bool, topics: list[str]) -> None:
    """Say when a camera's images far outnumber its CameraInfo, or it has none at all."""
    for image, info in ((LEFT_IMAGE, LEFT_INFO), (RIGHT_IMAGE, RIGHT_INFO)):
        if received[image] and not received[info]:
            LOG.warning('%s holds no messages (no CameraInfo was recorded) for %d images on '
                        '%s: without a calibration no pair can be processed, and '
                        '--cache-camera-info cannot help; record the camera_info topics with '
                        'the images', topics[info], received[image], topics[image])
        elif received[image] > 2 * received[info] and not cached:
            LOG.warning('%s holds %d messages for %d images on %s: images without a CameraInfo '
                        'of their stamp were not processed; pass --cache-camera-info to reuse '
                        'the latest CameraInfo for every pair', topics[info], received[info],
                        received[image], topics[image])


def _process(matched: list, processor: StereoSetProcessor, wanted: list[str],
             events: Counter) -> dict[str, Any]:
    try:
        return processor.process(matched, wanted).messages
    except PairError as exc:
        event, message = exc.event, str(exc)
    except Exception as exc:  # noqa: BLE001 - like the node: one failing pair is skipped
        event, message = 'backend_error', f'pair skipped: {type(exc).__name__}: {exc}'
    if not events[event]:
        LOG.warning('%s', message)
    events[event] += 1
    return {}


@quiet_main(INTERRUPTED)
def main(argv: list[str] | None = None) -> int:
    """Console entry point; returns the exit code.

    0 when pairs were processed, 1 when none (or the input was damaged part way), 2 on bad
    input, 130 when interrupted (the output bag keeps the work done).
    """
    logging.basicConfig(level=logging.INFO, format='bag_tool: %(levelname)s: %(message)s')
    args = build_parser().parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        summary = run(args)
    except BagToolError as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # before the output bag was opened: nothing to keep
        print('bag_tool: interrupted', file=sys.stderr)
        return INTERRUPTED
    finally:
        signal.signal(signal.SIGTERM, previous)
    if summary.get('interrupted', '').startswith('interrupted'):
        return INTERRUPTED
    if summary['pairs_processed'] == 0:
        print('error: no stereo pair was processed: check --topics, and --sync approximate if '
              'the four topics are not stamped identically (--cache-camera-info if CameraInfo '
              'is recorded once or stamped 0)', file=sys.stderr)
        return 1
    return 1 if summary.get('interrupted') else 0


if __name__ == '__main__':
    sys.exit(main())

"""One rosbag2 of a stereo camera in, the same bag plus disparity, depth and points out.

The per-bag step shared by the bag tool (one bag) and the fleet tool (many bags on Ray): the
input bag opened and checked, its stereo topics found, every message copied and every stereo
set run through the node's stereo-set step (:class:`~foundation_stereo_ros.ros.stereo_io.
StereoSetProcessor`), the output bag written and the summary counted. :class:`BagStep` holds
the loaded backend, so one process runs bag after bag with the model loaded once.

A :class:`BagError` is the user's mistake (a missing bag, unknown topics, an unwritable
output), reported without a traceback.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import math
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rosbags.rosbag2 import Reader, ReaderError, StoragePlugin, Writer, WriterError
from rosbags.typesys import Stores, get_typestore

from foundation_stereo_ros import settings
from foundation_stereo_ros.backends.startup import BackendStartError, build_backend
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
TOPICS_METAVAR = tuple(t.replace('/', '_').upper() for t in INPUT_TOPICS)
NO_PAIR = (f'no stereo pair was processed: check --topics, and '
           f'{settings.BY_NAME["sync_policy"].option} approximate if the four topics are not '
           f'stamped identically ({settings.BY_NAME["cache_camera_info"].option} if CameraInfo '
           'is recorded once or stamped 0)')


class BagError(RuntimeError):
    """A problem with the user's bags or options, reported without a traceback."""


# -- options ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BagOptions:
    """What to read from a bag and what to write, beside the pipeline settings."""

    topics: tuple[str, ...] | None = None      # the four stereo topics; None: the defaults
    output_namespace: str | None = None        # None: the left camera's namespace
    outputs: tuple[str, ...] = DEFAULT_OUTPUTS
    storage: str | None = None                 # None: that of the input bag

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> BagOptions:
        """Read the options :func:`add_arguments` added."""
        return cls(tuple(args.topics) if args.topics else None, args.output_namespace,
                   tuple(args.outputs), args.storage)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the per-bag options and the node's settings a bag run takes (bag tool and fleet)."""
    parser.add_argument(
        '--topics', nargs=4, metavar=TOPICS_METAVAR,
        help='the stereo image and CameraInfo topics, in this order; images of type Image or '
             'CompressedImage (default: ' + ' '.join(default_topics()) + ', with --rectify '
             + ' '.join(default_topics(rectify=True)) + ')')
    parser.add_argument('--output-namespace', help='namespace of the output topics (default: '
                        'that of the left camera, e.g. /stereo for /stereo/left/image_rect)')
    parser.add_argument('--outputs', nargs='+', choices=OUTPUT_TOPICS,
                        default=list(DEFAULT_OUTPUTS),
                        help='outputs to write (default: %(default)s)')
    parser.add_argument('--storage', choices=sorted(STORAGES),
                        help='storage of the output bag (default: that of the input)')
    settings.add_arguments(parser, BAG_SETTINGS)


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Validate the command line with the node's rules and defaults."""
    try:
        return settings.from_args(args, BAG_SETTINGS)
    except settings.SettingsError as exc:
        raise BagError(str(exc)) from exc


def default_topics(rectify: bool = False) -> list[str]:
    """Return the node's input topics at the root namespace: /left/image_rect..."""
    return ['/' + topic for topic in input_topics(rectify)]


def output_namespace(left_topic: str) -> str:
    """'/stereo' for '/stereo/left/image_rect' (and its /compressed); '' for '/left/...'."""
    parts = left_topic.removesuffix(COMPRESSED_SUFFIX).strip('/').split('/')
    return '/' + '/'.join(parts[:-2]) if len(parts) > 2 else ''


# -- the input bag ------------------------------------------------------------------------------

def bag_path(path: Path) -> Path:
    """Return the path to open: ``path``, or its only bag file when it lacks metadata.yaml."""
    if not path.exists():
        raise BagError(f'input bag not found: {path}')
    if path.is_file() or (path / 'metadata.yaml').is_file():
        return path
    files = sorted(f for f in path.iterdir() if f.suffix in BAG_FILES)
    if len(files) == 1:
        LOG.warning('%s has no metadata.yaml (a recording that was cut off?): reading %s '
                    'directly', path, files[0].name)
        return files[0]
    raise BagError(
        f'{path} has no metadata.yaml and ' + (
            f'{len(files)} bag files ({", ".join(f.name for f in files)}): pass one of them'
            if files else 'no .mcap or .db3 file: pass a rosbag2 folder or file'))


def input_storage(path: Path) -> str:
    """'mcap' or 'sqlite3', from the file or the files in the bag folder."""
    files = [path] if path.is_file() else sorted(path.iterdir())
    suffixes = {f.suffix for f in files}
    return 'sqlite3' if '.db3' in suffixes and '.mcap' not in suffixes else 'mcap'


def open_reader(path: Path) -> Reader:
    """Open the input bag; a bag that cannot be read is a :class:`BagError` saying why."""
    try:
        reader = Reader(path)
        reader.open()
    except (ReaderError, OSError, ValueError, KeyError) as exc:
        hint = ('; a recording cut off before its end (Ctrl-C, a crash) has no footer: repair '
                'it with `mcap recover IN.mcap -o FIXED.mcap` (mcap CLI) or `ros2 bag reindex`'
                if path.suffix == '.mcap' or any(path.glob('*.mcap')) else '')
        raise BagError(f'cannot read the input bag {path}: {exc}{hint}') from exc
    return reader


def stereo_topics(reader: Reader, topics: Sequence[str], name: Path
                  ) -> dict[str, tuple[int, type]]:
    """Return the synchroniser slot and message type of each of the four ``topics``.

    Missing topics or topics of the wrong type are a :class:`BagError` that lists the image
    and camera info topics the bag holds.
    """
    present = {c.topic: c.msgtype for c in reader.connections}
    missing = [t for t in topics if t not in present]
    if missing:
        candidates = sorted(t for t, m in present.items()
                            if any(m in slot for slot in SLOT_TYPES))
        raise BagError(f'topics {missing} are not in {name}; image and camera info topics '
                       f'there: {candidates}. Pass --topics ' + ' '.join(TOPICS_METAVAR))
    found = {}
    for index, topic in enumerate(topics):
        if present[topic] not in SLOT_TYPES[index]:
            raise BagError(f'{topic} holds {present[topic]}, expected '
                           + ' or '.join(SLOT_TYPES[index]))
        found[topic] = (index, SLOT_TYPES[index][present[topic]])
    return found


class _DamagedInput(Exception):
    """Reading the input bag failed part way (a corrupt chunk, a cut-off file)."""


def _messages(reader: Reader) -> Iterator[Any]:
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


# -- the output bag -----------------------------------------------------------------------------

def open_writer(out_bag: Path, storage: str) -> Writer:
    """Open the output bag (its parent folders created); failures are a :class:`BagError`."""
    try:
        out_bag.parent.mkdir(parents=True, exist_ok=True)
        writer = Writer(out_bag, version=8, storage_plugin=STORAGES[storage])
        writer.open()
    except (OSError, WriterError) as exc:
        raise BagError(f'cannot write the output bag {out_bag}: {exc}; choose a writable '
                       'place that does not exist yet') from exc
    return writer


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


@contextlib.contextmanager
def uninterruptible() -> Iterator[None]:
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


# -- the step -----------------------------------------------------------------------------------

class BagProgress:
    """What a bag run reports while it reads; this base reports nothing."""

    def start(self, messages: int, frames: int) -> None:
        """Be told the bag's message count and its left images (the frames known)."""

    def message(self, frame: bool) -> None:
        """Be told one message was read; ``frame``: it was a left image."""

    def pairs(self, written: int) -> None:
        """Be told ``written`` sets have been written so far."""

    def close(self) -> None:
        """Be told the bag is done (also after an interruption)."""


def build_processor(chosen: Settings) -> StereoSetProcessor:
    """Load the backend the settings name (once: the model) into the node's stereo-set step."""
    try:
        backend = build_backend(chosen, settings.COMMAND_LINE)
    except BackendStartError as exc:
        raise BagError(str(exc)) from exc
    return StereoSetProcessor(
        StereoPipeline(backend, PipelineConfig(**chosen.pipeline_options())), LOG,
        rectify=chosen.rectify)


class BagStep:
    """The model loaded once; :meth:`run` turns one input bag into one output bag."""

    def __init__(self, chosen: Settings, options: BagOptions) -> None:
        """Load the backend of ``chosen``; a backend that cannot start is a BagError."""
        self.settings = chosen
        self.options = options
        self.processor = build_processor(chosen)
        self.topics = list(options.topics or default_topics(chosen.rectify))
        self.namespace = (options.output_namespace if options.output_namespace is not None
                          else output_namespace(self.topics[0])).rstrip('/')
        self.typestore = get_typestore(Stores.ROS2_JAZZY)

    def run(self, in_bag: Path, out_bag: Path, progress: BagProgress | None = None
            ) -> dict[str, Any]:
        """Process ``in_bag`` into ``out_bag`` (which must not exist); returns the summary.

        Stops early, keeping what was done in a properly closed output bag, on Ctrl-C or a
        damaged input: the summary's ``interrupted`` then says why.
        """
        progress = progress or BagProgress()
        path = bag_path(in_bag)
        if out_bag.exists():
            raise BagError(f'output bag {out_bag} exists: remove it or choose another name')
        storage = self.options.storage or input_storage(path)
        with contextlib.closing(open_reader(path)) as reader:
            found = stereo_topics(reader, self.topics, in_bag)
            writer = open_writer(out_bag, storage)
            # Everything below ends in writer.close(): the bag keeps the work done, readable.
            run = _BagRun(self, found)
            try:
                run.copy_and_process(reader, writer, progress)
            finally:
                with uninterruptible():  # a second Ctrl-C must not cut the closing short
                    writer.close()
                progress.close()
        summary = run.summary(out_bag, storage)
        _warn_rare_camera_info(run.sync.counters.received, self.settings.cache_camera_info,
                               self.topics)
        run.stamps.warn(self.topics)
        return summary


class _BagRun:
    """The state of one bag's run: its synchroniser and counters."""

    def __init__(self, step: BagStep, found: dict[str, tuple[int, type]]) -> None:
        chosen, topics = step.settings, step.topics
        self.step = step
        self.found = found
        self.sync = make_synchronizer(
            len(INPUT_TOPICS), policy=chosen.sync_policy, queue_size=chosen.queue_size,
            slop=chosen.slop, cached=(LEFT_INFO, RIGHT_INFO) if chosen.cache_camera_info else (),
            on_reset=lambda i, a, b, lost: LOG.warning(
                'stamps went backwards on %s (%.3f s -> %.3f s): discarded %d messages waiting '
                'for a set; synchronising afresh', topics[i], a / 1e9, b / 1e9, sum(lost)))
        if chosen.cache_camera_info:
            LOG.warning('--cache-camera-info: every pair uses the latest CameraInfo of each '
                        'camera, whatever its stamp')
        self.events: Counter[str] = Counter()
        self.seconds: list[float] = []
        self.skipped_topics: set[str] = set()
        self.written: Counter[str] = Counter()
        self.undecodable: Counter[str] = Counter()
        self.interrupted = ''
        self.read = 0
        self.stamps = _StampRepeats(len(INPUT_TOPICS))

    def copy_and_process(self, reader: Reader, writer: Writer, progress: BagProgress) -> None:
        """Copy every message and write the outputs of every set; stop on Ctrl-C or damage."""
        typestore, wanted = self.step.typestore, list(self.step.options.outputs)
        left = self.step.topics[LEFT_IMAGE]
        try:
            copies = {}
            for conn in reader.connections:
                copies[conn.id] = _copy_connection(writer, conn, typestore)
                if copies[conn.id] is None:
                    self.skipped_topics.add(conn.topic)
            outputs = {
                topic: writer.add_connection(f'{self.step.namespace}/{topic}',
                                             ROS_TYPE_NAMES[msg_type], typestore=typestore)
                for topic, msg_type in zip(OUTPUT_TOPICS, OUTPUT_TYPES) if topic in wanted}
            progress.start(reader.message_count,
                           sum(c.msgcount for c in reader.connections if c.topic == left))
            for conn, timestamp, raw in _messages(reader):
                self.read += 1
                progress.message(conn.topic == left)
                if copies[conn.id] is not None:
                    writer.write(copies[conn.id], timestamp, raw)
                matched = self._add(conn.topic, raw)
                if matched is None:
                    continue
                start = time.perf_counter()
                produced = _process(matched, self.step.processor, wanted, self.events)
                self.seconds.append(time.perf_counter() - start)
                for topic, out in produced.items():
                    writer.write(outputs[topic], timestamp, encode(out))
                    self.written[topic] += 1
                progress.pairs(self.written[wanted[0]])
        except KeyboardInterrupt:
            self.interrupted = (f'interrupted (Ctrl-C) after {self.read} of '
                                f'{reader.message_count} messages')
        except _DamagedInput as exc:
            self.interrupted = (f'stopped after {self.read} of {reader.message_count} messages: '
                                f'the input bag is damaged there ({exc})')

    def _add(self, topic: str, raw: Any) -> list | None:
        """Decode a stereo topic's message into the synchroniser; returns a completed set."""
        if topic not in self.found:
            return None
        index, msg_type = self.found[topic]
        try:
            msg = decode(raw, msg_type)
        except Exception as exc:  # noqa: BLE001 - rclpy raises RMWError, a RuntimeError
            if not self.undecodable:
                LOG.warning('skipped a message on %s that does not decode as %s: %s',
                            topic, ROS_TYPE_NAMES[msg_type], exc)
            self.undecodable[topic] += 1
            return None
        self.stamps.add(index, stamp_ns(msg))
        return self.sync.add(index, stamp_ns(msg), msg)

    def summary(self, out_bag: Path, storage: str) -> dict[str, Any]:
        """Return the counters of the run, as the bag tool prints them."""
        counters = self.sync.counters
        summary = {
            'pairs_processed': len(self.seconds) - sum(self.events.values()),
            'pairs_skipped': dict(self.events),
            'stereo_messages': sum(counters.received),
            # Dropped by the synchroniser, plus those still waiting for a set at the end.
            'messages_unmatched': counters.dropped + sum(self.sync.pending()),
            'seconds_per_pair': (round(sum(self.seconds) / len(self.seconds), 4)
                                 if self.seconds else math.nan),
            'out_bag': str(out_bag),
            'storage': storage,
            'written': {f'{self.step.namespace}/{t}': n for t, n in self.written.items()},
        }
        if self.undecodable:
            summary['messages_undecodable'] = dict(self.undecodable)
        if self.skipped_topics:
            summary['not_copied'] = sorted(self.skipped_topics)
        if self.interrupted:
            summary['interrupted'] = self.interrupted
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

    def warn(self, topics: Sequence[str]) -> None:
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

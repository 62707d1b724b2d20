"""A synchronised stereo set as ROS messages, to and from the pipeline.

Shared by the node and the rosbag tool. :class:`StereoSetProcessor` is the one step both run:
four messages in (in :data:`INPUT_TOPICS` order), output messages out. Underneath,
:class:`PairDecoder` checks the four input messages (left/right Image and CameraInfo) and turns
them into the pipeline's inputs, and :func:`output_messages` turns a
:class:`~foundation_stereo_ros.pipeline.StereoResult` into the output messages, each carrying
the input stamp and the left camera's frame. Every problem with one set (bad input, the device
out of memory) is a :class:`PairError`: the caller counts it, warns and goes on.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from stereo_msgs.msg import DisparityImage

from foundation_stereo_ros.binning_roi import ImageGeometry
from foundation_stereo_ros.camera import StereoCamera
from foundation_stereo_ros.camera_info import CameraInfoError, camera_info_key
from foundation_stereo_ros.pipeline import PipelineOutOfMemory, StereoPipeline, StereoResult
from foundation_stereo_ros.rectification import StereoRectifier, rectified_camera_info
from foundation_stereo_ros.ros import conversions

# The node and the bag tool import the input names with the set step (one place: topic_names).
from foundation_stereo_ros.ros.topic_names import (  # noqa: F401
    IMAGE_SLOTS,
    INPUT_TOPICS,
    LEFT_IMAGE,
    LEFT_INFO,
    RAW_INPUT_TOPICS,
    RIGHT_IMAGE,
    RIGHT_INFO,
    input_topics,
)
from foundation_stereo_ros.settings import IMAGE_TRANSPORTS
from foundation_stereo_ros.visualize import colorize_disparity

INPUT_TYPES = (Image, CameraInfo, Image, CameraInfo)  # of INPUT_TOPICS, in their order
# Message type of each image transport; a compressed image topic is '<image topic>/compressed'
# (image_transport's naming, after remapping the image topic).
IMAGE_TYPES = dict(zip(IMAGE_TRANSPORTS, (Image, CompressedImage)))
COMPRESSED_SUFFIX = '/compressed'
# confidence: 32FC1 in [0, 1] at camera resolution with the depth image's header, published
# when the backend or the left-right check gives one (StereoResult.confidence).
OUTPUT_TOPICS = ('disparity', 'depth/image_rect', 'depth/camera_info', 'points',
                 'disparity/image_color', 'confidence')
OUTPUT_TYPES = (DisparityImage, Image, CameraInfo, PointCloud2, Image, Image)


def input_types(image_transport: str = 'raw') -> tuple[type, ...]:
    """Message types of the four inputs for an image transport (raw or compressed)."""
    image = IMAGE_TYPES[image_transport]
    return (image, CameraInfo, image, CameraInfo)


def stamp_ns(msg: Any) -> int:
    """Header stamp of a message in integer nanoseconds."""
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


class PairError(ValueError):
    """A synchronised set that cannot be processed.

    ``event``: the counter it goes to (see ``diagnostics.EVENT_NAMES``); ``kind``: one kind of
    problem, so each kind gets its own throttled warning.
    """

    def __init__(self, event: str, kind: str, message: str) -> None:
        super().__init__(message)
        self.event = event
        self.kind = kind


class PairDecoder:
    """Checks a synchronised set of four messages and turns it into pipeline inputs.

    Shared by the node and the rosbag tool. Images may be ``sensor_msgs/Image`` or
    ``CompressedImage`` (image_transport compressed). With a ``rectifier`` the images are raw
    and are rectified with their CameraInfo first; the camera then comes from the rectified
    CameraInfo (:meth:`output_info`). The stereo camera is rebuilt (and validated) only when a
    field that changes the geometry changes (:func:`~.camera_info.camera_info_key`: the
    calibration, binning, ROI or frame).
    """

    def __init__(self, logger: Any = None, rectifier: StereoRectifier | None = None) -> None:
        """``logger`` receives input warnings (python logging or rclpy logger)."""
        self._logger = logger
        self.rectifier = rectifier
        self._cache: tuple[tuple, StereoCamera] | None = None
        self._warned_float_range = False

    def camera(self, left_info: CameraInfo, right_info: CameraInfo) -> StereoCamera:
        """Return the stereo camera of a CameraInfo pair; PairError when it is unusable."""
        key = (camera_info_key(left_info), camera_info_key(right_info))
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        try:
            camera = StereoCamera.from_camera_info(left_info, right_info)
        except CameraInfoError as exc:
            raise PairError('camera_info_error', 'camera_info',
                            f'CameraInfo unusable, pair skipped: {exc}') from exc
        self._cache = (key, camera)
        return camera

    def output_info(self, left_info: CameraInfo) -> CameraInfo:
        """Return the CameraInfo of the outputs: the left one, rectified when rectifying."""
        return left_info if self.rectifier is None else rectified_camera_info(left_info)

    def decode(self, left_msg: Image | CompressedImage, left_info: CameraInfo,
               right_msg: Image | CompressedImage,
               right_info: CameraInfo) -> tuple[Any, Any, StereoCamera]:
        """(left RGB, right RGB, camera) for the pipeline; PairError saying what is wrong.

        The images are (H, W, 3) uint8 numpy arrays, or uint8 tensors on the device when the
        rectifier resamples there.
        """
        if self.rectifier is None:
            camera = self.camera(left_info, right_info)
            expected = (camera.width, camera.height)
        else:
            expected = self._raw_size(left_info, right_info)
        if isinstance(left_msg, Image) and isinstance(right_msg, Image):
            # Sizes from the headers first: nothing is converted for a set that cannot be used.
            if left_msg.encoding != right_msg.encoding:
                raise PairError('bad_input', 'encoding_mismatch', (
                    f'pair skipped: left image is {left_msg.encoding} but right is '
                    f'{right_msg.encoding}; both sides must come from the same rectification '
                    'pipeline'))
            _check_sizes((left_msg.width, left_msg.height), (right_msg.width, right_msg.height),
                         expected, left_info)
            left, right = _to_rgb8(left_msg), _to_rgb8(right_msg)
            if left_msg.encoding.startswith(('32FC', '64FC')) and not self._warned_float_range:
                self._check_float_range(left_msg)
        else:
            left, right = _to_rgb8(left_msg), _to_rgb8(right_msg)
            _check_sizes((left.shape[1], left.shape[0]), (right.shape[1], right.shape[0]),
                         expected, left_info)
        if self.rectifier is None:
            return left, right, camera
        try:
            pair = self.rectifier.rectify(left, right, left_info, right_info)
        except CameraInfoError as exc:
            raise PairError('camera_info_error', 'rectify',
                            f'CameraInfo unusable for rectification, pair skipped: {exc}') from exc
        return pair.left, pair.right, self.camera(pair.left_info, pair.right_info)

    def _raw_size(self, left_info: CameraInfo, right_info: CameraInfo) -> tuple[int, int]:
        """Size of the raw images (checks both calibrations and builds their maps)."""
        try:
            left = self.rectifier.maps(left_info, 'left')[0]
            right = self.rectifier.maps(right_info, 'right')[0]
        except CameraInfoError as exc:
            raise PairError('camera_info_error', 'rectify',
                            f'CameraInfo unusable for rectification, pair skipped: {exc}') from exc
        if left.size != right.size:
            raise PairError('camera_info_error', 'rectify', (
                f'CameraInfo unusable for rectification, pair skipped: the left camera gives '
                f'{left.size[0]}x{left.size[1]} images but the right {right.size[0]}x'
                f'{right.size[1]}; set the same size, binning and ROI on both cameras'))
        return left.size

    def _check_float_range(self, image: Image) -> None:
        # Float images are read as intensities 0..1 (cv_bridge's convention); 0..255 values
        # saturate to a white image and an empty disparity, with no error anywhere else.
        peak = float(np.max(conversions.image_to_array(image)))
        if peak > 1.0 and self._logger is not None:
            self._warned_float_range = True
            self._logger.warning(
                f'{image.encoding} images hold values up to {peak:g}, but float images are read '
                'as intensities 0..1: they saturate to white and give no disparity. Publish '
                'them scaled to 0..1, or as mono8/rgb8 (this warning is shown once)')


def _to_rgb8(msg: Image | CompressedImage) -> np.ndarray:
    """Image or CompressedImage as RGB8; PairError (bad input) saying what is wrong."""
    try:
        if isinstance(msg, CompressedImage):
            return conversions.compressed_to_rgb8(msg)
        return conversions.image_to_rgb8(msg)
    except ValueError as exc:  # UnsupportedEncodingError, malformed data/step, undecodable
        kind = ('decode_compressed' if isinstance(msg, CompressedImage)
                else f'convert_{msg.encoding}')
        raise PairError('bad_input', kind, f'pair skipped: {exc}') from exc


def _check_sizes(left: tuple[int, int], right: tuple[int, int], expected: tuple[int, int],
                 left_info: CameraInfo) -> None:
    if left != right:
        raise PairError('bad_input', 'size_mismatch', (
            f'pair skipped: left image is {left[0]}x{left[1]} but right is {right[0]}x'
            f'{right[1]}; publish a rectified pair'))
    if left != expected:
        geometry = ImageGeometry.from_camera_info(left_info)
        raise PairError('bad_input', 'info_size',
                        'pair skipped: ' + geometry.size_mismatch(*left))


def output_header(left_msg: Image, left_info: CameraInfo) -> Any:
    """Header of every output: the input stamp and the left camera frame."""
    header = left_msg.header
    if not header.frame_id:
        header.frame_id = left_info.header.frame_id
    return header


def output_messages(result: StereoResult, camera: StereoCamera, header: Any,
                    left_rgb: np.ndarray, left_info: CameraInfo,
                    wanted: Sequence[str]) -> dict[str, Any]:
    """Output messages by topic (names of :data:`OUTPUT_TOPICS`) for the ``wanted`` ones."""
    out: dict[str, Any] = {}
    if 'disparity' in wanted:
        out['disparity'] = conversions.make_disparity_image(
            result.disparity, camera, header, min_disparity=result.min_disparity,
            max_disparity=result.max_disparity, delta_d=result.delta_d)
    if 'depth/image_rect' in wanted:
        out['depth/image_rect'] = conversions.make_depth_image(result.depth, header)
    if 'depth/camera_info' in wanted:
        # The outputs are at camera resolution: the left CameraInfo describes them exactly.
        left_info.header = header
        out['depth/camera_info'] = left_info
    if 'points' in wanted:
        out['points'] = conversions.make_point_cloud(result.points, left_rgb, header)
    if 'disparity/image_color' in wanted:
        out['disparity/image_color'] = conversions.array_to_image(
            colorize_disparity(result.disparity), 'rgb8', header)
    if 'confidence' in wanted and result.confidence is not None:
        out['confidence'] = conversions.array_to_image(
            np.asarray(result.confidence, dtype=np.float32), '32FC1', header)
    return out


@dataclass
class ProcessedSet:
    """The outputs of one stereo set.

    Messages by topic, seconds per stage, and the share of pixels each trust stage removed
    (``StereoResult.removed``).
    """

    messages: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)
    removed: dict[str, float] = field(default_factory=dict)


@dataclass
class DecodedSet:
    """One set ready for the pipeline: its messages, RGB pair, camera and decode time."""

    messages: Sequence[Any]
    left: Any
    right: Any
    camera: StereoCamera
    convert: float  # seconds spent decoding

    @property
    def size(self) -> tuple[int, int]:
        """(width, height): sets of one size may share a batch."""
        return self.camera.width, self.camera.height


class StereoSetProcessor:
    """Four input messages in, output messages out: decode, run the pipeline, build outputs.

    The node and the bag tool both call :meth:`process`; any problem with the set, the device
    running out of memory included, is a :class:`PairError` the caller counts and skips.
    Several cameras share one pipeline with one processor each (its own calibration cache and
    rectifier): :func:`process_sets` batches their sets.
    """

    def __init__(self, pipeline: StereoPipeline, logger: Any = None, *,
                 rectify: bool = False) -> None:
        """``logger`` receives input warnings; ``rectify``: the images are raw.

        Raw images are rectified on the backend's device where that is not the CPU (torch
        grid_sample), else with cv2.remap (faster on a CPU: ``benchmarks/bench_rectify.py``).
        """
        self.pipeline = pipeline
        rectifier = StereoRectifier(pipeline.backend.device) if rectify else None
        self.decoder = PairDecoder(logger, rectifier)
        self._logger = logger
        self._told: set[str] = set()  # kinds of pipeline notices already logged

    def process(self, messages: Sequence[Any], wanted: Sequence[str]) -> ProcessedSet:
        """Build the outputs of the ``wanted`` topics (names of :data:`OUTPUT_TOPICS`) for one set.

        ``messages``: left image, left info, right image, right info (:data:`INPUT_TOPICS`).
        """
        (outcome,) = process_sets(self.pipeline, [(self, messages, wanted)])
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def decode(self, messages: Sequence[Any]) -> DecodedSet:
        """Check and convert one set (:data:`INPUT_TOPICS` order); PairError when unusable."""
        left_msg, left_info, right_msg, right_info = messages
        start = time.perf_counter()
        left, right, camera = self.decoder.decode(left_msg, left_info, right_msg, right_info)
        return DecodedSet(messages, left, right, camera, time.perf_counter() - start)

    def finish(self, decoded: DecodedSet, result: StereoResult,
               wanted: Sequence[str]) -> ProcessedSet:
        """Turn the pipeline's result for ``decoded`` into the ``wanted`` output messages."""
        self._tell(result)
        left_msg, left_info = decoded.messages[0], decoded.messages[1]
        start = time.perf_counter()
        out_info = self.decoder.output_info(left_info)
        header = output_header(left_msg, out_info)
        left = decoded.left
        if 'points' in wanted and not isinstance(left, np.ndarray):
            left = left.cpu().numpy()  # rectified on the device: the cloud's colours
        out = output_messages(result, decoded.camera, header, left, out_info, wanted)
        timings = {'convert': decoded.convert, **result.timings,
                   'messages': time.perf_counter() - start}
        return ProcessedSet(out, timings, result.removed)

    def _tell(self, result: StereoResult) -> None:
        """Log each kind of the pipeline's notices once (no confidence, an empty output)."""
        for kind, message in result.notices:
            if kind not in self._told and self._logger is not None:
                self._told.add(kind)
                self._logger.warning(f'{message} (said once)')


SetJob = tuple[StereoSetProcessor, Sequence[Any], Sequence[str]]


def process_sets(pipeline: StereoPipeline,
                 jobs: Sequence[SetJob]) -> list[ProcessedSet | Exception]:
    """Process the sets of several cameras through one pipeline; one outcome per job.

    ``jobs``: (the camera's processor, its four messages, its wanted output topics). Sets of
    the same image size go through the network as one batch (one config snapshot, each with
    its own camera), others one batch per size. An outcome is a :class:`ProcessedSet`, a
    :class:`PairError` (bad input, out of memory) or the exception the backend raised.
    """
    outcomes: list[ProcessedSet | Exception | None] = [None] * len(jobs)
    groups: dict[tuple[int, int], list[tuple[int, DecodedSet]]] = {}
    for index, (processor, messages, _) in enumerate(jobs):
        try:
            decoded = processor.decode(messages)
        except PairError as exc:
            outcomes[index] = exc
            continue
        groups.setdefault(decoded.size, []).append((index, decoded))
    for members in groups.values():
        wanted = {topic for index, _ in members for topic in jobs[index][2]}
        try:
            results = pipeline.process_batch(
                [(decoded.left, decoded.right) for _, decoded in members],
                [decoded.camera for _, decoded in members],
                want_depth='depth/image_rect' in wanted, want_points='points' in wanted,
                want_confidence='confidence' in wanted)
        except PipelineOutOfMemory as exc:
            error: Exception = PairError('out_of_memory', 'out_of_memory', f'pair skipped: {exc}')
            error.__cause__ = exc
            results = [error] * len(members)
        except Exception as exc:  # noqa: BLE001 - each caller decides what a failure costs
            results = [exc] * len(members)
        for (index, decoded), result in zip(members, results):
            processor, _, job_wanted = jobs[index]
            outcomes[index] = (result if isinstance(result, Exception)
                               else processor.finish(decoded, result, job_wanted))
    return outcomes  # type: ignore[return-value]

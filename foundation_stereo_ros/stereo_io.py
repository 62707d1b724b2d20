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
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from stereo_msgs.msg import DisparityImage

from foundation_stereo_ros import conversions
from foundation_stereo_ros.camera import CameraInfoError, StereoCamera
from foundation_stereo_ros.pipeline import PipelineOutOfMemory, StereoPipeline, StereoResult
from foundation_stereo_ros.visualize import colorize_disparity

# The one order of the four inputs everywhere (synchroniser slots, bag tool --topics...).
INPUT_TOPICS = ('left/image_rect', 'left/camera_info', 'right/image_rect', 'right/camera_info')
INPUT_TYPES = (Image, CameraInfo, Image, CameraInfo)
LEFT_IMAGE, LEFT_INFO, RIGHT_IMAGE, RIGHT_INFO = range(4)
OUTPUT_TOPICS = ('disparity', 'depth/image_rect', 'depth/camera_info', 'points',
                 'disparity/image_color')
OUTPUT_TYPES = (DisparityImage, Image, CameraInfo, PointCloud2, Image)


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

    Shared by the node and the rosbag tool. The stereo camera is rebuilt (and validated) only
    when the calibration changes.
    """

    def __init__(self, logger: Any = None) -> None:
        """``logger`` receives calibration warnings (python logging or rclpy logger)."""
        self._logger = logger
        self._cache: tuple[tuple, StereoCamera] | None = None

    def camera(self, left_info: CameraInfo, right_info: CameraInfo) -> StereoCamera:
        """Return the stereo camera of a CameraInfo pair; PairError when it is unusable."""
        key = (left_info.width, left_info.height, tuple(left_info.k), tuple(left_info.p),
               right_info.width, right_info.height, tuple(right_info.k), tuple(right_info.p),
               left_info.header.frame_id)
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        try:
            camera = StereoCamera.from_camera_info(left_info, right_info, logger=self._logger)
        except CameraInfoError as exc:
            raise PairError('camera_info_error', 'camera_info',
                            f'CameraInfo unusable, pair skipped: {exc}') from exc
        self._cache = (key, camera)
        return camera

    def decode(self, left_msg: Image, left_info: CameraInfo, right_msg: Image,
               right_info: CameraInfo) -> tuple[np.ndarray, np.ndarray, StereoCamera]:
        """(left RGB, right RGB, camera) for the pipeline; PairError saying what is wrong."""
        camera = self.camera(left_info, right_info)
        left_size = f'{left_msg.width}x{left_msg.height}'
        if left_msg.encoding != right_msg.encoding:
            raise PairError('bad_input', 'encoding_mismatch', (
                f'pair skipped: left image is {left_msg.encoding} but right is '
                f'{right_msg.encoding}; both sides must come from the same rectification '
                'pipeline'))
        if (left_msg.width, left_msg.height) != (right_msg.width, right_msg.height):
            raise PairError('bad_input', 'size_mismatch', (
                f'pair skipped: left image is {left_size} but right is {right_msg.width}x'
                f'{right_msg.height}; publish a rectified pair'))
        if (left_msg.width, left_msg.height) != (camera.width, camera.height):
            raise PairError('bad_input', 'info_size', (
                f'pair skipped: images are {left_size} but CameraInfo says '
                f'{camera.width}x{camera.height}; publish the CameraInfo of these images'))
        try:
            left = conversions.image_to_rgb8(left_msg)
            right = conversions.image_to_rgb8(right_msg)
        except ValueError as exc:  # UnsupportedEncodingError, malformed data/step
            raise PairError('bad_input', f'convert_{left_msg.encoding}',
                            f'pair skipped: {exc}') from exc
        return left, right, camera


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
    return out


@dataclass
class ProcessedSet:
    """The outputs of one stereo set: messages by topic, and seconds per stage."""

    messages: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)


class StereoSetProcessor:
    """Four input messages in, output messages out: decode, run the pipeline, build outputs.

    The node and the bag tool both call :meth:`process`; any problem with the set, the device
    running out of memory included, is a :class:`PairError` the caller counts and skips.
    """

    def __init__(self, pipeline: StereoPipeline, logger: Any = None) -> None:
        """``logger`` receives calibration warnings (python logging or rclpy logger)."""
        self.pipeline = pipeline
        self.decoder = PairDecoder(logger)

    def process(self, messages: Sequence[Any], wanted: Sequence[str]) -> ProcessedSet:
        """Build the outputs of the ``wanted`` topics (names of :data:`OUTPUT_TOPICS`) for one set.

        ``messages``: left image, left info, right image, right info (:data:`INPUT_TOPICS`).
        """
        left_msg, left_info, right_msg, right_info = messages
        start = time.perf_counter()
        left, right, camera = self.decoder.decode(left_msg, left_info, right_msg, right_info)
        convert = time.perf_counter() - start
        try:
            result = self.pipeline.process(
                left, right, camera, want_depth='depth/image_rect' in wanted,
                want_points='points' in wanted)
        except PipelineOutOfMemory as exc:
            raise PairError('out_of_memory', 'out_of_memory', f'pair skipped: {exc}') from exc
        start = time.perf_counter()
        header = output_header(left_msg, left_info)
        out = output_messages(result, camera, header, left, left_info, wanted)
        timings = {'convert': convert, **result.timings,
                   'messages': time.perf_counter() - start}
        return ProcessedSet(out, timings)

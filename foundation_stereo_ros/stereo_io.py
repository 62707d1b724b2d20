"""A synchronised stereo set as ROS messages, to and from the pipeline.

Shared by the node and the rosbag tool: :class:`PairDecoder` checks the four input messages
(left/right Image and CameraInfo) and turns them into the pipeline's inputs;
:func:`output_messages` turns a :class:`~foundation_stereo_ros.pipeline.StereoResult` into the
output messages, each carrying the input stamp and the left camera's frame.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from stereo_msgs.msg import DisparityImage

from foundation_stereo_ros import conversions
from foundation_stereo_ros.camera import (
    CameraInfoError,
    ImageGeometry,
    StereoCamera,
    camera_info_key,
)
from foundation_stereo_ros.pipeline import StereoResult
from foundation_stereo_ros.visualize import colorize_disparity

INPUT_TOPICS = ('left/image_rect', 'left/camera_info', 'right/image_rect', 'right/camera_info')
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
    when a field that changes the geometry changes (:func:`~.camera.camera_info_key`: the
    calibration, binning, ROI or frame).
    """

    def __init__(self, logger: Any = None) -> None:
        """``logger`` receives calibration warnings (python logging or rclpy logger)."""
        self._logger = logger
        self._cache: tuple[tuple, StereoCamera] | None = None

    def camera(self, left_info: CameraInfo, right_info: CameraInfo) -> StereoCamera:
        """Return the stereo camera of a CameraInfo pair; PairError when it is unusable."""
        key = (camera_info_key(left_info), camera_info_key(right_info))
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
            geometry = ImageGeometry.from_camera_info(left_info)
            raise PairError('bad_input', 'info_size', 'pair skipped: ' + geometry.size_mismatch(
                left_msg.width, left_msg.height))
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

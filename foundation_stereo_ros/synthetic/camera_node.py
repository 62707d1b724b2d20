"""A synthetic rectified stereo camera: generated scenes published like a real driver.

Publishes ``left/image_rect``, ``left/camera_info``, ``right/image_rect``, ``right/camera_info``
(relative names) at ``rate`` Hz, all four with one stamp. The CameraInfo pair is rectified:
both P share fx, fy, cy; the right one carries the baseline, ``P_right[3] = -fx * baseline``.
With ``moving:=true`` it cycles through ``num_scenes`` pre-generated scenes (one per frame), so
a subscriber sees changing data at no per-frame rendering cost.

    python -m foundation_stereo_ros.synthetic.camera_node --ros-args -p rate:=15.0
"""
from __future__ import annotations

import sys
from typing import Any

import cv2
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.node import Node
from rclpy.qos import QoSProfile, QoSReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from foundation_stereo_ros import conversions
from foundation_stereo_ros.camera import StereoCamera
from foundation_stereo_ros.ros_main import run_node
from foundation_stereo_ros.synthetic.scenes import StereoScene, make_scene

ENCODINGS = ('rgb8', 'bgr8', 'mono8')
QOS_CHOICES = ('sensor_data', 'reliable')


def _float_range(low: float, high: float) -> list[FloatingPointRange]:
    return [FloatingPointRange(from_value=low, to_value=high, step=0.0)]


def _int_range(low: int, high: int) -> list[IntegerRange]:
    return [IntegerRange(from_value=low, to_value=high, step=1)]


# name: (default, descriptor); all read-only: the scenes are generated once at start.
PARAMETERS: dict[str, tuple[Any, ParameterDescriptor]] = {
    'width': (640, ParameterDescriptor(description='Image width (pixels).', read_only=True,
                                       integer_range=_int_range(16, 8192))),
    'height': (480, ParameterDescriptor(description='Image height (pixels).', read_only=True,
                                        integer_range=_int_range(16, 8192))),
    'rate': (10.0, ParameterDescriptor(description='Frames per second.', read_only=True,
                                       floating_point_range=_float_range(0.1, 1000.0))),
    'seed': (0, ParameterDescriptor(description='Scene seed (scene k uses seed + k).',
                                    read_only=True, integer_range=_int_range(0, 2**31 - 1))),
    'frame_id': ('left_camera_optical_frame', ParameterDescriptor(
        description='Frame of the left camera (REP 103 optical frame); outputs use it.',
        read_only=True)),
    'right_frame_id': ('right_camera_optical_frame', ParameterDescriptor(
        description='Frame of the right camera.', read_only=True)),
    'encoding': ('rgb8', ParameterDescriptor(description='Image encoding: rgb8, bgr8 or mono8.',
                                             read_only=True,
                                             additional_constraints='rgb8, bgr8 or mono8')),
    'moving': (False, ParameterDescriptor(
        description='Cycle through num_scenes scenes, one per frame.', read_only=True)),
    'num_scenes': (4, ParameterDescriptor(description='Scenes generated when moving.',
                                          read_only=True, integer_range=_int_range(1, 64))),
    'baseline': (0.12, ParameterDescriptor(description='Stereo baseline (metres).',
                                           read_only=True,
                                           floating_point_range=_float_range(0.001, 10.0))),
    'noise': (0.0, ParameterDescriptor(description='Gaussian image noise (grey levels).',
                                       read_only=True,
                                       floating_point_range=_float_range(0.0, 50.0))),
    'qos': ('sensor_data', ParameterDescriptor(
        description='Publisher QoS: sensor_data (best effort) or reliable.', read_only=True,
        additional_constraints='sensor_data or reliable')),
}


def scene_to_messages(scene: StereoScene, encoding: str, frame_id: str,
                      right_frame_id: str) -> tuple[Image, CameraInfo, Image, CameraInfo]:
    """Build the four messages of one scene (stamps left at zero for the caller to fill)."""
    if encoding not in ENCODINGS:
        raise ValueError(f'encoding must be one of {ENCODINGS}, got {encoding!r}')
    images = []
    for rgb, frame in ((scene.left, frame_id), (scene.right, right_frame_id)):
        if encoding == 'bgr8':
            array = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        elif encoding == 'mono8':
            array = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        else:
            array = rgb
        image = conversions.array_to_image(array, encoding)
        image.header.frame_id = frame
        images.append(image)
    left_info, right_info = camera_info_pair(scene.camera, frame_id, right_frame_id)
    return images[0], left_info, images[1], right_info


def camera_info_pair(camera: StereoCamera, frame_id: str,
                     right_frame_id: str) -> tuple[CameraInfo, CameraInfo]:
    """Rectified left/right CameraInfo of ``camera``: P_right[3] = -fx * baseline."""
    left = conversions.make_camera_info(camera, Header(frame_id=frame_id))
    right = conversions.make_camera_info(camera, Header(frame_id=right_frame_id))
    # The right camera of a rectified pair: same K and P except its principal point, and
    # P[3] = -fx * baseline (image_pipeline's convention, read back by StereoCamera).
    cx_right = camera.cx if camera.cx_right is None else camera.cx_right
    k, p = list(right.k), list(right.p)
    k[2], p[2], p[3] = cx_right, cx_right, -camera.fx * camera.baseline
    right.k, right.p = k, p
    return left, right


class SyntheticStereoCamera(Node):
    """Publishes generated stereo scenes at a fixed rate."""

    def __init__(self, **node_kwargs: Any) -> None:
        """Declare parameters, generate the scenes and start the publishing timer."""
        super().__init__('synthetic_stereo_camera', **node_kwargs)
        p = {name: self.declare_parameter(name, default, descriptor).value
             for name, (default, descriptor) in PARAMETERS.items()}
        if p['encoding'] not in ENCODINGS:
            raise ValueError(f"encoding must be one of {ENCODINGS}, got {p['encoding']!r}")
        if p['qos'] not in QOS_CHOICES:
            raise ValueError(f"qos must be one of {QOS_CHOICES}, got {p['qos']!r}")
        count = p['num_scenes'] if p['moving'] else 1
        self.get_logger().info(f"generating {count} {p['width']}x{p['height']} scene(s)...")
        self.frames = []
        for k in range(count):
            scene = make_scene(p['width'], p['height'], seed=p['seed'] + k,
                               baseline=p['baseline'], noise=p['noise'])
            self.frames.append(scene_to_messages(scene, p['encoding'], p['frame_id'],
                                                 p['right_frame_id']))
        qos = qos_profile_sensor_data if p['qos'] == 'sensor_data' else QoSProfile(
            depth=5, reliability=QoSReliabilityPolicy.RELIABLE)
        self.publishers_out = [
            self.create_publisher(Image, 'left/image_rect', qos),
            self.create_publisher(CameraInfo, 'left/camera_info', qos),
            self.create_publisher(Image, 'right/image_rect', qos),
            self.create_publisher(CameraInfo, 'right/camera_info', qos),
        ]
        self.frame_count = 0
        self.timer = self.create_timer(1.0 / p['rate'], self.publish_frame)
        self.get_logger().info(
            f"publishing {p['encoding']} at {p['rate']} Hz on "
            f"{self.resolve_topic_name('left/image_rect')} and friends")

    def publish_frame(self, stamp: Any | None = None) -> None:
        """Publish the next frame's four messages with one stamp (now by default)."""
        stamp = stamp if stamp is not None else self.get_clock().now().to_msg()
        frame = self.frames[self.frame_count % len(self.frames)]
        for publisher, message in zip(self.publishers_out, frame):
            message.header.stamp = stamp
            publisher.publish(message)
        self.frame_count += 1


def main(args: list[str] | None = None) -> int:
    """Run the synthetic camera until SIGINT/SIGTERM; returns the process exit code."""
    return run_node(SyntheticStereoCamera, 'synthetic_stereo_camera', (ValueError,), args)


if __name__ == '__main__':
    sys.exit(main())

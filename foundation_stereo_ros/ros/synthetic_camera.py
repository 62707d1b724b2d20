"""A synthetic rectified stereo camera: generated scenes published like a real driver.

Publishes the node's inputs (:data:`~.topic_names.INPUT_TOPICS`: left/right ``image_rect``
and ``camera_info``, relative names) at ``rate`` Hz, all four with one stamp. The CameraInfo
pair is rectified: both P share fx, fy, cy; the right one carries the baseline,
``P_right[3] = -fx * baseline``.
With ``moving:=true`` it cycles through ``num_scenes`` pre-generated scenes (one per frame), so
a subscriber sees changing data at no per-frame rendering cost.

    python -m foundation_stereo_ros.synthetic.camera_node --ros-args -p rate:=15.0
"""
from __future__ import annotations

import sys
from typing import Any

from foundation_stereo_ros.interrupts import STOPPED, exit_on_interrupt, quiet_main
from foundation_stereo_ros.ros.runner import run_node

with exit_on_interrupt():  # Ctrl-C during the seconds of importing rclpy and torch
    import cv2
    from rclpy.node import Node
    from rclpy.qos import QoSProfile, QoSReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo, Image
    from std_msgs.msg import Header

    from foundation_stereo_ros.camera import StereoCamera
    from foundation_stereo_ros.ros import conversions
    from foundation_stereo_ros.ros import params as ros_params
    from foundation_stereo_ros.ros.topic_names import INPUT_TOPICS, LEFT_IMAGE
    from foundation_stereo_ros.synthetic.camera_settings import ENCODINGS, SETTINGS
    from foundation_stereo_ros.synthetic.scenes import StereoScene, make_scene


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
        p = ros_params.declare(self, SETTINGS)
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
        self.publishers_out = [self.create_publisher(msg_type, topic, qos) for msg_type, topic
                               in zip((Image, CameraInfo, Image, CameraInfo), INPUT_TOPICS)]
        self.frame_count = 0
        self.timer = self.create_timer(1.0 / p['rate'], self.publish_frame)
        self.get_logger().info(
            f"publishing {p['encoding']} at {p['rate']} Hz on "
            f"{self.resolve_topic_name(INPUT_TOPICS[LEFT_IMAGE])} and friends")

    def publish_frame(self, stamp: Any | None = None) -> None:
        """Publish the next frame's four messages with one stamp (now by default)."""
        stamp = stamp if stamp is not None else self.get_clock().now().to_msg()
        frame = self.frames[self.frame_count % len(self.frames)]
        for publisher, message in zip(self.publishers_out, frame):
            message.header.stamp = stamp
            publisher.publish(message)
        self.frame_count += 1


@quiet_main(STOPPED)
def main(args: list[str] | None = None) -> int:
    """Run the synthetic camera until SIGINT/SIGTERM; returns the process exit code."""
    return run_node(SyntheticStereoCamera, 'synthetic_stereo_camera',
                    (ros_params.ParameterError,), args)


if __name__ == '__main__':
    sys.exit(main())

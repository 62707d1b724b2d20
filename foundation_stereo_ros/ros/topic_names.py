"""The stereo input topic names and their one order, importing nothing.

The node subscribes to them, the synthetic camera publishes them, the bag tool reads them and
the launch files remap them: all from here (a launch file imports this module without loading
rclpy, torch or OpenCV). Names are relative, so namespaces and remaps work.
"""
from __future__ import annotations

# The one order of the four inputs everywhere (synchroniser slots, bag tool --topics...).
INPUT_TOPICS = ('left/image_rect', 'left/camera_info', 'right/image_rect', 'right/camera_info')
# With rectify: raw camera images (same CameraInfo topics).
RAW_INPUT_TOPICS = ('left/image_raw', 'left/camera_info', 'right/image_raw', 'right/camera_info')
LEFT_IMAGE, LEFT_INFO, RIGHT_IMAGE, RIGHT_INFO = range(4)
IMAGE_SLOTS = (LEFT_IMAGE, RIGHT_IMAGE)


def input_topics(rectify: bool = False) -> tuple[str, ...]:
    """Return the input topics (:data:`INPUT_TOPICS` order): image_raw ones to rectify."""
    return RAW_INPUT_TOPICS if rectify else INPUT_TOPICS

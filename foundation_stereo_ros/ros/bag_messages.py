"""ROS messages in rosbag2 files: type names for the bag's connections and CDR (de)serialisation.

The bag tool reads and writes bags with ``rosbags`` but keeps ROS messages as rclpy's own
classes (the stereo-set step of the node takes them), so the ROS half of that lives here.
"""
from __future__ import annotations

from typing import Any

from rclpy.serialization import deserialize_message, serialize_message

from foundation_stereo_ros.ros.stereo_io import IMAGE_SLOTS, IMAGE_TYPES, INPUT_TYPES, OUTPUT_TYPES

# ROS type names of the inputs and outputs, for the bag's connection records.
ROS_TYPE_NAMES = {msg_type: f'{msg_type.__module__.split(".")[0]}/msg/{msg_type.__name__}'
                  for msg_type in (*INPUT_TYPES, *IMAGE_TYPES.values(), *OUTPUT_TYPES)}
# An image slot takes any image transport's type; the bag says which by the topic's type.
SLOT_TYPES = [{ROS_TYPE_NAMES[t]: t for t in (IMAGE_TYPES.values() if i in IMAGE_SLOTS
                                              else (msg_type,))}
              for i, msg_type in enumerate(INPUT_TYPES)]


def decode(raw: bytes | memoryview, msg_type: type) -> Any:
    """Turn a bag record's CDR bytes into the rclpy message of ``msg_type``."""
    return deserialize_message(bytes(raw), msg_type)


def encode(msg: Any) -> bytes:
    """Turn an rclpy message into CDR bytes for a bag record."""
    return serialize_message(msg)

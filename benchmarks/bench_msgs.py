#!/usr/bin/env python3
"""Time the ROS message conversions of foundation_stereo_ros.ros.conversions at camera resolution.

Prints the median (and min) wall time of N calls for each conversion. Target: building the
coloured organized PointCloud2 at 1280x720 in under 10 ms on 2 CPU cores.

    PYTHONPATH=. python benchmarks/bench_msgs.py [--width 1280 --height 720 --repeat 30]
"""
from __future__ import annotations

import argparse
import array

import numpy as np
import torch
from common import timed
from std_msgs.msg import Header

from foundation_stereo_ros.camera import StereoCamera
from foundation_stereo_ros.geometry import depth_to_points, disparity_to_depth
from foundation_stereo_ros.ros import conversions


def padded_message(image: np.ndarray, encoding: str, pad: int) -> object:
    """Build an Image whose rows carry `pad` extra bytes, as some drivers send them."""
    rows = image.reshape(image.shape[0], -1).view(np.uint8)
    padded = np.concatenate([rows, np.zeros((rows.shape[0], pad), np.uint8)], axis=1)
    msg = conversions.array_to_image(image, encoding)
    msg.step = padded.shape[1]
    msg.data = array.array('B', padded.tobytes())
    return msg


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--width', type=int, default=1280)
    parser.add_argument('--height', type=int, default=720)
    parser.add_argument('--repeat', type=int, default=30)
    args = parser.parse_args()
    width, height, n = args.width, args.height, args.repeat

    rng = np.random.default_rng(0)
    camera = StereoCamera(width=width, height=height, fx=0.8 * width, fy=0.8 * width,
                          cx=width / 2, cy=height / 2, baseline=0.12)
    header = Header(frame_id='left_optical')
    rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    mono16 = rng.integers(0, 65536, (height, width), dtype=np.uint16)
    disparity = rng.uniform(1.0, 200.0, (height, width)).astype(np.float32)
    disparity[rng.random((height, width)) < 0.1] = np.nan
    disparity_t = torch.from_numpy(disparity)
    depth_t = disparity_to_depth(disparity_t, camera)
    depth = depth_t.numpy()
    points = depth_to_points(depth_t, camera).numpy()

    rgb_msg = conversions.array_to_image(rgb, 'rgb8', header)
    bgr_msg = conversions.array_to_image(bgr, 'bgr8', header)
    mono16_msg = conversions.array_to_image(mono16, 'mono16', header)
    padded_bgr_msg = padded_message(bgr, 'bgr8', 64)

    print(f'{width}x{height}, median of {n} calls')
    timed('image_to_array rgb8 (zero-copy view)', lambda: conversions.image_to_array(rgb_msg), n)
    timed('image_to_rgb8 rgb8', lambda: conversions.image_to_rgb8(rgb_msg), n)
    timed('image_to_rgb8 bgr8', lambda: conversions.image_to_rgb8(bgr_msg), n)
    timed('image_to_rgb8 bgr8, padded step', lambda: conversions.image_to_rgb8(padded_bgr_msg), n)
    timed('image_to_rgb8 mono16', lambda: conversions.image_to_rgb8(mono16_msg), n)
    timed('array_to_image rgb8', lambda: conversions.array_to_image(rgb, 'rgb8', header), n)
    timed('make_depth_image 32FC1', lambda: conversions.make_depth_image(depth, header), n)
    timed('make_disparity_image', lambda: conversions.make_disparity_image(
        disparity, camera, header, min_disparity=0.0, max_disparity=416.0, delta_d=1 / 32), n)
    timed('make_camera_info', lambda: conversions.make_camera_info(camera, header), n)
    make_cloud = conversions.make_point_cloud
    timed('make_point_cloud xyz + rgb', lambda: make_cloud(points, rgb, header), n)
    timed('make_point_cloud xyz only', lambda: make_cloud(points, None, header), n)
    timed('geometry: disparity_to_depth (torch, CPU)',
          lambda: disparity_to_depth(disparity_t, camera), n)
    timed('geometry: depth_to_points (torch, CPU)', lambda: depth_to_points(depth_t, camera), n)


if __name__ == '__main__':
    main()

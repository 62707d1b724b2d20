#!/usr/bin/env python3
"""Time the rectification of a raw stereo pair: cv2.remap on the host vs torch grid_sample.

For each size: building the maps (once per CameraInfo), then per pair

* ``remap`` (host): ``cv2.remap`` of both images with fixed-point maps, then the upload of the
  rectified pair to the device (what the pipeline does next);
* ``grid_sample`` (device): the upload of the raw pair, then ``grid_sample`` there.

On a CPU-only machine both end on the host and the upload is free. Prints the median (and min)
wall time of N pairs; the faster one per device is what ``StereoRectifier(method='auto')``
should pick.

    PYTHONPATH=. python benchmarks/bench_rectify.py [--device cuda] [--repeat 30]
"""
from __future__ import annotations

import argparse
from types import SimpleNamespace

import cv2
import numpy as np
import torch
from common import timed

from foundation_stereo_ros.rectification import RectificationMaps, StereoRectifier

SIZES = ((640, 480), (1280, 720), (1920, 1200))


def camera_info(width: int, height: int, side: str) -> SimpleNamespace:
    """Make a plumb_bob CameraInfo with a rotation of about a degree, like a real rig's."""
    fx = 0.8 * width
    k = [fx, 0.0, width / 2 + 3, 0.0, fx, height / 2 - 2, 0.0, 0.0, 1.0]
    r = cv2.Rodrigues(np.array([0.01, -0.015, 0.005]) * (1 if side == 'left' else -1))[0]
    p = [fx, 0.0, width / 2, 0.0 if side == 'left' else -fx * 0.1, 0.0, fx, height / 2, 0.0,
         0.0, 0.0, 1.0, 0.0]
    return SimpleNamespace(width=width, height=height, distortion_model='plumb_bob',
                           d=[-0.2, 0.05, 0.001, -0.001, 0.0], k=k, r=r.ravel().tolist(), p=p,
                           binning_x=0, binning_y=0, header=SimpleNamespace(frame_id=side),
                           roi=SimpleNamespace(x_offset=0, y_offset=0, width=0, height=0,
                                               do_rectify=False))


def bench_size(width: int, height: int, device: torch.device, repeat: int) -> None:
    """Print the timings of one image size."""
    print(f'{width}x{height} RGB pair')
    rng = np.random.default_rng(0)
    infos = camera_info(width, height, 'left'), camera_info(width, height, 'right')
    left, right = (rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(2))

    def sync() -> None:
        if device.type == 'cuda':
            torch.cuda.synchronize(device)

    timed('  build maps (both cameras, once)',
          lambda: [RectificationMaps.from_camera_info(i) for i in infos], 3, sync)
    host = StereoRectifier('cpu', method='remap')
    on_device = StereoRectifier(device, method='grid_sample')

    def remap_then_upload() -> None:
        pair = host.rectify(left, right, *infos)
        for image in (pair.left, pair.right):
            torch.from_numpy(image).to(device, non_blocking=True)

    timed('  remap on host (+ upload)', remap_then_upload, repeat, sync)
    timed(f'  grid_sample on {device} (upload raw)',
          lambda: on_device.rectify(left, right, *infos), repeat, sync)


def main() -> None:
    """Print the timings."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--repeat', type=int, default=30)
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f'device {device}, torch {torch.__version__}, OpenCV {cv2.__version__}, '
          f'{torch.get_num_threads()} torch threads, {cv2.getNumThreads()} OpenCV threads')
    for width, height in SIZES:
        bench_size(width, height, device, args.repeat)


if __name__ == '__main__':
    main()

"""Writing point clouds as binary PLY files (readable by Open3D, MeshLab, CloudCompare)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def write_ply(path: str | Path, points: np.ndarray, colors: np.ndarray | None = None) -> int:
    """Write the finite points of an (H, W, 3) or (N, 3) array as binary little-endian PLY.

    colors: uint8 RGB of the same leading shape, or None. Returns the number of points written.
    Invalid (NaN) points are left out: PLY has no notion of an organized cloud.
    """
    xyz = np.asarray(points, dtype=np.float32).reshape(-1, 3)
    keep = np.isfinite(xyz).all(axis=1)
    fields = [('x', '<f4'), ('y', '<f4'), ('z', '<f4')]
    if colors is not None:
        rgb = np.asarray(colors, dtype=np.uint8).reshape(-1, 3)
        if rgb.shape[0] != xyz.shape[0]:
            raise ValueError(f'{rgb.shape[0]} colours for {xyz.shape[0]} points')
        fields += [('red', 'u1'), ('green', 'u1'), ('blue', 'u1')]
    vertices = np.empty(int(keep.sum()), dtype=fields)
    for i, axis in enumerate('xyz'):
        vertices[axis] = xyz[keep, i]
    if colors is not None:
        for i, channel in enumerate(('red', 'green', 'blue')):
            vertices[channel] = rgb[keep, i]
    properties = ''.join(
        f'property {"float" if kind == "<f4" else "uchar"} {name}\n' for name, kind in fields)
    header = (f'ply\nformat binary_little_endian 1.0\nelement vertex {len(vertices)}\n'
              f'{properties}end_header\n')
    with open(path, 'wb') as f:
        f.write(header.encode('ascii'))
        f.write(vertices.tobytes())
    return len(vertices)

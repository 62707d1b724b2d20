"""Reading the tools' binary PLY files back in tests (the package only writes them).

Parses the header (vertex count, property names and types) and reads the vertices as a
structured array, so tests check what ``write_ply`` put in the file.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


def read_ply(path: str | Path) -> np.ndarray:
    """Read a binary little-endian PLY such as ``write_ply`` writes into a structured array."""
    with open(path, 'rb') as f:
        data = f.read()
    end = data.index(b'end_header\n') + len(b'end_header\n')
    lines = data[:end].decode('ascii').splitlines()
    if lines[:2] != ['ply', 'format binary_little_endian 1.0']:
        raise ValueError(f'{path}: not a binary little-endian PLY file')
    count = 0
    fields = []
    for line in lines:
        parts = line.split()
        if parts[:2] == ['element', 'vertex']:
            count = int(parts[2])
        elif parts and parts[0] == 'property':
            fields.append((parts[2], '<f4' if parts[1] == 'float' else 'u1'))
    return np.frombuffer(data, dtype=fields, count=count, offset=end)

"""PLY output of the offline tools."""
import numpy as np
import pytest
from ply_reader import read_ply

from foundation_stereo_ros.ply import write_ply


def test_finite_points_and_their_colours_round_trip(tmp_path):
    points = np.arange(2 * 3 * 3, dtype=np.float32).reshape(2, 3, 3)
    points[0, 1] = np.nan
    colors = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3) * 10
    n = write_ply(tmp_path / 'c.ply', points, colors)
    assert n == 5
    data = read_ply(tmp_path / 'c.ply')
    keep = np.isfinite(points.reshape(-1, 3)).all(1)
    np.testing.assert_array_equal(np.stack([data['x'], data['y'], data['z']], 1),
                                  points.reshape(-1, 3)[keep])
    np.testing.assert_array_equal(np.stack([data['red'], data['green'], data['blue']], 1),
                                  colors.reshape(-1, 3)[keep])
    header = (tmp_path / 'c.ply').read_bytes().split(b'end_header\n')[0].decode()
    assert 'element vertex 5' in header and 'property uchar red' in header


def test_without_colours_and_mismatched_colours(tmp_path):
    assert write_ply(tmp_path / 'p.ply', np.zeros((4, 3), np.float32)) == 4
    assert read_ply(tmp_path / 'p.ply').dtype.names == ('x', 'y', 'z')
    with pytest.raises(ValueError, match='3 colours for 4 points'):
        write_ply(tmp_path / 'q.ply', np.zeros((4, 3)), np.zeros((3, 3), np.uint8))

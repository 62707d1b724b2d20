"""Stereo cameras from files: the official K.txt and camera_calibration YAML."""
import numpy as np
import pytest

from foundation_stereo_ros.calibration_files import load_calibration_yaml, load_k_file
from foundation_stereo_ros.camera_info import CameraInfoError

FX, FY, CX, CY, CX_R, BASELINE = 700.0, 702.0, 320.5, 240.25, 310.5, 0.12


# ---------------------------------------------------------------------- K.txt

def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_k_file_official_format(tmp_path):
    from conftest import DATA_DIR
    k_file = np.load(DATA_DIR / 'utils_postprocess.npz')['K_file']
    text = ' '.join(repr(float(v)) for v in k_file.ravel()) + ' \n0.063\n'
    cam = load_k_file(write(tmp_path, 'K.txt', text), 960, 540)
    np.testing.assert_array_equal(cam.K, k_file.astype(np.float64))
    assert cam.baseline == 0.063 and (cam.width, cam.height) == (960, 540)
    assert cam.cx_right is None and cam.doffs == 0.0


@pytest.mark.parametrize('text, match', [
    ('1 0 2 0 1 3 0 0 1\n', r"1 non-empty line\(s\)"),
    ('1 0 2 0 1 3 0 0\n0.1\n', 'line 1 has 8 numbers'),
    ('1 0 2 0 1 3 0 0 1\n0.1 0.2\n', 'line 2 has 2'),
    ('1 0 2 0 1 x 0 0 1\n0.1\n', 'not a number'),
    ('1 0 2 0 1 3 0 0 2\n0.1\n', r'of the form \[fx 0 cx 0 fy cy 0 0 1\]'),
    ('1 0 2 0 1 3 0 0 1\n-0.1\n', 'baseline must be a finite number > 0'),
    ('0 0 2 0 1 3 0 0 1\n0.1\n', 'fx must be'),
    ('100 0 64 0 100 3 0 0 1\n0.1\n', r'principal point \(64, 3\) lies outside the 64x48'),
    ('100 0 2 0 100 -1 0 0 1\n0.1\n', r'principal point \(2, -1\) lies outside'),
])
def test_k_file_errors(tmp_path, text, match):
    with pytest.raises(CameraInfoError, match=match):
        load_k_file(write(tmp_path, 'K.txt', text), 64, 48)


def test_k_file_missing(tmp_path):
    with pytest.raises(CameraInfoError, match='cannot read intrinsics file'):
        load_k_file(tmp_path / 'nope.txt', 64, 48)


# ---------------------------------------------------------------------- calibration YAML

YAML = """image_width: 640
image_height: 480
camera_name: {name}
camera_matrix:
  rows: 3
  cols: 3
  data: [{fx}, 0, 321.7, 0, {fy}, 241.2, 0, 0, 1]
distortion_model: plumb_bob
distortion_coefficients:
  rows: 1
  cols: 5
  data: [-0.1, 0.02, 0, 0, 0]
rectification_matrix:
  rows: 3
  cols: 3
  data: [1, 0, 0, 0, 1, 0, 0, 0, 1]
projection_matrix:
  rows: 3
  cols: 4
  data: [{fx}, 0, {cx}, {tx}, 0, {fy}, {cy}, 0, 0, 0, 1, 0]
"""


def test_calibration_yaml(tmp_path):
    left = write(tmp_path, 'left.yaml', YAML.format(name='narrow_stereo/left', fx=FX, fy=FY,
                                                    cx=CX, cy=CY, tx=0))
    right = write(tmp_path, 'right.yaml', YAML.format(name='narrow_stereo/right', fx=FX, fy=FY,
                                                      cx=CX_R, cy=CY, tx=-FX * BASELINE))
    cam = load_calibration_yaml(left, right)
    assert (cam.width, cam.height, cam.fx, cam.fy, cam.cx, cam.cy, cam.cx_right) == \
        (640, 480, FX, FY, CX, CY, CX_R)
    assert cam.baseline == pytest.approx(BASELINE)
    with pytest.raises(CameraInfoError, match='not rectified'):
        load_calibration_yaml(left, write(tmp_path, 'r2.yaml', YAML.format(
            name='r', fx=FX, fy=FY, cx=CX_R, cy=CY + 5, tx=-FX * BASELINE)))


@pytest.mark.parametrize('text, match', [
    ('image_width: 640\n', 'lacks image_height, camera_matrix, projection_matrix'),
    ('- 1\n- 2\n', 'no mapping'),
    ('a: [1\n', 'not valid YAML'),
    (YAML.replace('data: [{fx}, 0, {cx}', 'data: [{cx}'), 'projection_matrix must have'),
])
def test_calibration_yaml_errors(tmp_path, text, match):
    text = text.format(name='x', fx=FX, fy=FY, cx=CX, cy=CY, tx=0)
    good = write(tmp_path, 'good.yaml', YAML.format(name='r', fx=FX, fy=FY, cx=CX, cy=CY,
                                                    tx=-FX * BASELINE))
    with pytest.raises(CameraInfoError, match=match):
        load_calibration_yaml(write(tmp_path, 'bad.yaml', text), good)

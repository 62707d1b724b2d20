"""StereoCamera: CameraInfo validation, K.txt and calibration YAML readers, resizing."""
import logging
import math
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from foundation_stereo_ros.camera import CameraInfoError, StereoCamera, camera_info_key

FX, FY, CX, CY, CX_R, BASELINE = 700.0, 702.0, 320.5, 240.25, 310.5, 0.12


def info(width=640, height=480, fx=FX, fy=FY, cx=CX, cy=CY, tx=0.0, k=None, p=None,
         frame_id='left_optical', binning=(0, 0), roi=(0, 0, 0, 0)):
    """Make a duck-typed CameraInfo (same field names as sensor_msgs/CameraInfo)."""
    if k is None:
        k = [fx, 0, cx, 0, fy, cy, 0, 0, 1]
    if p is None:
        p = [fx, 0, cx, tx, 0, fy, cy, 0, 0, 0, 1, 0]
    return SimpleNamespace(width=width, height=height, k=k, p=p,
                           header=SimpleNamespace(frame_id=frame_id),
                           binning_x=binning[0], binning_y=binning[1],
                           roi=SimpleNamespace(x_offset=roi[0], y_offset=roi[1],
                                               width=roi[2], height=roi[3]))


def pair(**right_kwargs):
    right = {'cx': CX_R, 'tx': -FX * BASELINE, 'frame_id': 'right_optical'}
    right.update(right_kwargs)
    return info(), info(**right)


class ListLogger:
    def __init__(self):
        self.messages = []

    def warning(self, message):
        self.messages.append(message)


class RclpyStyleLogger:
    """rclpy's RcutilsLogger has .warn (and .warning on newer releases); test the old spelling."""

    def __init__(self):
        self.messages = []

    def warn(self, message):
        self.messages.append(message)


def test_from_camera_info_reads_rectified_projection():
    cam = StereoCamera.from_camera_info(*pair())
    assert (cam.width, cam.height) == (640, 480)
    assert (cam.fx, cam.fy, cam.cx, cam.cy) == (FX, FY, CX, CY)
    assert cam.baseline == pytest.approx(BASELINE, rel=1e-12)
    assert cam.cx_right == CX_R
    assert cam.doffs == pytest.approx(CX - CX_R)
    assert cam.frame_id == 'left_optical'
    assert cam.fx_baseline == pytest.approx(FX * BASELINE)
    np.testing.assert_array_equal(cam.K, [[FX, 0, CX], [0, FY, CY], [0, 0, 1]])
    assert cam.K.dtype == np.float64


def test_from_real_camera_info_messages():
    msg = pytest.importorskip('sensor_msgs.msg')
    left, right = msg.CameraInfo(), msg.CameraInfo()
    for m, src in zip((left, right), pair()):
        m.width, m.height = src.width, src.height
        m.k = [float(v) for v in src.k]
        m.p = [float(v) for v in src.p]
        m.header.frame_id = src.header.frame_id
    cam = StereoCamera.from_camera_info(left, right)
    assert cam.baseline == pytest.approx(BASELINE)
    assert cam.frame_id == 'left_optical'


def test_left_tx_nonzero_uses_difference():
    left = info(tx=-FX * 0.05)  # both Tx relative to a third reference
    right = info(cx=CX_R, tx=-FX * (0.05 + BASELINE))
    assert StereoCamera.from_camera_info(left, right).baseline == pytest.approx(BASELINE)


@pytest.mark.parametrize('field, value', [('fx', FX * 1.01), ('fy', FY + 1.0), ('cy', CY + 2.0)])
def test_not_rectified(field, value):
    with pytest.raises(CameraInfoError, match=f'not rectified: {field} differs.*image_proc'):
        StereoCamera.from_camera_info(*pair(**{field: value}))


def test_rectified_tolerance_accepts_float32_round_trip():
    cam = StereoCamera.from_camera_info(*pair(fx=float(np.float32(FX * 1.0000001))))
    assert cam.fx == FX


def test_different_sizes():
    with pytest.raises(CameraInfoError, match='different image sizes.*640x480 vs 320x240'):
        StereoCamera.from_camera_info(*pair(width=320, height=240))


def test_swapped_cameras():
    left, right = pair()
    with pytest.raises(CameraInfoError, match='swapped'):
        StereoCamera.from_camera_info(right, left)


def test_positive_right_tx_is_swapped():
    with pytest.raises(CameraInfoError, match='negative.*swapped'):
        StereoCamera.from_camera_info(*pair(tx=FX * BASELINE))


def test_missing_baseline_in_p():
    with pytest.raises(CameraInfoError, match=r'P\[3\].*is 0.*baseline') as info:
        StereoCamera.from_camera_info(*pair(tx=0.0))
    # The node and the bag tool have no baseline option: the advice is the calibration.
    assert 'baseline=' not in str(info.value) and 'camera_calibration' in str(info.value)
    cam = StereoCamera.from_camera_info(*pair(tx=0.0), baseline=0.2)
    assert cam.baseline == 0.2


def test_explicit_baseline_disagreeing_with_p_warns():
    logger = ListLogger()
    cam = StereoCamera.from_camera_info(*pair(), baseline=0.5, logger=logger)
    assert cam.baseline == 0.5
    assert len(logger.messages) == 1 and 'overrides' in logger.messages[0]


def test_p_missing_falls_back_to_k_with_warning():
    zeros = [0.0] * 12
    left, right = info(p=zeros), info(cx=CX_R, p=zeros)
    with pytest.raises(CameraInfoError, match='all zeros.*no baseline.*--intrinsics'):
        StereoCamera.from_camera_info(left, right)
    for logger in (ListLogger(), RclpyStyleLogger()):
        cam = StereoCamera.from_camera_info(left, right, baseline=0.1, logger=logger)
        assert (cam.fx, cam.fy, cam.cx, cam.cy, cam.cx_right) == (FX, FY, CX, CY, CX_R)
        assert cam.baseline == 0.1
        assert len(logger.messages) == 1 and 'using K' in logger.messages[0]


def test_p_missing_with_python_logging(caplog):
    zeros = [0.0] * 12
    with caplog.at_level(logging.WARNING):
        StereoCamera.from_camera_info(info(p=zeros), info(p=zeros), baseline=0.1,
                                      logger=logging.getLogger('test_camera'))
    assert 'P is all zeros' in caplog.text


def test_k_and_p_all_zero():
    zeros = [0.0] * 12
    with pytest.raises(CameraInfoError, match='both K and P all zeros'):
        StereoCamera.from_camera_info(info(p=zeros), info(p=zeros, k=[0.0] * 9), baseline=0.1)


@pytest.mark.parametrize('field', ['k', 'p'])
def test_nan_in_matrices(field):
    left, right = pair()
    values = list(getattr(right, field))
    values[4] = math.nan
    setattr(right, field, values)
    with pytest.raises(CameraInfoError, match=f'right CameraInfo {field.upper()} contains NaN'):
        StereoCamera.from_camera_info(left, right)


def test_zero_focal_length():
    with pytest.raises(CameraInfoError, match='non-positive focal length'):
        StereoCamera.from_camera_info(info(fx=0.0), info(fx=0.0, tx=-1.0))


def test_wrong_matrix_length():
    left, right = pair()
    left.p = left.p[:9]
    with pytest.raises(CameraInfoError, match='left CameraInfo P has 9 values, expected 12'):
        StereoCamera.from_camera_info(left, right)


@pytest.mark.parametrize('size', [(0, 480), (640, 0)])
def test_zero_image_size(size):
    with pytest.raises(CameraInfoError, match='image size.*fill width and height'):
        StereoCamera.from_camera_info(info(width=size[0], height=size[1]), pair()[1])


def test_binning_and_roi_follow_rep_104():
    left = info(binning=(2, 2), roi=(100, 40, 400, 300))
    right = info(cx=CX_R, tx=-FX * BASELINE, binning=(2, 2), roi=(100, 40, 400, 300))
    cam = StereoCamera.from_camera_info(left, right)
    assert (cam.width, cam.height) == (200, 150)
    assert cam.fx == FX / 2 and cam.fy == FY / 2
    # Binned pixel u covers sensor pixels 100 + 2u and 100 + 2u + 1, centred on 100 + 2u + 0.5:
    # the sensor's cx = 320.5 is binned column (320.5 - 100 - 0.5) / 2 = 110.
    assert cam.cx == 110.0 and cam.cy == (CY - 40 - 0.5) / 2
    assert cam.cx_right == (CX_R - 100 - 0.5) / 2
    assert cam.baseline == pytest.approx(BASELINE)
    assert cam.doffs == pytest.approx((CX - CX_R) / 2)


def test_each_side_uses_its_own_roi():
    left = info(roi=(100, 40, 400, 300))
    right = info(cx=CX_R, tx=-FX * BASELINE, roi=(80, 40, 400, 300))
    cam = StereoCamera.from_camera_info(left, right)
    assert (cam.cx, cam.cx_right) == (CX - 100, CX_R - 80)
    with pytest.raises(CameraInfoError, match=r'not rectified: cy.*after binning and ROI'):
        StereoCamera.from_camera_info(left, info(cx=CX_R, tx=-FX * BASELINE,
                                                 roi=(100, 50, 400, 300)))


@pytest.mark.parametrize('left_kwargs, match', [
    ({'roi': (600, 0, 100, 100)}, r'ROI 100x100 at \(600, 0\) does not fit.*640x480'),
    ({'roi': (10, 10, 0, 0)}, 'ROI 0x0 at .* does not fit'),
    ({'binning': (1000, 1)}, 'binning 1000x1 leaves no pixel'),
    ({'binning': (2, 2)}, 'differ in size after binning and ROI.*binning 2x2: 320x240'),
])
def test_binning_and_roi_errors(left_kwargs, match):
    with pytest.raises(CameraInfoError, match=match):
        StereoCamera.from_camera_info(info(**left_kwargs), pair()[1])


def test_full_size_roi_is_no_roi():
    cam = StereoCamera.from_camera_info(info(roi=(0, 0, 640, 480)),
                                        info(cx=CX_R, tx=-FX * BASELINE))
    assert (cam.width, cam.height, cam.cx) == (640, 480, CX)


def test_camera_info_key_holds_every_geometry_field():
    base = camera_info_key(info())
    changed = [info(binning=(2, 2)), info(roi=(8, 0, 600, 480)), info(frame_id='other'),
               info(k=[FX, 0, CX, 0, FY, CY + 1, 0, 0, 1]), info(width=800)]
    for other in changed:
        assert camera_info_key(other) != base
    with_d = info()
    with_d.d, with_d.distortion_model = [0.1, 0, 0, 0, 0], 'plumb_bob'
    assert camera_info_key(with_d) != base
    assert camera_info_key(info()) == base


def test_direct_construction_validates():
    with pytest.raises(CameraInfoError, match='baseline must be a finite number > 0'):
        StereoCamera(width=10, height=10, fx=1, fy=1, cx=5, cy=5, baseline=-0.1)
    with pytest.raises(CameraInfoError, match='width must be a positive integer'):
        StereoCamera(width=0, height=10, fx=1, fy=1, cx=5, cy=5, baseline=0.1)
    with pytest.raises(CameraInfoError, match='cx must be finite'):
        StereoCamera(width=10, height=10, fx=1, fy=1, cx=math.nan, cy=5, baseline=0.1)
    assert StereoCamera(width=10, height=10, fx=1, fy=1, cx=5, cy=5, baseline=0.1).doffs == 0.0


# ---------------------------------------------------------------------- K.txt

def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_from_k_file_official_format(tmp_path):
    from conftest import DATA_DIR
    k_file = np.load(DATA_DIR / 'utils_postprocess.npz')['K_file']
    text = ' '.join(repr(float(v)) for v in k_file.ravel()) + ' \n0.063\n'
    cam = StereoCamera.from_k_file(write(tmp_path, 'K.txt', text), 960, 540)
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
def test_from_k_file_errors(tmp_path, text, match):
    with pytest.raises(CameraInfoError, match=match):
        StereoCamera.from_k_file(write(tmp_path, 'K.txt', text), 64, 48)


def test_from_k_file_missing(tmp_path):
    with pytest.raises(CameraInfoError, match='cannot read intrinsics file'):
        StereoCamera.from_k_file(tmp_path / 'nope.txt', 64, 48)


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


def test_from_calibration_yaml(tmp_path):
    left = write(tmp_path, 'left.yaml', YAML.format(name='narrow_stereo/left', fx=FX, fy=FY,
                                                    cx=CX, cy=CY, tx=0))
    right = write(tmp_path, 'right.yaml', YAML.format(name='narrow_stereo/right', fx=FX, fy=FY,
                                                      cx=CX_R, cy=CY, tx=-FX * BASELINE))
    cam = StereoCamera.from_calibration_yaml(left, right)
    assert (cam.width, cam.height, cam.fx, cam.fy, cam.cx, cam.cy, cam.cx_right) == \
        (640, 480, FX, FY, CX, CY, CX_R)
    assert cam.baseline == pytest.approx(BASELINE)
    with pytest.raises(CameraInfoError, match='not rectified'):
        StereoCamera.from_calibration_yaml(left, write(tmp_path, 'r2.yaml', YAML.format(
            name='r', fx=FX, fy=FY, cx=CX_R, cy=CY + 5, tx=-FX * BASELINE)))


@pytest.mark.parametrize('text, match', [
    ('image_width: 640\n', 'lacks image_height, camera_matrix, projection_matrix'),
    ('- 1\n- 2\n', 'no mapping'),
    ('a: [1\n', 'not valid YAML'),
    (YAML.replace('data: [{fx}, 0, {cx}', 'data: [{cx}'), 'projection_matrix must have'),
])
def test_from_calibration_yaml_errors(tmp_path, text, match):
    text = text.format(name='x', fx=FX, fy=FY, cx=CX, cy=CY, tx=0)
    good = write(tmp_path, 'good.yaml', YAML.format(name='r', fx=FX, fy=FY, cx=CX, cy=CY,
                                                    tx=-FX * BASELINE))
    with pytest.raises(CameraInfoError, match=match):
        StereoCamera.from_calibration_yaml(write(tmp_path, 'bad.yaml', text), good)


# ---------------------------------------------------------------------- resizing

def test_scaled_matches_cv2_resize_sampling():
    """A ramp image resized by cv2 tells where each output pixel samples the input."""
    cam = StereoCamera(width=640, height=480, fx=FX, fy=FY, cx=CX, cy=CY, baseline=BASELINE,
                       cx_right=CX_R)
    ramp_u = np.tile(np.arange(640, dtype=np.float32), (480, 1))
    for scale in (0.5, 0.3):
        small = cam.scaled(scale)
        resized = cv2.resize(ramp_u, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
        assert resized.shape == (small.height, small.width)
        # the source column sampled at the new principal point is the old principal point
        u = np.arange(small.width)
        source_u = np.interp(small.cx, u, resized[small.height // 2])
        assert source_u == pytest.approx(cam.cx, abs=1e-3)
        assert small.fx == pytest.approx(FX * scale) and small.fy == pytest.approx(FY * scale)
        assert small.baseline == BASELINE
        assert small.doffs == pytest.approx(cam.doffs * scale)


def test_scaled_size_rounding_matches_cv2():
    cam = StereoCamera(width=1280, height=720, fx=FX, fy=FY, cx=CX, cy=CY, baseline=BASELINE)
    image = np.zeros((720, 1280), np.uint8)
    for scale in (0.3, 0.37, 0.55, 1.0):
        small = cam.scaled(scale)
        assert cv2.resize(image, None, fx=scale, fy=scale).shape == (small.height, small.width)


def test_resized_is_pixel_centre_aligned_and_invertible():
    cam = StereoCamera(width=640, height=480, fx=FX, fy=FY, cx=CX, cy=CY, baseline=BASELINE,
                       cx_right=CX_R, frame_id='f')
    small = cam.resized(320, 240)
    assert (small.cx, small.cy) == ((CX + 0.5) / 2 - 0.5, (CY + 0.5) / 2 - 0.5)
    assert small.frame_id == 'f'
    back = small.resized(640, 480)
    for name in ('fx', 'fy', 'cx', 'cy', 'cx_right', 'baseline'):
        assert getattr(back, name) == pytest.approx(getattr(cam, name))
    assert cam.scaled(0.5) == small
    with pytest.raises(CameraInfoError):
        cam.resized(0, 10)
    with pytest.raises(CameraInfoError):
        cam.scaled(-1.0)

"""StereoCamera from CameraInfo pairs: validation, binning and ROI (REP 104), the cache key."""
import math
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from foundation_stereo_ros.camera import StereoCamera
from foundation_stereo_ros.camera_info import CameraInfoError

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


def test_projection_all_zeros_is_refused_with_advice():
    """An uncalibrated driver (P all zeros) has no baseline: say to calibrate."""
    zeros = [0.0] * 12
    with pytest.raises(CameraInfoError, match='right CameraInfo projection matrix P is all '
                                              'zeros.*no baseline.*--intrinsics'):
        StereoCamera.from_camera_info(info(), info(cx=CX_R, p=zeros))
    with pytest.raises(CameraInfoError, match='left and right CameraInfo projection matrix P'):
        StereoCamera.from_camera_info(info(p=zeros), info(cx=CX_R, p=zeros))


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


def test_direct_construction_validates():
    with pytest.raises(CameraInfoError, match='baseline must be a finite number > 0'):
        StereoCamera(width=10, height=10, fx=1, fy=1, cx=5, cy=5, baseline=-0.1)
    with pytest.raises(CameraInfoError, match='width must be a positive integer'):
        StereoCamera(width=0, height=10, fx=1, fy=1, cx=5, cy=5, baseline=0.1)
    with pytest.raises(CameraInfoError, match='cx must be finite'):
        StereoCamera(width=10, height=10, fx=1, fy=1, cx=math.nan, cy=5, baseline=0.1)
    assert StereoCamera(width=10, height=10, fx=1, fy=1, cx=5, cy=5, baseline=0.1).doffs == 0.0


# ---------------------------------------------------------------------- resizing

def test_resized_matches_cv2_resize_sampling():
    """A ramp image resized by cv2 tells where each output pixel samples the input."""
    cam = StereoCamera(width=640, height=480, fx=FX, fy=FY, cx=CX, cy=CY, baseline=BASELINE,
                       cx_right=CX_R)
    ramp_u = np.tile(np.arange(640, dtype=np.float32), (480, 1))
    for width, height in ((320, 240), (192, 144)):
        small = cam.resized(width, height)
        resized = cv2.resize(ramp_u, (width, height), interpolation=cv2.INTER_LINEAR)
        # the source column sampled at the new principal point is the old principal point
        source_u = np.interp(small.cx, np.arange(width), resized[height // 2])
        assert source_u == pytest.approx(cam.cx, abs=1e-3)
        assert small.fx == pytest.approx(FX * width / 640)
        assert small.fy == pytest.approx(FY * height / 480)
        assert small.baseline == BASELINE
        assert small.doffs == pytest.approx(cam.doffs * width / 640)


def test_resized_is_pixel_centre_aligned_and_invertible():
    cam = StereoCamera(width=640, height=480, fx=FX, fy=FY, cx=CX, cy=CY, baseline=BASELINE,
                       cx_right=CX_R, frame_id='f')
    small = cam.resized(320, 240)
    assert (small.cx, small.cy) == ((CX + 0.5) / 2 - 0.5, (CY + 0.5) / 2 - 0.5)
    assert small.frame_id == 'f'
    back = small.resized(640, 480)
    for name in ('fx', 'fy', 'cx', 'cy', 'cx_right', 'baseline'):
        assert getattr(back, name) == pytest.approx(getattr(cam, name))
    with pytest.raises(CameraInfoError):
        cam.resized(0, 10)

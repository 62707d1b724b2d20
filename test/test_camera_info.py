"""CameraInfo fields read once for all: matrix checks shared by camera and rectifier, the key."""
import math

import numpy as np
import pytest
from test_camera import CX, CY, FX, FY, info, pair

from foundation_stereo_ros.camera import StereoCamera
from foundation_stereo_ros.camera_info import (
    CameraInfoError,
    camera_info_key,
    camera_info_matrix,
)
from foundation_stereo_ros.rectification import RectificationMaps


@pytest.mark.parametrize('values, match', [
    ([1.0] * 8, 'the left CameraInfo K has 8 values, expected 9; fix the calibration file'),
    ([1.0] * 8 + [math.inf], r'the left CameraInfo K contains NaN or inf \(\[1.0, .*inf\]\)'),
    (['a'] * 9, 'the left CameraInfo K is not numeric'),
])
def test_matrix_faults_are_named(values, match):
    with pytest.raises(CameraInfoError, match=match):
        camera_info_matrix(info(k=values), 'k', (3, 3), 'the left CameraInfo')


def test_matrix_reads_row_major():
    k = camera_info_matrix(info(), 'k', (3, 3), 'the CameraInfo')
    np.testing.assert_array_equal(k, [[FX, 0, CX], [0, FY, CY], [0, 0, 1]])
    assert k.dtype == np.float64


def test_camera_and_rectifier_say_the_same_about_the_same_fault():
    """One check, one text: a P of 9 values is refused in the same words by both readers."""
    left, right = pair()
    left.p = left.p[:9]
    with pytest.raises(CameraInfoError) as by_camera:
        StereoCamera.from_camera_info(left, right)
    with pytest.raises(CameraInfoError) as by_rectifier:
        RectificationMaps.from_camera_info(_raw(left), 'left')
    words = 'the left CameraInfo P has 9 values, expected 12; fix the calibration file'
    assert str(by_camera.value).startswith(words)
    assert str(by_rectifier.value).startswith(words)
    right.p = [0.0] * 12
    right.p[0] = -1.0
    words = 'the right CameraInfo P has a non-positive focal length .*not calibrated'
    with pytest.raises(CameraInfoError, match=words):
        StereoCamera.from_camera_info(pair()[0], right)
    with pytest.raises(CameraInfoError, match=words):
        RectificationMaps.from_camera_info(_raw(right), 'right')


def _raw(camera_info):
    """Give a rectified stand-in the raw fields the rectifier reads (no distortion)."""
    camera_info.d, camera_info.distortion_model = [0.0] * 5, 'plumb_bob'
    camera_info.r = np.eye(3).ravel().tolist()
    return camera_info


def test_key_holds_every_geometry_field():
    base = camera_info_key(info())
    changed = [info(binning=(2, 2)), info(roi=(8, 0, 600, 480)), info(frame_id='other'),
               info(k=[FX, 0, CX, 0, FY, CY + 1, 0, 0, 1]), info(width=800)]
    for other in changed:
        assert camera_info_key(other) != base
    with_d = info()
    with_d.d, with_d.distortion_model = [0.1, 0, 0, 0, 0], 'plumb_bob'
    assert camera_info_key(with_d) != base
    assert camera_info_key(info()) == base

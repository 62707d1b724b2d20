"""colorize_disparity against the official vis_disparity output."""
import cv2
import numpy as np
import pytest
import torch
from conftest import DATA_DIR

from foundation_stereo_ros.visualize import colorize_disparity

GOLDEN = np.load(DATA_DIR / 'utils_postprocess.npz')


def test_matches_official_vis():
    vis = colorize_disparity(GOLDEN['disp'])
    assert vis.dtype == np.uint8 and vis.shape == (54, 96, 3)
    np.testing.assert_array_equal(vis, GOLDEN['vis'])


def test_matches_official_vis_with_invalid():
    disp = GOLDEN['disp_invisible_inf']
    assert np.isinf(disp).any()
    np.testing.assert_array_equal(colorize_disparity(disp), GOLDEN['vis_with_invalid'])
    # NaN is this package's invalid marker: same picture
    as_nan = np.where(np.isinf(disp), np.nan, disp).astype(np.float32)
    np.testing.assert_array_equal(colorize_disparity(as_nan), GOLDEN['vis_with_invalid'])


def test_colours_are_turbo_rgb():
    disp = np.linspace(0, 1, 256, dtype=np.float32).reshape(16, 16)
    expected_bgr = cv2.applyColorMap((disp * 255).astype(np.uint8), cv2.COLORMAP_TURBO)
    np.testing.assert_array_equal(colorize_disparity(disp), expected_bgr[..., ::-1])


def test_explicit_range_and_invalid_colour():
    disp = np.array([[0.0, 5.0, 10.0, 20.0, np.nan]], dtype=np.float32)
    vis = colorize_disparity(disp, vmin=5.0, vmax=10.0, invalid_color=(1, 2, 3))
    lut = cv2.applyColorMap(np.arange(256, dtype=np.uint8)[None], cv2.COLORMAP_TURBO)[0, :, ::-1]
    np.testing.assert_array_equal(vis[0, :4], lut[[0, 0, 255, 255]])
    np.testing.assert_array_equal(vis[0, 4], [1, 2, 3])


def test_all_invalid_and_constant():
    assert not colorize_disparity(np.full((4, 5), np.nan, np.float32)).any()
    constant = colorize_disparity(np.full((2, 2), 7.0, np.float32))
    assert (constant == constant[0, 0]).all()


def test_torch_input_and_bad_shape():
    disp = GOLDEN['disp']
    np.testing.assert_array_equal(colorize_disparity(torch.from_numpy(disp)), GOLDEN['vis'])
    with pytest.raises(ValueError, match=r'\(H, W\)'):
        colorize_disparity(np.zeros((2, 3, 4), np.float32))

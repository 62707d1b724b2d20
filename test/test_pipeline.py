"""The pipeline: rescaling, conventions, validity and outputs, with a backend of known output."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from foundation_stereo_ros.backends.base import DisparityBackend
from foundation_stereo_ros.camera import StereoCamera
from foundation_stereo_ros.pipeline import PipelineConfig, StereoPipeline

W, H = 64, 48


class OracleBackend(DisparityBackend):
    """Returns a given full-resolution disparity field, resampled to the size it is run at."""

    name = 'oracle'
    device = torch.device('cpu')
    delta_d = 0.25
    max_disparity = 40.0
    min_disparity = 0.0

    def __init__(self, disparity: np.ndarray) -> None:
        self.disparity = torch.from_numpy(disparity.astype(np.float32))
        self.calls = []
        self.options = []

    def compute(self, left: torch.Tensor, right: torch.Tensor, **options) -> torch.Tensor:
        self.calls.append(tuple(left.shape))
        self.options.append(options)
        h, w = left.shape[1:]
        full_h, full_w = self.disparity.shape
        if (h, w) == (full_h, full_w):
            return self.disparity.clone()
        # Disparity at a smaller image: sample the field there and shrink it with the width.
        small = F.interpolate(self.disparity[None, None], size=(h, w), mode='bilinear',
                              align_corners=False)[0, 0]
        return small * (w / full_w)

    def describe(self) -> dict:
        return {'backend': self.name}


def camera(cx_right=None) -> StereoCamera:
    return StereoCamera(width=W, height=H, fx=50.0, fy=50.0, cx=31.5, cy=23.5, baseline=0.1,
                        cx_right=cx_right)


def images() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    left = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    return left, left.copy()


def ramp() -> np.ndarray:
    # A smooth field (a slanted plane): bilinear resampling reproduces it almost exactly.
    u = np.arange(W)[None, :]
    v = np.arange(H)[:, None]
    return (10.0 + 0.05 * u + 0.1 * v).astype(np.float32) * np.ones((H, W), np.float32)


def test_full_resolution_outputs_follow_the_camera():
    disp = ramp()
    pipeline = StereoPipeline(OracleBackend(disp), PipelineConfig(remove_invisible=False))
    result = pipeline.process(*images(), camera())
    assert result.disparity.dtype == np.float32 and result.disparity.shape == (H, W)
    np.testing.assert_allclose(result.disparity, disp, rtol=1e-6)
    np.testing.assert_allclose(result.depth, 50.0 * 0.1 / disp, rtol=1e-5)
    u, v = np.meshgrid(np.arange(W), np.arange(H))
    z = result.depth
    np.testing.assert_allclose(result.points[..., 0], (u - 31.5) * z / 50.0, rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(result.points[..., 1], (v - 23.5) * z / 50.0, rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(result.points[..., 2], z, rtol=1e-6)
    assert result.min_disparity == 0.0 and result.max_disparity == 40.0
    assert result.delta_d == 0.25
    assert set(result.timings) == {'upload', 'inference', 'postprocess', 'download'}


def test_scaled_run_publishes_camera_resolution_and_camera_pixels():
    disp = ramp()
    backend = OracleBackend(disp)
    pipeline = StereoPipeline(backend, PipelineConfig(scale=0.5, remove_invisible=False))
    result = pipeline.process(*images(), camera())
    assert backend.calls == [(3, H // 2, W // 2)]
    assert result.disparity.shape == (H, W)
    inner = (slice(2, -2), slice(2, -2))  # borders extrapolate; the interior must match
    np.testing.assert_allclose(result.disparity[inner], disp[inner], atol=0.02)
    # Search range and resolution are reported in camera pixels too.
    assert result.max_disparity == pytest.approx(80.0)
    assert result.delta_d == pytest.approx(0.5)


def test_invalid_disparities_never_blend_into_valid_ones_when_upsampling():
    disp = ramp()
    disp[:, 20:30] = np.nan
    pipeline = StereoPipeline(OracleBackend(disp),
                              PipelineConfig(scale=0.5, remove_invisible=False))
    result = pipeline.process(*images(), camera())
    finite = np.isfinite(result.disparity)
    assert not finite[:, 21:29].any()
    assert finite[:, 35:60].all()


def test_remove_invisible_and_nonpositive_disparities_are_nan():
    disp = np.full((H, W), 10.0, np.float32)
    disp[0, 40] = 0.0
    disp[1, 41] = -3.0
    pipeline = StereoPipeline(OracleBackend(disp))
    result = pipeline.process(*images(), camera())
    # Columns 0..9 would match left of the right image (x - d < 0).
    assert np.isnan(result.disparity[:, :10]).all()
    assert np.isfinite(result.disparity[2:, 10:]).all()
    assert np.isnan(result.disparity[0, 40]) and np.isnan(result.disparity[1, 41])
    assert np.isnan(result.depth[0, 40]) and np.isnan(result.points[1, 41]).all()

    pipeline.update_config(remove_invisible=False)
    result = pipeline.process(*images(), camera())
    assert np.isfinite(result.disparity[:, :10]).all()


def test_principal_point_offset_is_taken_out_of_the_disparity():
    # Verged/offset rectification: d_msg = x_l - x_r - (cx_l - cx_r), Z = f T / d_msg.
    disp = np.full((H, W), 12.0, np.float32)
    pipeline = StereoPipeline(OracleBackend(disp), PipelineConfig(remove_invisible=False))
    result = pipeline.process(*images(), camera(cx_right=29.5))
    np.testing.assert_allclose(result.disparity, 10.0)
    np.testing.assert_allclose(result.depth, 50.0 * 0.1 / 10.0, rtol=1e-6)


def test_z_range_drops_depth_and_points_but_keeps_disparity():
    disp = ramp()
    depth = 5.0 / disp
    z_far = float(np.median(depth))
    pipeline = StereoPipeline(OracleBackend(disp),
                              PipelineConfig(z_far=z_far, remove_invisible=False))
    result = pipeline.process(*images(), camera())
    far = depth > z_far * (1 + 1e-6)
    assert np.isnan(result.depth[far]).all() and np.isnan(result.points[far]).all()
    assert np.isfinite(result.depth[depth < z_far * (1 - 1e-6)]).all()
    assert np.isfinite(result.disparity).all()


def test_only_requested_outputs_are_computed():
    pipeline = StereoPipeline(OracleBackend(ramp()))
    result = pipeline.process(*images(), camera(), want_depth=False, want_points=False)
    assert result.depth is None and result.points is None
    result = pipeline.process(*images(), camera(), want_depth=False, want_points=True)
    assert result.depth is None and result.points.shape == (H, W, 3)


@pytest.mark.parametrize('change, message', [
    ({'scale': 0.0}, 'scale'),
    ({'scale': 1.5}, 'scale'),
    ({'z_near': -1.0}, 'z_near'),
    ({'z_near': 5.0, 'z_far': 2.0}, 'z_far'),
])
def test_invalid_settings_are_rejected_with_the_reason(change, message):
    pipeline = StereoPipeline(OracleBackend(ramp()))
    with pytest.raises(ValueError, match=message):
        pipeline.update_config(**change)
    assert pipeline.config == PipelineConfig()  # unchanged


def test_bad_pairs_are_rejected_with_what_to_do():
    pipeline = StereoPipeline(OracleBackend(ramp()))
    left, right = images()
    # The backend's own pair check runs first (every backend's, through the pipeline).
    with pytest.raises(ValueError, match=r'oracle: left and right images differ in size: '
                       r'\(3, 48, 64\) vs \(3, 48, 32\)'):
        pipeline.process(left, right[:, :32], camera())
    with pytest.raises(ValueError, match='CameraInfo'):
        pipeline.process(left[:40], right[:40], camera())
    with pytest.raises(ValueError, match='uint8 RGB'):
        pipeline.process(left[..., 0], right[..., 0], camera())


def test_backend_settings_travel_with_the_per_pair_snapshot():
    backend = OracleBackend(ramp())
    pipeline = StereoPipeline(backend, PipelineConfig(backend_options={'valid_iters': 4}))
    pipeline.process(*images(), camera())
    config = pipeline.update_config(valid_iters=8, hierarchical=True, scale=0.5)
    assert dict(config.backend_options) == {'valid_iters': 8, 'hierarchical': True}
    pipeline.process(*images(), camera())
    assert backend.options == [{'valid_iters': 4}, {'valid_iters': 8, 'hierarchical': True}]
    with pytest.raises(ValueError, match='valid_iters must be 0 to 100'):
        pipeline.update_config(valid_iters=-1)
    with pytest.raises(TypeError):  # the snapshot cannot be edited behind the pipeline's back
        pipeline.config.backend_options['valid_iters'] = 1


class InputRecorder(OracleBackend):
    """Keeps what the pipeline hands the backend."""

    def compute(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        self.inputs = (left.clone(), right.clone())
        return super().compute(left, right)


def test_tensor_images_are_taken_as_they_are():
    """uint8 tensors (a pair rectified on the device) give what the numpy pair gives."""
    left, right = images()
    right[10:20] = 7
    backend = InputRecorder(ramp())
    pipeline = StereoPipeline(backend)
    expected = pipeline.process(left, right, camera())
    numpy_inputs = backend.inputs
    result = pipeline.process(torch.from_numpy(left), torch.from_numpy(right), camera())
    for got, want in zip(backend.inputs, numpy_inputs):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    torch.testing.assert_close(got[:, 0, 0], torch.from_numpy(right[0, 0]).float())
    np.testing.assert_array_equal(result.depth, expected.depth)
    with pytest.raises(ValueError, match='uint8 RGB'):
        pipeline.process(torch.from_numpy(left).float(), torch.from_numpy(right), camera())


def test_a_batch_of_several_cameras_keeps_each_cameras_geometry():
    """Two cameras of one size in one batch: one backend call, each pair its own calibration."""
    backend = OracleBackend(ramp())
    pipeline = StereoPipeline(backend)
    near = camera()
    far = StereoCamera(width=W, height=H, fx=80.0, fy=80.0, cx=30.0, cy=20.0, baseline=0.25,
                       cx_right=28.0)
    calls = []
    original = backend.compute_batch
    backend.compute_batch = lambda *a, **k: calls.append(a[0].shape) or original(*a, **k)
    results = pipeline.process_batch([images(), images()], [near, far])
    assert calls == [(2, 3, H, W)], 'one batch through the backend'
    for result, cam in zip(results, (near, far)):
        doffs = cam.cx - (cam.cx if cam.cx_right is None else cam.cx_right)
        disparity = ramp() - doffs  # DisparityImage convention, by hand
        valid = np.isfinite(result.disparity)
        np.testing.assert_allclose(result.disparity[valid], disparity[valid], rtol=1e-6)
        np.testing.assert_allclose(result.depth[valid], cam.fx * cam.baseline / disparity[valid],
                                   rtol=1e-5)
        u = np.arange(W)[None, :].repeat(H, 0)
        np.testing.assert_allclose(result.points[..., 0][valid],
                                   ((u - cam.cx) * result.depth / cam.fx)[valid], rtol=1e-4,
                                   atol=1e-6)


def test_a_batch_refuses_mixed_sizes_and_camera_count():
    pipeline = StereoPipeline(OracleBackend(ramp()))
    other = StereoCamera(width=W // 2, height=H, fx=50.0, fy=50.0, cx=15.5, cy=23.5,
                         baseline=0.1)
    with pytest.raises(ValueError, match='one size'):
        pipeline.process_batch([images(), images()], [camera(), other])
    with pytest.raises(ValueError, match='2 pairs but 1 cameras'):
        pipeline.process_batch([images(), images()], [camera()])

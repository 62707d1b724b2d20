"""The pipeline's trust stages: left-right check, confidence, flying pixels, denoising, and why.

Backends of known output (the truth is built in) and SGBM on generated scenes (the ray caster
knows depth and occlusion) say what each stage must drop; every expectation is computed here
from that truth, not by the code under test.
"""
import math

import numpy as np
import pytest
import torch
from scipy import ndimage
from scipy.spatial import cKDTree
from test_pipeline import OracleBackend

from foundation_stereo_ros.backends.base import DisparityBackend
from foundation_stereo_ros.backends.sgbm import SgbmBackend
from foundation_stereo_ros.camera import StereoCamera
from foundation_stereo_ros.empty_output import STAGES
from foundation_stereo_ros.pipeline import PipelineConfig, StereoPipeline
from foundation_stereo_ros.synthetic.scenes import make_scene

W, H = 64, 48
D = 10.0  # the two-view oracle's constant left disparity


def camera() -> StereoCamera:
    return StereoCamera(width=W, height=H, fx=50.0, fy=50.0, cx=31.5, cy=23.5, baseline=0.1)


def pair() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    left = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    return left, left.copy()


class TwoViewOracle(DisparityBackend):
    """Known left and right view disparities and a known confidence, batch by batch.

    The pipeline's left-right check sends the mirrored pairs as the second half of the
    batch; the oracle answers them with the right view's disparity, mirrored.
    """

    name = 'oracle'
    device = torch.device('cpu')
    delta_d = 0.25
    max_disparity = 64.0
    provides_confidence = True

    def __init__(self, right_view: np.ndarray, confidence: np.ndarray) -> None:
        self.left_view = torch.full((H, W), D)
        self.right_view = torch.from_numpy(right_view.astype(np.float32))
        self.confidence = torch.from_numpy(confidence.astype(np.float32))
        self.batches = []  # (batch size, with confidence)

    def compute(self, left, right, **options):
        raise AssertionError('the pipeline runs batches')

    def compute_batch(self, left, right, **options):
        return self.compute_batch_with_confidence(left, right, record=False)[0]

    def compute_batch_with_confidence(self, left, right, record=True, **options):
        self.batches.append((left.shape[0], record))
        half = left.shape[0] // 2 if left.shape[0] > 1 else 1
        disparities = [self.left_view] * half + [self.right_view.flip(-1)] * (
            left.shape[0] - half)
        return torch.stack(disparities), torch.stack([self.confidence] * left.shape[0])


def right_view_and_confidence() -> tuple[np.ndarray, np.ndarray]:
    right_view = np.full((H, W), D, np.float32)
    right_view[:, 20:30] = D + 0.5     # half a pixel off: kept, agreement 0.5
    right_view[:, 40:50] = D + 3.0     # 3 px off: dropped
    right_view[5:8, :] = np.nan        # no right-view estimate: dropped
    confidence = np.tile(np.linspace(0.0, 1.0, W, dtype=np.float32), (H, 1))
    return right_view, confidence


def expected_agreement(right_view: np.ndarray, max_diff: float) -> tuple[np.ndarray, np.ndarray]:
    """Keep and agreement from the definition, for a constant left disparity D."""
    x_right = np.arange(W) - D                     # whole pixels: no rounding question
    inside = x_right >= -0.5
    diff = np.full((H, W), np.inf)
    cols = np.nonzero(inside)[0]
    diff[:, cols] = np.abs(D - right_view[:, x_right[cols].astype(int)])
    diff[~np.isfinite(diff)] = np.inf
    return diff <= max_diff, np.clip(1.0 - diff / max_diff, 0.0, 1.0)


def test_left_right_check_runs_one_batch_of_two_and_drops_the_disagreeing_pixels():
    right_view, confidence = right_view_and_confidence()
    backend = TwoViewOracle(right_view, confidence)
    pipeline = StereoPipeline(backend, PipelineConfig(left_right_check=True))
    result = pipeline.process(*pair(), camera(), want_confidence=True)
    assert backend.batches == [(2, True)]
    keep, agreement = expected_agreement(right_view, 1.0)
    visible = np.arange(W)[None, :].repeat(H, 0) >= D  # x - d >= 0: inside the right image
    np.testing.assert_array_equal(np.isfinite(result.disparity), keep & visible)
    np.testing.assert_array_equal(np.isfinite(result.depth), keep & visible)
    assert np.isnan(result.points[~(keep & visible)]).all()
    np.testing.assert_allclose(result.disparity[keep & visible], D)
    # Confidence: the network's times the agreement, 0 where the disparity is invalid.
    np.testing.assert_allclose(result.confidence, np.where(visible, confidence * agreement, 0),
                               atol=1e-6)
    assert result.confidence.dtype == np.float32 and result.confidence.shape == (H, W)
    # Shares, counted in stage order: remove_invisible first, then the check.
    assert result.removed['invalid'] == pytest.approx((~visible).mean())
    assert result.removed['left_right'] == pytest.approx((visible & ~keep).mean())
    assert result.valid_share == pytest.approx((keep & visible).mean())
    assert list(result.removed) == list(STAGES)

    # A wider tolerance (at runtime) keeps the 3 px disagreement.
    pipeline.update_config(left_right_max_diff=4.0)
    result = pipeline.process(*pair(), camera())
    keep, _ = expected_agreement(right_view, 4.0)
    np.testing.assert_array_equal(np.isfinite(result.disparity), keep & visible)
    assert result.confidence is None and backend.batches[-1] == (2, False)


def test_confidence_threshold_drops_the_unsure_pixels_everywhere_and_changes_at_runtime():
    right_view, confidence = right_view_and_confidence()
    backend = TwoViewOracle(right_view, confidence)
    pipeline = StereoPipeline(backend, PipelineConfig(remove_invisible=False))
    result = pipeline.process(*pair(), camera())
    # Not asked for, no threshold: the backend's plain path, no confidence computed.
    assert backend.batches == [(1, False)] and result.confidence is None
    assert np.isfinite(result.disparity).all()

    pipeline.update_config(confidence_threshold=0.25)
    result = pipeline.process(*pair(), camera())
    assert backend.batches[-1] == (1, True)   # the threshold needs it
    unsure = confidence < 0.25
    assert np.isnan(result.disparity[unsure]).all()
    assert np.isfinite(result.disparity[~unsure]).all()
    assert np.isnan(result.depth[unsure]).all() and np.isnan(result.points[unsure]).all()
    assert result.removed['confidence'] == pytest.approx(unsure.mean())
    assert result.confidence is None  # used for the threshold, not downloaded


def test_confidence_at_camera_resolution_when_the_backend_runs_smaller():
    right_view, confidence = right_view_and_confidence()

    class Shrinking(TwoViewOracle):
        def compute_batch_with_confidence(self, left, right, record=True, **options):
            self.batches.append((left.shape[0], record))
            h, w = left.shape[-2:]
            grid = torch.linspace(0.0, 1.0, w).expand(left.shape[0], h, w).contiguous()
            return torch.full((left.shape[0], h, w), D * w / W), grid

    pipeline = StereoPipeline(Shrinking(right_view, confidence),
                              PipelineConfig(scale=0.5, remove_invisible=False))
    result = pipeline.process(*pair(), camera(), want_confidence=True)
    assert result.confidence.shape == (H, W)
    assert 0.0 <= result.confidence.min() and result.confidence.max() <= 1.0
    # A left-to-right ramp stays a ramp.
    assert (np.diff(result.confidence[H // 2]) >= -1e-6).all()


@pytest.fixture(scope='module')
def sgbm_scenes():
    return [make_scene(320, 240, seed=seed, noise=1.0) for seed in (0, 1)]


def test_left_right_check_with_sgbm_drops_occluded_pixels_and_gives_a_confidence(sgbm_scenes):
    plain = StereoPipeline(SgbmBackend(num_disparities=64))
    checked = StereoPipeline(SgbmBackend(num_disparities=64),
                             PipelineConfig(left_right_check=True))
    hidden = []
    for scene in sgbm_scenes:
        before = plain.process(scene.left, scene.right, scene.camera, want_confidence=True)
        after = checked.process(scene.left, scene.right, scene.camera, want_confidence=True)
        assert before.confidence is None
        assert before.notices[0][0] == 'no_confidence' and 'left_right_check' in \
            before.notices[0][1]
        # The ray caster knows which left pixels the right camera cannot see.
        occluded = scene.occluded
        hidden_before = np.isfinite(before.disparity)[occluded].mean()
        hidden_after = np.isfinite(after.disparity)[occluded].mean()
        hidden.append((hidden_before, hidden_after))
        correct = np.isfinite(before.disparity) & ~occluded & (
            np.abs(before.disparity - scene.disparity) <= 1.0)
        lost = (correct & ~np.isfinite(after.disparity)).sum() / correct.sum()
        assert lost < 0.05, lost
        # It only removes: kept pixels keep their disparity.
        kept = np.isfinite(after.disparity)
        assert not (kept & ~np.isfinite(before.disparity)).any()
        np.testing.assert_array_equal(after.disparity[kept], before.disparity[kept])
        share = (np.isfinite(before.disparity) & ~kept).mean()
        assert after.removed['left_right'] == pytest.approx(share, abs=1e-6)
        # SGBM's confidence is the agreement: pixels it trusts are more often right.
        conf = after.confidence
        assert conf.shape == scene.disparity.shape and 0.0 <= conf.min() and conf.max() <= 1.0
        assert (conf[~kept] == 0.0).all()
        error = np.abs(after.disparity - scene.disparity)
        sure, unsure = kept & (conf >= 0.9), kept & (conf < 0.5)
        assert (error[sure] > 1.0).mean() < (error[unsure] > 1.0).mean()
    # Measured: 0.27 -> 0.08 and 0.18 -> 0.11 of the occluded pixels keep an estimate.
    before, after = np.mean(hidden, axis=0)
    assert after < 0.6 * before, hidden


def boundary_mask(depth: np.ndarray, rtol: float = 0.05, size: int = 7) -> np.ndarray:
    """Pixels within a few pixels of a true depth discontinuity."""
    spread = ndimage.maximum_filter(depth, size) - ndimage.minimum_filter(depth, size)
    return spread > rtol * depth


def test_edge_filter_removes_the_flying_pixels_of_an_upsampled_disparity():
    # At scale 0.5 the disparity is upsampled to camera resolution: edges get bridged.
    scene = make_scene(192, 144, seed=4)
    pipeline = StereoPipeline(OracleBackend(scene.disparity),
                              PipelineConfig(scale=0.5, remove_invisible=False))
    before = pipeline.process(scene.left, scene.right, scene.camera)
    pipeline.update_config(edge_rtol=0.04)
    after = pipeline.process(scene.left, scene.right, scene.camera)

    off = np.abs(before.depth - scene.depth) > 0.05 * scene.depth  # NaN compares False
    near = boundary_mask(scene.depth)
    valid_before = np.isfinite(before.depth)
    valid_after = np.isfinite(after.depth)
    flying_before = (off & valid_before & near).sum() / (valid_before & near).sum()
    flying_after = (off & valid_after & near).sum() / max((valid_after & near).sum(), 1)
    assert flying_before > 0.1, flying_before  # the upsampling does bridge the edges
    assert flying_after < 0.3 * flying_before, (flying_before, flying_after)
    correct = valid_before & ~off
    lost = (correct & ~valid_after).sum() / correct.sum()
    assert lost < 0.1, lost
    # Dropped from every output, and counted.
    dropped = valid_before & ~valid_after
    assert np.isnan(after.disparity[dropped]).all() and np.isnan(after.points[dropped]).all()
    assert after.removed['edges'] == pytest.approx(dropped.mean())


def test_denoising_drops_isolated_points_and_keeps_the_surfaces():
    scene = make_scene(128, 96, seed=2)
    rng = np.random.default_rng(1)
    disparity = scene.disparity.copy()
    # Isolated wrong pixels: each alone at a depth far from everything around it. fx is 115 px:
    # a point at 4 m has some 30 neighbours within 0.2 m, an isolated one none.
    rows, cols = rng.integers(4, 92, 40), rng.integers(30, 124, 40)
    disparity[rows, cols] = disparity[rows, cols] * rng.uniform(1.6, 2.5, 40)
    outliers = np.zeros(disparity.shape, bool)
    outliers[rows, cols] = True
    pipeline = StereoPipeline(OracleBackend(disparity),
                              PipelineConfig(remove_invisible=False, denoise_radius=0.2,
                                             denoise_min_neighbors=8))
    result = pipeline.process(scene.left, scene.right, scene.camera, want_depth=False)
    valid = np.isfinite(result.points).all(-1)
    assert result.depth is None  # computed for the filter, not returned
    # The oracle: an exact 3-D radius count over the cloud the filter was given. The image
    # window search finds no more neighbours than it, so every outlier it isolates is dropped
    # (one lands in front of another surface and has real neighbours there).
    cam = scene.camera
    z = cam.fx * cam.baseline / disparity
    v, u = np.mgrid[:z.shape[0], :z.shape[1]]
    cloud = np.stack([(u - cam.cx) * z / cam.fx, (v - cam.cy) * z / cam.fy, z], -1)
    tree = cKDTree(cloud.reshape(-1, 3))
    counts = np.array([len(tree.query_ball_point(cloud[r, c], 0.2)) - 1
                       for r, c in zip(rows, cols)])
    assert (counts < 8).sum() >= 35
    assert not valid[rows[counts < 8], cols[counts < 8]].any()
    inliers = ~outliers & ~boundary_mask(scene.depth)
    assert valid[inliers].mean() > 0.95
    assert result.removed['denoise'] == pytest.approx((~valid).mean())
    assert np.isnan(result.disparity[~valid]).all()


def test_every_stage_is_counted_once_in_order():
    scene = make_scene(128, 96, seed=1)
    disparity = scene.disparity.copy()
    disparity[:10] = np.nan          # invalid
    disparity[10:20] = 0.05          # 345 m: beyond z_far
    pipeline = StereoPipeline(OracleBackend(disparity),
                              PipelineConfig(remove_invisible=False, z_far=50.0, edge_rtol=0.04))
    result = pipeline.process(scene.left, scene.right, scene.camera)
    assert result.removed['invalid'] == pytest.approx(10 / 96)
    assert result.removed['z_range'] == pytest.approx(10 / 96)
    assert math.isclose(sum(result.removed.values()) + result.valid_share, 1.0, abs_tol=1e-6)
    assert result.valid_share == pytest.approx(np.isfinite(result.depth).mean())
    # Beyond z_far: depth and points only; the disparity stays.
    assert np.isfinite(result.disparity[10:20]).all() and np.isnan(result.depth[10:20]).all()


def test_a_baseline_in_millimetres_is_named_as_the_likely_cause():
    scene = make_scene(96, 64, seed=0)
    wrong = StereoCamera(width=96, height=64, fx=scene.camera.fx, fy=scene.camera.fy,
                         cx=scene.camera.cx, cy=scene.camera.cy, baseline=120.0)
    pipeline = StereoPipeline(OracleBackend(scene.disparity),
                              PipelineConfig(remove_invisible=False))
    result = pipeline.process(scene.left, scene.right, wrong)
    assert result.valid_share == 0.0 and result.removed['z_range'] == pytest.approx(1.0)
    (kind, message), = result.notices
    assert kind == 'empty_z_range'
    assert 'z_far=100 m' in message and 'millimetres' in message and '120 m' in message
    good = pipeline.process(scene.left, scene.right, scene.camera)
    assert good.notices == [] and good.valid_share > 0.99


@pytest.mark.parametrize('backend_name, fragment', [
    ('foundation_stereo', "checkpoint's weights"),
    ('onnx', 'check the model'),
    ('sgbm', 'rectified'),
])
def test_no_valid_disparity_names_what_to_check_per_backend(backend_name, fragment):
    backend = OracleBackend(np.full((H, W), np.nan, np.float32))
    backend.name = backend_name
    result = StereoPipeline(backend).process(*pair(), camera())
    (kind, message), = result.notices
    assert kind == 'empty_invalid' and fragment in message
    assert 'NaN for 100.0%' in message


def test_filters_set_too_tight_are_named():
    scene = make_scene(96, 64, seed=0)
    pipeline = StereoPipeline(OracleBackend(scene.disparity),
                              PipelineConfig(remove_invisible=False, denoise_radius=0.001,
                                             denoise_min_neighbors=50))
    (kind, message), = pipeline.process(scene.left, scene.right, scene.camera).notices
    assert kind == 'empty_denoise' and 'denoise_min_neighbors=50' in message


def test_left_right_check_on_a_batch_and_at_a_smaller_run_size():
    right_view, confidence = right_view_and_confidence()
    backend = TwoViewOracle(right_view, confidence)
    pipeline = StereoPipeline(backend, PipelineConfig(left_right_check=True))
    first, second = pipeline.process_batch([pair(), pair()], camera(), want_confidence=True)
    assert backend.batches == [(4, True)]  # two pairs and their two mirrored pairs
    np.testing.assert_array_equal(first.disparity, second.disparity)
    np.testing.assert_array_equal(first.confidence, second.confidence)
    keep, _ = expected_agreement(right_view, 1.0)
    visible = np.arange(W)[None, :].repeat(H, 0) >= D
    np.testing.assert_array_equal(np.isfinite(first.disparity), keep & visible)

    class Consistent(TwoViewOracle):
        """Both views agree at any run size: D camera pixels, scaled with the width."""

        def compute_batch_with_confidence(self, left, right, record=True, **options):
            self.batches.append(tuple(left.shape))
            return torch.full((left.shape[0], *left.shape[-2:]), D * left.shape[-1] / W), None

    backend = Consistent(right_view, confidence)
    pipeline = StereoPipeline(backend, PipelineConfig(left_right_check=True, scale=0.5))
    result = pipeline.process(*pair(), camera())
    assert backend.batches == [(2, 3, H // 2, W // 2)]
    # Kept wherever both views see the point (x >= D), one pixel of blending aside.
    assert np.isfinite(result.disparity[:, int(D) + 2:]).all()
    assert not np.isfinite(result.disparity[:, :int(D) - 1]).any()
    np.testing.assert_allclose(result.disparity[:, int(D) + 2:], D, rtol=1e-5)

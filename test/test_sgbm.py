"""SGBM backend and the backend registry, scored against generated scenes' exact ground truth."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from foundation_stereo_ros.backends import BACKENDS, DisparityBackend, make_backend
from foundation_stereo_ros.backends.sgbm import SgbmBackend
from foundation_stereo_ros.synthetic.scenes import make_scene

# 320x240 scenes: fx = 288 px, baseline 0.12 m, depth >= 0.8 m, so disparities stay below 44 px.
SEEDS = (0, 1, 2, 3)


def tensors(scene) -> tuple[torch.Tensor, torch.Tensor]:
    return tuple(torch.from_numpy(image).permute(2, 0, 1).float()
                 for image in (scene.left, scene.right))


@pytest.fixture(scope='module')
def scenes():
    return [make_scene(320, 240, seed=seed, noise=1.0) for seed in SEEDS]


@pytest.fixture(scope='module')
def results(scenes):
    """Scores per option set (each backend run once per scene)."""
    option_sets = {
        'default': {'num_disparities': 64},
    }
    out = {}
    for key, options in option_sets.items():
        backend = SgbmBackend(**options)
        out[key] = []
        for scene in scenes:
            disparity = backend.compute(*tensors(scene))
            out[key].append((disparity, scene.score(disparity.numpy())))
    return out


def test_output_is_float32_disparity_of_input_size_with_nan_for_invalid(scenes, results):
    backend = SgbmBackend(num_disparities=64)
    for disparity, _ in results['default']:
        assert disparity.shape == (240, 320) and disparity.dtype == torch.float32
        assert disparity.device == backend.device == torch.device('cpu')
        values = disparity.numpy()
        finite = values[np.isfinite(values)]
        assert np.isnan(values).any()  # occlusions at least
        assert not np.isinf(values).any()
        assert finite.min() >= backend.min_disparity
        assert finite.max() < backend.max_disparity
        # Fixed point with 4 fractional bits.
        np.testing.assert_array_equal(finite * 16, np.round(finite * 16))


@pytest.mark.parametrize('index', range(len(SEEDS)))
def test_disparity_matches_ground_truth_on_each_scene(results, index):
    # Measured (320x240, noise 1): coverage 0.975-0.993, bad-1px 0.011-0.020, bad-3px
    # 0.006-0.011, mean abs error 0.15-0.26 px.
    figures = results['default'][index][1]
    assert figures['coverage'] > 0.95, figures
    assert figures['bad1'] < 0.035, figures
    assert figures['bad3'] < 0.02, figures
    assert figures['mae'] < 0.35, figures


def test_left_padding_fills_the_band_opencv_leaves_empty(scenes, results):
    band = np.s_[:, 8:64]  # beyond the first columns, whose points leave the right image
    # OpenCV alone leaves this band (x < num_disparities) empty.
    for scene, (padded, _) in zip(scenes, results['default']):
        visible = ~scene.occluded[band]
        assert np.isfinite(padded.numpy()[band])[visible].mean() > 0.85


def test_matches_outside_the_right_image_are_dropped(scenes, results):
    for disparity, _ in results['default']:
        x_right = np.arange(320)[None, :] - disparity.numpy()
        assert not (x_right < -0.5).any()


def test_disparity_includes_the_principal_point_offset():
    """Backends return x_left - x_right; with doffs that is the ground truth plus doffs."""
    scene = make_scene(320, 240, seed=5, doffs=6.0)
    disparity = SgbmBackend(num_disparities=64).compute(*tensors(scene)).numpy()
    both = np.isfinite(disparity) & ~scene.occluded
    error = disparity[both] - (scene.disparity[both] + 6.0)
    assert np.median(np.abs(error)) < 0.25
    assert np.mean(np.abs(error) > 1.0) < 0.05


def test_other_modes_also_work(scenes):
    scene = scenes[0]
    for options in ({'sgbm_mode': 'sgbm', 'block_size': 3}, {'sgbm_mode': 'hh4'}):
        disparity = SgbmBackend(num_disparities=64, **options).compute(*tensors(scene))
        figures = scene.score(disparity.numpy())
        assert figures['coverage'] > 0.9 and figures['bad1'] < 0.05, (options, figures)


def test_attributes_and_describe():
    backend = SgbmBackend(num_disparities=96, min_disparity=4, block_size=7)
    assert isinstance(backend, DisparityBackend)
    assert backend.name == 'sgbm'
    assert backend.delta_d == 1 / 16
    assert backend.min_disparity == 4 and backend.max_disparity == 100
    info = backend.describe()
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in info.items())
    assert info['backend'] == 'sgbm' and info['device'] == 'cpu'
    assert info['num_disparities'] == '96' and info['block_size'] == '7'
    assert info['P1'] == str(8 * 49) and info['P2'] == str(32 * 49)


@pytest.mark.parametrize('options, message', [
    ({'num_disparities': 100}, 'multiple of 16'),
    ({'num_disparities': 0}, 'multiple of 16'),
    ({'num_disparities': 64.5}, 'integer'),
    ({'block_size': 4}, 'odd'),
    ({'block_size': -3}, 'odd'),
    ({'sgbm_mode': 'fast'}, 'sgbm_3way'),
    ({'uniqueness_ratio': 150}, 'uniqueness_ratio'),
    ({'speckle_range': -1}, 'speckle'),
    ({'min_disparity': '0'}, 'min_disparity'),
])
def test_bad_options_raise_clear_errors(options, message):
    with pytest.raises(ValueError, match=message):
        SgbmBackend(**options)


@pytest.mark.parametrize('left, right, message', [
    (torch.zeros(3, 8, 16), torch.zeros(3, 8, 17), 'differ in size'),
    (torch.zeros(8, 16, 3), torch.zeros(8, 16, 3), r'\(3, H, W\)'),
    (torch.zeros(3, 8, 16, dtype=torch.uint8), torch.zeros(3, 8, 16, dtype=torch.uint8),
     'float32'),
    (np.zeros((3, 8, 16), np.float32), np.zeros((3, 8, 16), np.float32), 'torch.Tensor'),
])
def test_bad_inputs_raise_clear_errors(left, right, message):
    # The pipeline calls check_pair before compute (test_pipeline checks that it does).
    expected = TypeError if isinstance(left, np.ndarray) else ValueError
    with pytest.raises(expected, match=message):
        SgbmBackend(num_disparities=16).check_pair(left, right)


def test_registry_builds_sgbm_with_options():
    backend = make_backend('sgbm', num_disparities=32, block_size=3)
    assert isinstance(backend, SgbmBackend)
    assert backend.num_disparities == 32 and backend.block_size == 3
    assert set(BACKENDS) == {'sgbm', 'foundation_stereo', 'onnx'}


def test_registry_rejects_unknown_names_and_lists_valid_ones():
    with pytest.raises(ValueError, match='foundation_stereo, onnx, sgbm'):
        make_backend('raft')


def test_registry_sgbm_path_never_imports_the_network():
    code = ('import sys\n'
            'from foundation_stereo_ros.backends import make_backend\n'
            'make_backend("sgbm")\n'
            'loaded = [m for m in sys.modules if m.startswith("foundation_stereo_ros.")]\n'
            'assert "foundation_stereo_ros.backends.foundation_stereo" not in loaded, loaded\n'
            'assert not any(m.startswith("foundation_stereo_ros.model") for m in loaded), '
            'loaded\n')
    root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [root, os.environ.get('PYTHONPATH')])))
    subprocess.run([sys.executable, '-c', code], check=True, cwd=root, env=env)

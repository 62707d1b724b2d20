"""The FoundationStereo backend and the pipeline over it, on a seeded checkpoint."""
import numpy as np
import pytest
import torch
from checkpoints import write_seeded_checkpoint
from conftest import DATA_DIR

from foundation_stereo_ros.backends import make_backend
from foundation_stereo_ros.backends.foundation_stereo import resolve_device
from foundation_stereo_ros.camera import StereoCamera
from foundation_stereo_ros.pipeline import PipelineConfig, StereoPipeline

GOLDEN = np.load(DATA_DIR / 'golden_model_synth.npz')


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    return write_seeded_checkpoint(tmp_path_factory.mktemp('seeded') / 'vits')


@pytest.fixture(scope='module')
def backend(checkpoint):
    return make_backend('foundation_stereo', checkpoint=str(checkpoint), device='cpu',
                        valid_iters=2)


def pair_tensors():
    return (torch.from_numpy(GOLDEN['left'][0]), torch.from_numpy(GOLDEN['right'][0]))


def test_backend_gives_the_official_numbers(backend):
    disp = backend.compute(*pair_tensors())
    assert disp.shape == (64, 96) and disp.dtype == torch.float32
    np.testing.assert_allclose(disp.numpy(), GOLDEN['disp_test_iters2'][0, 0],
                               atol=2e-3, rtol=1e-5)
    assert backend.max_disparity == 416.0
    info = backend.describe()
    assert info['vit_size'] == 'vits' and info['valid_iters'] == '2'


def test_any_size_is_padded_inside_and_cropped_back(backend):
    left, right = pair_tensors()
    disp = backend.compute(left[:, :50, :70], right[:, :50, :70])
    assert disp.shape == (50, 70) and torch.isfinite(disp).all()


def test_hierarchical_matches_the_model_method(backend):
    left, right = pair_tensors()
    backend.hierarchical = True
    try:
        disp = backend.compute(left, right)
    finally:
        backend.hierarchical = False
    with torch.inference_mode():
        expected = backend.model.run_hierarchical(left[None], right[None], iters=2,
                                                  small_ratio=0.5)
    torch.testing.assert_close(disp, expected[0, 0])


def test_pipeline_over_the_network_matches_the_model(backend):
    left = GOLDEN['left'][0].transpose(1, 2, 0).astype(np.uint8)
    right = GOLDEN['right'][0].transpose(1, 2, 0).astype(np.uint8)
    camera = StereoCamera(width=96, height=64, fx=80.0, fy=80.0, cx=47.5, cy=31.5,
                          baseline=0.1)
    pipeline = StereoPipeline(backend, PipelineConfig(remove_invisible=False))
    result = pipeline.process(left, right, camera)
    expected = GOLDEN['disp_test_iters2'][0, 0]
    valid = expected > 0
    np.testing.assert_allclose(result.disparity[valid], expected[valid], atol=2e-3, rtol=1e-5)
    np.testing.assert_allclose(result.depth[valid], 8.0 / expected[valid], rtol=1e-4)
    assert result.max_disparity == 416.0


@pytest.mark.parametrize('options, message', [
    ({'precision': 'int8'}, 'precision must be one of auto, fp32'),
    ({'warmup_width': 64}, 'warmup_width and warmup_height go together'),
])
def test_bad_options_say_what_to_do(checkpoint, options, message):
    with pytest.raises(ValueError, match=message):
        make_backend('foundation_stereo', checkpoint=str(checkpoint), **options)


def test_device_resolution():
    assert resolve_device('cpu') == torch.device('cpu')
    assert resolve_device('auto').type == ('cuda' if torch.cuda.is_available() else 'cpu')
    with pytest.raises(ValueError, match="'auto', 'cuda'"):
        resolve_device('tpu')
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match='no CUDA GPU'):
            resolve_device('cuda')

"""The PyTorch backend's speed modes on CPU: precision auto/fp16/bf16, compile, warm-up, uploads.

Every mode runs the official seeded checkpoint (test/checkpoints.py) on the golden pair, whose
fp32 disparity the official code computed. The one real torch.compile test is marked ``slow``
(deselect with ``-m 'not slow'``): inductor generates and builds C++ for the update step.
Measured on a shared 2-core machine: 103 s of CPU with an empty inductor cache, 31 s with a
warm one (/tmp/torchinductor_$USER); every other test here takes seconds.
"""
import logging

import numpy as np
import pytest
import torch
from checkpoints import write_seeded_checkpoint
from conftest import DATA_DIR

from foundation_stereo_ros import settings
from foundation_stereo_ros.backends import compiled, make_backend
from foundation_stereo_ros.backends.device import (
    PRECISION_CHOICES,
    PRECISIONS,
    resolve_precision,
)
from foundation_stereo_ros.camera import StereoCamera
from foundation_stereo_ros.pipeline import PipelineConfig, StereoPipeline, _Uploader

GOLDEN = np.load(DATA_DIR / 'golden_model_synth.npz')
FP32 = GOLDEN['disp_test_iters2'][0, 0]
LOGGER = 'foundation_stereo_ros.backends.foundation_stereo'


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    return str(write_seeded_checkpoint(tmp_path_factory.mktemp('seeded') / 'vits'))


def pair():
    return torch.from_numpy(GOLDEN['left'][0]), torch.from_numpy(GOLDEN['right'][0])


# -- precision ------------------------------------------------------------------------------

def test_auto_precision_is_fp16_on_cuda_and_fp32_on_cpu():
    assert resolve_precision('auto', torch.device('cuda', 0)) == 'fp16'
    assert resolve_precision('auto', torch.device('cpu')) == 'fp32'
    assert PRECISIONS['fp16'] is torch.float16 and PRECISIONS['fp32'] is None
    assert resolve_precision('bf16', torch.device('cpu')) == 'bf16'
    # The settings table offers exactly the device module's choices, auto first and default.
    assert settings.BY_NAME['precision'].choices == PRECISION_CHOICES
    assert settings.DEFAULTS['precision'] == 'auto' and PRECISION_CHOICES[0] == 'auto'


def test_default_backend_on_cpu_is_fp32_and_gives_the_official_numbers(checkpoint):
    backend = make_backend('foundation_stereo', checkpoint=checkpoint, device='cpu',
                           valid_iters=2)
    assert backend.precision == 'fp32' and backend.describe()['precision'] == 'fp32'
    np.testing.assert_allclose(backend.compute(*pair()).numpy(), FP32, atol=2e-3, rtol=1e-5)


@pytest.mark.parametrize('precision', ['fp16', 'bf16'])
def test_half_precisions_run_on_cpu_near_fp32(checkpoint, precision):
    backend = make_backend('foundation_stereo', checkpoint=checkpoint, device='cpu',
                           valid_iters=2, precision=precision)
    disp = backend.compute(*pair()).numpy()
    assert disp.dtype == np.float32 and np.isfinite(disp).all()
    error = np.abs(disp - FP32)
    # Autocast really ran (fp32 would match the golden to 2e-3 px) ...
    assert error.max() > 1e-2
    # ... and only rounding separates it from fp32: the seeded network's disparities are
    # 200-450 px; bf16 keeps 8 mantissa bits (0.4 %), fp16 11.
    assert np.median(error) < 0.01 * np.median(np.abs(FP32))


# -- compile --------------------------------------------------------------------------------

def test_compile_parts_per_device():
    assert compiled.compile_parts(torch.device('cpu')) == {'update_block': None}
    cuda = compiled.compile_parts(torch.device('cuda'))
    assert cuda['update_block'] == 'reduce-overhead'
    assert {'feature', 'cnet', 'cost_agg'} <= set(cuda)
    assert compiled.uses_cuda_graphs(torch.device('cuda'))
    assert not compiled.uses_cuda_graphs(torch.device('cpu'))


def test_size_changes_warm_up_again_and_say_so(checkpoint, monkeypatch, caplog):
    # The bookkeeping around compilation, with compilation itself left out (the slow test
    # below runs the real thing): warm-up at start, silence for the same size, a log line and
    # a warm-up for a new size.
    monkeypatch.setattr(compiled, 'compile_model', lambda model, device: ['update_block'])
    with caplog.at_level(logging.INFO, logger=LOGGER):
        backend = make_backend('foundation_stereo', checkpoint=checkpoint, device='cpu',
                               valid_iters=1, compile=True, warmup_width=96,
                               warmup_height=64)
    assert 'warmed up for 96x64' in caplog.text
    calls = []
    run = backend._run
    monkeypatch.setattr(backend, '_run', lambda *a: calls.append(a[0].shape) or run(*a))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=LOGGER):
        backend.compute(*pair())
        assert calls == [(1, 3, 64, 96)] and not caplog.text  # batched: (B, 3, H, W)
        left, right = pair()
        backend.compute(left[:, :, :64], right[:, :, :64])
    assert 'input size changed to 64x64' in caplog.text
    assert calls[1:] == [(1, 3, 64, 64), (1, 3, 64, 64)]  # warm-up, then the pair
    assert backend.describe()['compiled'] == 'update_block'


@pytest.mark.slow
def test_compiled_backend_matches_fp32(checkpoint, caplog):
    """Slow (inductor C++ build): 103 s of CPU cold, 31 s with a warm inductor cache."""
    with caplog.at_level(logging.INFO, logger=LOGGER):
        backend = make_backend('foundation_stereo', checkpoint=checkpoint, device='cpu',
                               valid_iters=2, compile=True, warmup_width=96,
                               warmup_height=64)
    assert 'compiled: update_block' in caplog.text
    assert backend.compiled_parts == ['update_block']
    disp = backend.compute(*pair())
    np.testing.assert_allclose(disp.numpy(), FP32, atol=5e-3, rtol=1e-5)


# -- uploads --------------------------------------------------------------------------------

def test_uploads_reuse_their_buffers_and_keep_the_values():
    upload = _Uploader(torch.device('cpu'))
    rng = np.random.default_rng(0)
    first = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)
    out = upload('left', first)
    np.testing.assert_array_equal(out.numpy(), first.transpose(2, 0, 1).astype(np.float32))
    second = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)
    again = upload('left', second)
    assert again.data_ptr() == out.data_ptr()  # same buffer, no allocation per pair
    np.testing.assert_array_equal(again.numpy(), second.transpose(2, 0, 1))
    assert upload('right', first).data_ptr() != out.data_ptr()   # one buffer per slot
    assert upload('left', first[:3]).shape == (3, 3, 5)           # a new size, a new buffer


def test_pipeline_results_do_not_alias_the_reused_buffers():
    backend = make_backend('sgbm', num_disparities=16)
    pipeline = StereoPipeline(backend, PipelineConfig())
    rng = np.random.default_rng(1)
    camera = StereoCamera(width=48, height=32, fx=40.0, fy=40.0, cx=23.5, cy=15.5,
                          baseline=0.1)
    image = rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)
    first = pipeline.process(image, np.roll(image, -3, axis=1), camera)
    kept = first.disparity.copy()
    pipeline.process(image[::-1].copy(), image[::-1].copy(), camera)
    np.testing.assert_array_equal(first.disparity, kept)

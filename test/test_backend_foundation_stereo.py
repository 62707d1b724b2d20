"""The FoundationStereo backend and the pipeline over it, on a seeded checkpoint."""
import numpy as np
import pytest
import torch
from checkpoints import write_seeded_checkpoint
from conftest import DATA_DIR

from foundation_stereo_ros.backends import make_backend
from foundation_stereo_ros.backends.device import resolve_device
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


def test_padded_size_gives_the_official_numbers(backend, hiera_golden):
    # 120x200 is padded to 128x224 inside; the official demo pads and crops the same way.
    disp = backend.compute(hiera_golden['left'][0], hiera_golden['right'][0])
    assert disp.shape == (120, 200)
    np.testing.assert_allclose(disp.numpy(), hiera_golden['demo_disp'][0, 0].numpy(),
                               atol=2e-3, rtol=1e-5)


def test_hierarchical_gives_the_official_numbers(backend, hiera_golden):
    backend.hierarchical = True
    try:
        disp = backend.compute(hiera_golden['left'][0], hiera_golden['right'][0])
    finally:
        backend.hierarchical = False
    assert backend.small_ratio == 0.5 and disp.shape == (120, 200)
    np.testing.assert_allclose(disp.numpy(), hiera_golden['hiera_disp'][0, 0].numpy(),
                               atol=2e-3, rtol=1e-5)
    # The coarse pass really changes the result (else this would not test hierarchical).
    assert (hiera_golden['hiera_disp'] - hiera_golden['demo_disp']).abs().max() > 0.1


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


def cuda_devices(monkeypatch, count):
    """Make torch report ``count`` CUDA GPUs, whatever this machine has."""
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: count > 0)
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: count)


def test_auto_device_is_cpu_without_a_gpu_and_cuda_with_one(monkeypatch):
    cuda_devices(monkeypatch, 0)
    assert resolve_device('auto') == torch.device('cpu')
    assert resolve_device('cpu') == torch.device('cpu')
    cuda_devices(monkeypatch, 2)
    assert resolve_device('auto') == torch.device('cuda')
    assert resolve_device('cuda:1') == torch.device('cuda', 1)
    assert resolve_device('cpu') == torch.device('cpu')


@pytest.mark.parametrize('device', ['cuda', 'cuda:0', 'cuda:1'])
def test_cuda_without_a_gpu_says_what_to_do(monkeypatch, device):
    cuda_devices(monkeypatch, 0)
    with pytest.raises(ValueError, match=f"device '{device}' requested but torch sees no CUDA "
                                         "GPU.*use device 'cpu'"):
        resolve_device(device)


def test_cuda_index_beyond_the_gpus_is_refused(monkeypatch):
    cuda_devices(monkeypatch, 1)
    with pytest.raises(ValueError, match=r"torch sees 1 CUDA GPU\(s\) \(cuda:0 to cuda:0\)"):
        resolve_device('cuda:1')


@pytest.mark.parametrize('device', ['tpu', 'gpu', 'CPU', '', 'cuda:', 'cuda:x', 'cuda0',
                                    'cuda:-1', ' cpu'])
def test_bad_device_strings_are_refused(monkeypatch, device):
    cuda_devices(monkeypatch, 1)
    with pytest.raises(ValueError, match=f"device must be 'auto', 'cuda', 'cuda:N' or 'cpu', "
                                         f"got '{device}'"):
        resolve_device(device)


def test_confidence_comes_with_the_same_disparity_at_camera_size(backend, checkpoint):
    # 50x70 is padded to 64x96 inside: the confidence is cropped back as the disparity is.
    left, right = (t[:, :50, :70][None] for t in pair_tensors())
    assert backend.provides_confidence
    disp, conf = backend.compute_batch_with_confidence(left, right)
    assert torch.equal(disp, backend.compute_batch(left, right))
    assert conf.shape == (1, 50, 70) and conf.dtype == torch.float32
    assert conf.device == disp.device and conf.min() >= 0.0 and conf.max() <= 1.0
    # The network's own map on the padded pair, cropped as the official demo crops.
    from foundation_stereo_ros.model import InputPadder, load_checkpoint
    model, _ = load_checkpoint(str(checkpoint), device='cpu')
    padder = InputPadder(left.shape, divis_by=32)
    with torch.inference_mode():
        _, expected = model(*padder.pad(left, right), iters=2, test_mode=True, confidence=True)
    torch.testing.assert_close(conf, padder.unpad(expected)[:, 0], atol=1e-5, rtol=0)


def test_hierarchical_confidence_is_the_full_resolution_pass(backend):
    left, right = (t[None] for t in pair_tensors())
    seen = []
    plain_forward = backend.model.forward

    def recording_forward(*args, **kwargs):
        out = plain_forward(*args, **kwargs)
        seen.append((kwargs.get('confidence', False), out))
        return out

    backend.model.forward = recording_forward
    backend.hierarchical = True
    try:
        disp, conf = backend.compute_batch_with_confidence(left, right)
    finally:
        backend.hierarchical = False
        del backend.model.forward
    assert [asked for asked, _ in seen] == [False, True]   # only the second pass computes it
    assert torch.equal(disp, backend.compute_batch(left, right, hierarchical=True))
    # 64x96 needs no padding: the map is the full-resolution pass's own.
    torch.testing.assert_close(conf, seen[1][1][1][:, 0], atol=0, rtol=0)

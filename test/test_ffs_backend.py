"""The network backend on Fast-FoundationStereo checkpoints: family defaults and identity."""
import numpy as np
import pytest
import torch
from conftest import DATA_DIR, SHARED_REFERENCE
from ffs_fakes import TinyFFS, official_classes

from foundation_stereo_ros.backends import make_backend

CFFS = SHARED_REFERENCE / 'ffs' / 'cffs_like' / 'model_best_bp2_serialize.pth'


def test_family_default_iterations_and_identity(tmp_path):
    path = tmp_path / 'model_best_bp2_serialize.pth'
    with official_classes() as fakes:
        torch.save(TinyFFS(fakes).network('concat'), path)
    backend = make_backend('foundation_stereo', checkpoint=str(path), device='cpu',
                           valid_iters=None)
    assert backend.valid_iters == 8 and backend.max_disparity == 64.0
    info = backend.describe()
    assert info['family'] == 'fast_foundation_stereo'
    assert info['architecture'].startswith('Fast-FoundationStereo: features [40, 48, 64, 40]')
    left = torch.rand(3, 50, 70) * 255
    disp = backend.compute(left, torch.roll(left, -2, dims=-1), valid_iters=1)
    assert disp.shape == (50, 70) and torch.isfinite(disp).all()


@pytest.mark.skipif(not CFFS.is_file(), reason=f'FFS reference checkpoint not found at {CFFS}')
def test_cffs_like_backend_gives_the_official_numbers():
    backend = make_backend('foundation_stereo', checkpoint=str(CFFS), device='cpu')
    assert backend.valid_iters == 8 and backend.max_disparity == 192.0
    golden = np.load(DATA_DIR / 'golden_ffs_synth.npz')
    disp = backend.compute(torch.from_numpy(golden['left'][0]),
                           torch.from_numpy(golden['right'][0]), valid_iters=2)
    np.testing.assert_allclose(disp.numpy(), golden['disp_test_iters2'][0, 0], atol=2e-3,
                               rtol=1e-5)

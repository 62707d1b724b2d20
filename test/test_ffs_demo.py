"""End to end: the shared ``cffs_like`` FFS checkpoint (and its converted form) through the demo.

The demo pads the pair to multiples of 32, runs ``forward(iters=2, test_mode=True)`` and
crops back, exactly what the official ``demo_disp`` golden (120x200 demo crop) records.
"""
import cv2
import numpy as np
import pytest
from conftest import DATA_DIR, SHARED_REFERENCE

from foundation_stereo_ros.model.ffs.loader import save_converted
from foundation_stereo_ros.tools import demo

CFFS = SHARED_REFERENCE / 'ffs' / 'cffs_like' / 'model_best_bp2_serialize.pth'


@pytest.mark.skipif(not CFFS.is_file(), reason=f'FFS reference checkpoint not found at {CFFS}')
@pytest.mark.parametrize('form', ['serialized', 'converted folder'])
def test_cffs_like_checkpoint_runs_through_the_demo(tmp_path, capsys, form):
    checkpoint = CFFS
    if form == 'converted folder':   # what the README says to deploy: the file alone
        checkpoint = tmp_path / 'deploy'
        checkpoint.mkdir()
        save_converted(CFFS, checkpoint / 'c_ffs.safetensors')
    golden = np.load(DATA_DIR / 'golden_ffs_hiera.npz')
    for name in ('left', 'right'):
        rgb = golden[name][0].transpose(1, 2, 0).astype(np.uint8)
        cv2.imwrite(str(tmp_path / f'{name}.png'), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    (tmp_path / 'K.txt').write_text('100 0 100 0 100 60 0 0 1\n0.1\n')
    out = tmp_path / 'out'
    rc = demo.main([str(a) for a in (
        '--left', tmp_path / 'left.png', '--right', tmp_path / 'right.png',
        '--intrinsics', tmp_path / 'K.txt', '--backend', 'foundation_stereo',
        '--checkpoint', checkpoint, '--device', 'cpu', '--valid-iters', 2, '--z-far', 1000,
        '--out', out)])
    assert rc == 0, capsys.readouterr().err
    disparity = np.load(out / 'disparity.npy')
    expected = golden['demo_disp'][0, 0]
    valid = np.isfinite(disparity)
    assert valid.mean() > 0.5
    np.testing.assert_allclose(disparity[valid], expected[valid], atol=2e-3, rtol=1e-5)

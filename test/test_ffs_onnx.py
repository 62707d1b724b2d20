"""ONNX export of Fast-FoundationStereo checkpoints, checked with onnxruntime.

A tiny serialized network of other widths (always available) is exported through the CLI;
the shared ``cffs_like`` checkpoint (when present) is exported and compared with the golden
of the official code.
"""
import numpy as np
import onnxruntime as ort
import pytest
import torch
from conftest import DATA_DIR, SHARED_REFERENCE
from ffs_fakes import TinyFFS, official_classes

from foundation_stereo_ros.model import load_checkpoint
from foundation_stereo_ros.model.onnx_export import export_onnx
from foundation_stereo_ros.model.onnx_export import main as export_main

CFFS = SHARED_REFERENCE / 'ffs' / 'cffs_like' / 'model_best_bp2_serialize.pth'


def run_onnx(path, left, right, outputs=('disp',)):
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    out = session.run(list(outputs), {'left': left, 'right': right})
    return out[0] if len(outputs) == 1 else out


def test_cli_exports_a_serialized_ffs_checkpoint(tmp_path, capsys):
    src = tmp_path / 'model_best_bp2_serialize.pth'
    with official_classes() as fakes:
        torch.save(TinyFFS(fakes).network('concat'), src)
    out = tmp_path / 'ffs.onnx'
    assert export_main(['--checkpoint', str(src), '--height', '64', '--width', '96',
                        '--iters', '2', '--out', str(out)]) == 0
    assert 'wrote' in capsys.readouterr().out
    model, _ = load_checkpoint(src)
    gen = torch.Generator().manual_seed(5)
    left = torch.rand(2, 3, 64, 96, generator=gen) * 255
    right = torch.roll(left, -5, dims=-1)
    with torch.inference_mode():
        expected, expected_conf = model(left, right, iters=2, test_mode=True, confidence=True)
    # Batch 2: the batch axis is dynamic.
    disp, conf = run_onnx(out, left.numpy(), right.numpy(), ('disp', 'confidence'))
    np.testing.assert_allclose(disp, expected.numpy(), atol=1e-4, rtol=1e-5)
    np.testing.assert_allclose(conf, expected_conf.numpy(), atol=1e-4)


@pytest.mark.skipif(not CFFS.is_file(), reason=f'FFS reference checkpoint not found at {CFFS}')
def test_cffs_like_onnx_matches_the_official_golden(tmp_path):
    model, _ = load_checkpoint(CFFS)
    path = export_onnx(model, tmp_path / 'cffs.onnx', 64, 96, iters=2)
    golden = np.load(DATA_DIR / 'golden_ffs_synth.npz')
    disp = run_onnx(path, golden['left'], golden['right'])
    np.testing.assert_allclose(disp, golden['disp_test_iters2'], atol=2e-3, rtol=1e-5)

"""ONNX export: a seeded vits model exported at 64x96 with 2 iterations, run in onnxruntime."""
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from conftest import DATA_DIR
from seeded_weights import load_layout, make_state_dict

from foundation_stereo_ros.model import build_model
from foundation_stereo_ros.model.onnx_export import export_onnx, main

HEIGHT, WIDTH, ITERS = 64, 96, 2


@pytest.fixture(scope='module')
def model():
    net = build_model({'vit_size': 'vits', 'mixed_precision': False})
    net.load_state_dict(make_state_dict(load_layout(DATA_DIR / 'state_dict_vits.json')))
    return net


@pytest.fixture(scope='module')
def exported(model, tmp_path_factory):
    return export_onnx(model, tmp_path_factory.mktemp('onnx') / 'fs.onnx', HEIGHT, WIDTH, ITERS)


@pytest.fixture(scope='module')
def golden():
    with np.load(DATA_DIR / 'golden_model_synth.npz') as z:
        return {k: z[k] for k in ('left', 'right', 'disp_test_iters2')}


def test_graph_interface(exported):
    graph = onnx.load(str(exported), load_external_data=False).graph
    assert [i.name for i in graph.input] == ['left', 'right']
    assert [o.name for o in graph.output] == ['disp', 'confidence']
    dims = [d.dim_value or d.dim_param for d in graph.input[0].type.tensor_type.shape.dim]
    assert dims[1:] == [3, HEIGHT, WIDTH] and isinstance(dims[0], str)   # dynamic batch
    assert not any(n.op_type == 'GridSample' for n in graph.node)


def test_onnxruntime_matches_official_and_pytorch(exported, model, golden):
    session = ort.InferenceSession(str(exported), providers=['CPUExecutionProvider'])
    disp, _ = session.run(None, {'left': golden['left'], 'right': golden['right']})
    assert disp.shape == (1, 1, HEIGHT, WIDTH)
    # Official code's output for the same weights and images (fp32 CPU).
    np.testing.assert_allclose(disp, golden['disp_test_iters2'], atol=2e-3, rtol=1e-5)
    # Batch of two (swapped pair as the second sample) against PyTorch.
    left = np.concatenate([golden['left'], golden['right']])
    right = np.concatenate([golden['right'], golden['left']])
    disp2, conf2 = session.run(None, {'left': left, 'right': right})
    with torch.inference_mode():
        expected, expected_conf = model(torch.from_numpy(left), torch.from_numpy(right),
                                        iters=ITERS, test_mode=True, confidence=True)
    np.testing.assert_allclose(disp2, expected.numpy(), atol=2e-3, rtol=1e-5)
    # The exported confidence is the PyTorch model's (a sum of probabilities: fp32 noise).
    assert conf2.shape == (2, 1, HEIGHT, WIDTH)
    np.testing.assert_allclose(conf2, expected_conf.numpy(), atol=1e-4)
    assert 0.0 < conf2.min() and conf2.max() <= 1.0


def test_cli_rejects_bad_arguments(tmp_path, capsys):
    assert main(['--checkpoint', str(tmp_path / 'x.pth'), '--height', '100', '--out',
                 str(tmp_path / 'o.onnx')]) == 1
    assert 'multiples of 32' in capsys.readouterr().err
    assert main(['--checkpoint', str(tmp_path / 'x.pth'), '--out', str(tmp_path / 'o.onnx')]) == 1
    assert 'not found' in capsys.readouterr().err

"""The trust settings and outputs in the offline tools, and outputs that are empty saying why.

Bad inputs are built: a K.txt baseline in millimetres, a seeded checkpoint whose weights hold
NaN, ONNX models whose output is NaN or negative everywhere.
"""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from checkpoints import write_seeded_checkpoint
from conftest import DATA_DIR
from onnx import TensorProto, helper
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import Image
from test_backend_onnx import red_channel, write_graph
from test_bag_tool import CLI_TOPICS, SGBM, frames_of, read_bag, write_bag

from foundation_stereo_ros.backends import make_backend
from foundation_stereo_ros.pipeline import StereoPipeline
from foundation_stereo_ros.ros import conversions
from foundation_stereo_ros.synthetic.scenes import make_scene, save_scene
from foundation_stereo_ros.tools import bag_tool, batch, demo


@pytest.fixture(scope='module')
def scene_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp('scene')
    scene = make_scene(160, 120, seed=3, noise=1.0)
    save_scene(scene, folder)
    return folder, scene


def demo_files(folder, *extra):
    return ['--left', folder / 'left.png', '--right', folder / 'right.png',
            '--intrinsics', folder / 'K.txt', '--backend', 'sgbm', '--num-disparities', '32',
            *extra]


def run_demo(*argv):
    return demo.main([str(a) for a in argv])


def test_demo_writes_the_confidence_of_the_left_right_check(scene_folder, tmp_path, capsys):
    folder, scene = scene_folder
    assert run_demo(*demo_files(folder, '--left-right-check', '--out', tmp_path)) == 0
    confidence = np.load(tmp_path / 'confidence.npy')
    disparity = np.load(tmp_path / 'disparity.npy')
    assert confidence.dtype == np.float32 and confidence.shape == (120, 160)
    assert 0.0 <= confidence.min() and confidence.max() <= 1.0
    assert (confidence[~np.isfinite(disparity)] == 0.0).all()
    out = capsys.readouterr()
    assert 'confidence=True' in out.out and 'left_right' in out.out
    # Occluded pixels lose their estimate: the check did run.
    assert np.isfinite(disparity)[scene.occluded].mean() < 0.3


def test_demo_without_a_confidence_says_how_to_get_one(scene_folder, tmp_path, capsys):
    folder, _ = scene_folder
    assert run_demo(*demo_files(folder, '--confidence-threshold', '0.5', '--out', tmp_path)) == 0
    assert not (tmp_path / 'confidence.npy').exists()
    err = capsys.readouterr().err
    assert 'no confidence map: SGBM has no confidence of its own' in err
    assert 'set --left-right-check to true' in err and '--confidence-threshold 0.5 has no' in err


def test_demo_filters_from_the_command_line(scene_folder, tmp_path, capsys):
    folder, _ = scene_folder
    assert run_demo(*demo_files(folder, '--out', tmp_path / 'plain')) == 0
    assert run_demo(*demo_files(folder, '--edge-rtol', '0.04', '--denoise-radius', '0.1',
                                '--denoise-min-neighbors', '5', '--out', tmp_path / 'f')) == 0
    plain = np.isfinite(np.load(tmp_path / 'plain/depth.npy'))
    filtered = np.isfinite(np.load(tmp_path / 'f/depth.npy'))
    assert not (filtered & ~plain).any() and filtered.sum() < plain.sum()
    out = capsys.readouterr().out
    assert 'edges' in out.splitlines()[-1] and 'denoise' in out.splitlines()[-1]


def test_a_baseline_in_millimetres_is_named(scene_folder, tmp_path, capsys):
    folder, _ = scene_folder
    k_txt = (folder / 'K.txt').read_text().split('\n')
    k_txt[1] = str(float(k_txt[1]) * 1000.0)  # 0.12 m written as 120.0 (mm)
    wrong = tmp_path / 'K.txt'
    wrong.write_text('\n'.join(k_txt))
    argv = demo_files(folder, '--out', tmp_path / 'out')
    argv[argv.index(folder / 'K.txt')] = wrong
    assert run_demo(*argv) == 0
    out = capsys.readouterr()
    assert 'points=0' in out.out
    assert 'z_range stage removed' in out.err and '--z-far 100 m' in out.err
    assert 'baseline (120 m now) is in metres, not millimetres' in out.err


def nan_checkpoint(folder):
    path = write_seeded_checkpoint(folder)
    checkpoint = torch.load(path, weights_only=True)
    weights = checkpoint['model']
    first = next(k for k, v in weights.items() if v.is_floating_point() and v.ndim == 4)
    weights[first][0] = float('nan')  # one filter of the first convolution
    torch.save(checkpoint, path)
    return path


def test_a_checkpoint_with_nan_weights_is_named(tmp_path, capsys):
    golden = np.load(DATA_DIR / 'golden_model_synth.npz')
    folder = tmp_path / 'pair'
    folder.mkdir()
    import cv2
    for side in ('left', 'right'):
        image = golden[side][0].transpose(1, 2, 0).astype(np.uint8)
        cv2.imwrite(str(folder / f'{side}.png'), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    (folder / 'K.txt').write_text('80 0 47.5 0 80 31.5 0 0 1\n0.1\n')
    checkpoint = nan_checkpoint(tmp_path / 'vits')
    assert run_demo('--left', folder / 'left.png', '--right', folder / 'right.png',
                    '--intrinsics', folder / 'K.txt', '--checkpoint', checkpoint,
                    '--device', 'cpu', '--valid-iters', '1', '--out', tmp_path / 'out') == 0
    out = capsys.readouterr()
    assert 'valid_share=0.0' in out.out
    assert 'the foundation_stereo backend returned NaN for 100.0%' in out.err
    assert "check the checkpoint's weights" in out.err


def constant_model(path, value):
    """Write an exported-network look-alike (official input names) whose output is ``value``."""
    const = helper.make_tensor('value', TensorProto.FLOAT, [], [value])
    zero = helper.make_tensor('zero', TensorProto.FLOAT, [], [0.0])
    nodes, consts = red_channel('left', 'red')
    nodes += [helper.make_node('Mul', ['red', 'zero'], ['nil']),
              helper.make_node('Add', ['nil', 'value'], ['disp'])]
    return write_graph(path, ['left', 'right'], 'disp', nodes, shape=(1, 3, 120, 160),
                       initializers=[*consts, const, zero])


@pytest.mark.parametrize('value, fragment', [
    (float('nan'), 'returned NaN for 100.0%'),
    (-5.0, 'zero or negative disparities for 100.0%'),
])
def test_an_onnx_model_with_no_valid_output_is_named_once(tmp_path, value, fragment, caplog):
    scenes = [make_scene(160, 120, seed=seed) for seed in (11, 12)]
    model = constant_model(tmp_path / 'bad.onnx', value)
    in_bag = write_bag(tmp_path / 'in', 'mcap', frames_of(scenes, 3), [1, 2, 3])
    with caplog.at_level(logging.WARNING, logger='foundation_stereo_bag'):
        assert bag_tool.main([str(in_bag), str(tmp_path / 'out'), *CLI_TOPICS, '--backend',
                              'onnx', '--model', str(model), '--provider', 'cpu', '--quiet',
                              '--outputs', 'depth/image_rect', 'confidence']) == 0
    told = [r.getMessage() for r in caplog.records if 'valid depth' in r.getMessage()]
    assert len(told) == 1, told  # three empty pairs, said once
    assert fragment in told[0] and 'check the model' in told[0]
    # Official exports have no confidence output: none written, and said once.
    no_confidence = [r.getMessage() for r in caplog.records
                     if 'this exported model has no confidence output' in r.getMessage()]
    assert len(no_confidence) == 1, no_confidence
    data, _ = read_bag(tmp_path / 'out')
    assert '/stereo/confidence' not in data and len(data['/stereo/depth/image_rect']) == 3
    # The pipeline itself: every pair empty, for the same reason.
    backend = make_backend('onnx', model=str(model), provider='cpu')
    result = StereoPipeline(backend).process(scenes[0].left, scenes[0].right, scenes[0].camera)
    assert result.valid_share == 0.0 and result.removed['invalid'] == 1.0


def test_batch_writes_confidence_and_takes_the_filters(tmp_path, capsys):
    root = tmp_path / 'scenes'
    for seed in range(2):
        save_scene(make_scene(160, 96, seed=seed), root / f's{seed}')
    out = tmp_path / 'out'
    assert batch.main(['--glob', str(root / '*/left.png'), '--backend', 'sgbm',
                       '--num-disparities', '32', '--left-right-check', '--edge-rtol', '0.04',
                       '--out', str(out)]) == 0
    for name in ('s0', 's1'):
        confidence = np.load(out / name / 'confidence.npy')
        depth = np.load(out / name / 'depth.npy')
        assert confidence.shape == depth.shape == (96, 160)
        assert (confidence[~np.isfinite(depth) & (confidence > 0)] >= 0).all()


def test_bag_tool_writes_a_confidence_topic(tmp_path, capsys):
    scenes = [make_scene(160, 120, seed=seed) for seed in (11, 12)]
    in_bag = write_bag(tmp_path / 'in', 'mcap', frames_of(scenes, 2), [5, 6])
    out_bag = tmp_path / 'out'
    assert bag_tool.main([str(in_bag), str(out_bag), *CLI_TOPICS, *SGBM, '--left-right-check',
                          '--outputs', 'depth/image_rect', 'confidence']) == 0
    data, types = read_bag(out_bag)
    assert types['/stereo/confidence'] == 'sensor_msgs/msg/Image'
    assert len(data['/stereo/confidence']) == 2
    for (_, raw_conf), (_, raw_depth) in zip(data['/stereo/confidence'],
                                             data['/stereo/depth/image_rect']):
        conf_msg = deserialize_message(raw_conf, Image)
        depth_msg = deserialize_message(raw_depth, Image)
        assert conf_msg.encoding == '32FC1' and conf_msg.header == depth_msg.header
        confidence = conversions.image_to_array(conf_msg)
        assert confidence.shape == (120, 160) and 0 <= confidence.min() <= confidence.max() <= 1
        depth = conversions.image_to_array(depth_msg)
        assert (confidence[~np.isfinite(depth)] == 0).mean() > 0.9

"""A converted Fast-FoundationStereo file alone in a folder, through every front end.

The README tells users to deploy the converted ``.safetensors``; it has no ``cfg.yaml`` beside
it. Each front end (demo, batch, sweep, bag tool, node) gets the folder or the file and must
produce what the original serialized checkpoint gives when run directly through the pipeline
(the conversion itself is proven equal to the original in ``test_ffs_loader.py``; with the
shared reference, ``test_ffs_demo.py`` runs the converted ``cffs_like`` folder against the
official demo disparity).
"""
from __future__ import annotations

import csv
import os

import cv2
import numpy as np
import pytest
from ffs_fakes import write_tiny_converted
from node_harness import (
    NETWORK_TIMEOUT,
    NodeProcess,
    Rig,
    as_float_image,
    play_until_outputs,
)
from rclpy.serialization import deserialize_message
from stereo_msgs.msg import DisparityImage
from test_bag_tool import CLI_TOPICS, read_bag, write_bag

from foundation_stereo_ros.backends import make_backend
from foundation_stereo_ros.calibration_files import load_k_file
from foundation_stereo_ros.pipeline import PipelineConfig, StereoPipeline
from foundation_stereo_ros.ros import conversions
from foundation_stereo_ros.ros.synthetic_camera import camera_info_pair, scene_to_messages
from foundation_stereo_ros.synthetic.scenes import make_scene
from foundation_stereo_ros.tools import bag_tool, batch, demo, sweep

# The tiny network's random weights give any disparity: keep every pixel the filters allow.
KEEP_ALL = ['--no-remove-invisible', '--z-far', '1000', '--device', 'cpu']
K_TEXT = '80 0 47.5 0 80 31.5 0 0 1\n0.1\n'


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    """Write the converted file alone in its folder, the original it came from, and a pair."""
    root = tmp_path_factory.mktemp('converted')
    source = root / 'src' / 'model_best_bp2_serialize.pth'
    converted = write_tiny_converted(root / 'deploy', source)
    assert [p.name for p in converted.parent.iterdir()] == [converted.name]
    scene = make_scene(96, 64, seed=4)
    pair = root / 'pair' / 'a'
    pair.mkdir(parents=True)
    for name, rgb in (('left', scene.left), ('right', scene.right)):
        cv2.imwrite(str(pair / f'{name}.png'), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    (pair / 'K.txt').write_text(K_TEXT)
    camera = load_k_file(pair / 'K.txt', 96, 64)
    return {'converted': converted, 'source': source, 'pair': pair, 'scene': scene,
            'camera': camera}


def reference(files, camera=None, valid_iters=0):
    """Disparity of the original serialized checkpoint, the pipeline built directly."""
    backend = make_backend('foundation_stereo', checkpoint=str(files['source']), device='cpu',
                           valid_iters=valid_iters)
    pipeline = StereoPipeline(backend, PipelineConfig(remove_invisible=False, z_far=1000.0))
    scene = files['scene']
    return pipeline.process(scene.left, scene.right, camera or files['camera']).disparity


def assert_same_disparity(actual, expected):
    np.testing.assert_array_equal(np.isfinite(actual), np.isfinite(expected))
    assert np.isfinite(expected).mean() > 0.3, 'enough pixels to compare'
    valid = np.isfinite(expected)
    np.testing.assert_allclose(actual[valid], expected[valid], atol=1e-4, rtol=1e-5)


def pair_args(files):
    pair = files['pair']
    return ['--left', str(pair / 'left.png'), '--right', str(pair / 'right.png'),
            '--intrinsics', str(pair / 'K.txt')]


@pytest.mark.parametrize('given', ['file', 'folder'])
def test_demo_takes_the_converted_file_or_its_folder(files, tmp_path, capsys, given):
    checkpoint = files['converted'] if given == 'file' else files['converted'].parent
    out = tmp_path / 'out'
    assert demo.main([*pair_args(files), '--backend', 'foundation_stereo', '--checkpoint',
                      str(checkpoint), *KEEP_ALL, '--out', str(out)]) == 0, \
        capsys.readouterr().err
    assert_same_disparity(np.load(out / 'disparity.npy'), reference(files))


def test_batch_takes_the_converted_file(files, tmp_path, capsys):
    out = tmp_path / 'out'
    assert batch.main(['--glob', str(files['pair'].parent / '*' / 'left.png'), '--backend',
                       'foundation_stereo', '--checkpoint', str(files['converted']), *KEEP_ALL,
                       '--out', str(out)]) == 0, capsys.readouterr().err
    (written,) = out.rglob('disparity.npy')
    assert_same_disparity(np.load(written), reference(files))


def test_sweep_runs_0_as_the_checkpoint_count_and_shows_it(files, tmp_path, capsys):
    out = tmp_path / 'out'
    assert sweep.main([*pair_args(files), '--backend', 'foundation_stereo', '--checkpoint',
                       str(files['converted']), *KEEP_ALL, '--valid-iters', '0', '1', '2',
                       '--scale', '1.0', '--repeat', '1', '--out', str(out)]) == 0, \
        capsys.readouterr().err
    with open(out / 'sweep.csv', encoding='utf-8') as stream:
        rows = list(csv.DictReader(stream))
    # The tiny checkpoint pickles the family's 8 iterations (no cfg.yaml beside it).
    assert [(r['valid_iters_requested'], r['valid_iters']) for r in rows] == [
        ('0', '8'), ('1', '1'), ('2', '2')]
    # 0 ran 8 iterations: it is the reference (the most iterations), not a copy of row 1.
    assert float(rows[0]['p95_delta']) == 0.0 and float(rows[1]['p95_delta']) > 0.0
    printed = capsys.readouterr().out
    assert '0 (8)' in printed and 'reference (iters=0 (8) scale=1 hier=off)' in printed


def test_bag_tool_takes_the_converted_folder(files, tmp_path, capsys):
    scene = files['scene']
    frame = list(scene_to_messages(scene, 'rgb8', 'left_cam', 'right_cam'))
    in_bag = write_bag(tmp_path / 'in', 'mcap', [frame], [10])
    out_bag = tmp_path / 'out'
    assert bag_tool.main([str(in_bag), str(out_bag), *CLI_TOPICS, '--quiet', '--backend',
                          'foundation_stereo', '--checkpoint', str(files['converted'].parent),
                          *KEEP_ALL]) == 0, capsys.readouterr().err
    data, _ = read_bag(out_bag)
    (_, raw), = data['/stereo/disparity']
    disparity = conversions.image_to_array(deserialize_message(raw, DisparityImage).image)
    assert_same_disparity(disparity, reference(files, scene.camera))


def test_node_takes_the_converted_folder(files, ros_context):
    scene = files['scene']
    left_info, right_info = camera_info_pair(scene.camera, 'left_cam', 'right_cam')
    frame = [conversions.array_to_image(scene.left, 'rgb8'), left_info,
             conversions.array_to_image(scene.right, 'rgb8'), right_info]
    namespace = f'/converted{os.getpid()}'
    node = NodeProcess('-p', 'backend:=foundation_stereo',
                       '-p', f'checkpoint:={files["converted"].parent}', '-p', 'device:=cpu',
                       '-p', 'z_far:=1000.0', '-p', 'remove_invisible:=false',
                       '-r', f'__ns:={namespace}')
    rig = Rig(ros_context, namespace)
    try:
        rig.subscribe('disparity', DisparityImage)
        out = play_until_outputs(rig, frame, ['disparity'], node, timeout=NETWORK_TIMEOUT)
    finally:
        rig.close()
        assert node.stop() == 0, node.output
    disparity = as_float_image(out['disparity'].image)
    expected = reference(files, scene.camera)
    # A DisparityImage marks what is not a positive disparity invalid.
    expected = np.where(expected > 0, expected, np.nan)
    disparity = np.where(disparity > 0, disparity, np.nan)
    assert_same_disparity(disparity, expected)

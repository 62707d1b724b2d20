"""The demo front end: outputs on the bundled scene and on files, and its error messages."""
import cv2
import numpy as np
import pytest
import torch
from ply_reader import read_ply

from foundation_stereo_ros.synthetic.scenes import make_scene, save_scene
from foundation_stereo_ros.tools import demo


def run_demo(*argv):
    return demo.main([str(a) for a in argv])


def test_bundled_scene_writes_all_outputs_and_matches_ground_truth(tmp_path, capsys):
    assert run_demo('--backend', 'sgbm', '--out', tmp_path) == 0
    disparity = np.load(tmp_path / 'disparity.npy')
    depth = np.load(tmp_path / 'depth.npy')
    assert disparity.dtype == np.float32 and disparity.shape == (480, 640)
    assert depth.dtype == np.float32 and depth.shape == (480, 640)
    valid = np.isfinite(disparity)
    np.testing.assert_array_equal(np.isfinite(depth), valid)
    vis = cv2.imread(str(tmp_path / 'disparity.png'))
    assert vis.shape == (480, 640, 3)
    assert len(read_ply(tmp_path / 'cloud.ply')) == int(valid.sum())
    out = capsys.readouterr().out
    assert 'coverage=' in out and 'bad_1px=' in out
    scene = make_scene(640, 480, seed=0)
    both = valid & ~scene.occluded
    err = np.abs(disparity[both] - scene.disparity[both])
    assert np.median(err) < 0.5


def test_files_with_k_txt(tmp_path):
    scene = make_scene(320, 240, seed=3)
    save_scene(scene, tmp_path / 'scene')
    out = tmp_path / 'out'
    assert run_demo('--left', tmp_path / 'scene/left.png', '--right', tmp_path / 'scene/right.png',
                    '--intrinsics', tmp_path / 'scene/K.txt', '--out', out, '--z-far', 5,
                    '--backend', 'sgbm') == 0
    depth = np.load(out / 'depth.npy')
    assert np.nanmax(depth) <= 5.0
    good = np.isfinite(depth) & ~scene.occluded
    assert good.mean() > 0.3
    np.testing.assert_allclose(np.median(depth[good] / scene.depth[good]), 1.0, atol=0.02)


@pytest.mark.parametrize('case, message', [
    ('missing_left', 'left image not found'),
    ('size_mismatch', 'give a rectified pair of one size'),
    ('no_camera', '--intrinsics'),
    ('no_checkpoint', '--checkpoint'),
    ('missing_checkpoint', 'checkpoint not found'),
    ('missing_cfg', 'cfg.yaml not found'),
    ('only_left', 'both --left and --right'),
    ('broken_checkpoint', 'cannot start the foundation_stereo backend'),
    ('out_is_a_file', 'cannot write the outputs to --out'),
])
def test_errors_say_what_to_do(tmp_path, capsys, case, message):
    scene = make_scene(160, 96, seed=1)
    save_scene(scene, tmp_path)
    left, right, k = tmp_path / 'left.png', tmp_path / 'right.png', tmp_path / 'K.txt'
    args = ['--left', left, '--right', right, '--intrinsics', k, '--out', tmp_path / 'o',
            '--backend', 'sgbm']
    if case == 'missing_left':
        args[1] = tmp_path / 'nope.png'
    elif case == 'size_mismatch':
        cv2.imwrite(str(right), cv2.imread(str(right))[:, :100])
    elif case == 'no_camera':
        args = args[:4] + args[6:]
    elif case == 'no_checkpoint':
        args += ['--backend', 'foundation_stereo']
    elif case == 'missing_checkpoint':
        args += ['--backend', 'foundation_stereo', '--checkpoint', tmp_path / 'x.pth']
    elif case == 'missing_cfg':
        # A real torch.save state dict (a file that is not one is named as such first).
        torch.save({'model': {'w': torch.zeros(2)}}, tmp_path / 'model_best_bp2.pth')
        args += ['--backend', 'foundation_stereo', '--checkpoint',
                 tmp_path / 'model_best_bp2.pth']
    elif case == 'only_left':
        args = ['--left', left, '--backend', 'sgbm']
    elif case == 'broken_checkpoint':
        (tmp_path / 'model_best_bp2.pth').write_bytes(b'not really')
        (tmp_path / 'cfg.yaml').write_text('vit_size: vits\n')
        args += ['--backend', 'foundation_stereo', '--checkpoint',
                 tmp_path / 'model_best_bp2.pth', '--device', 'cpu']
    elif case == 'out_is_a_file':
        args[args.index('--out') + 1] = left / 'out'  # below a file
    assert run_demo(*args) == 2
    assert message in capsys.readouterr().err


def test_k_txt_of_another_resolution_is_refused(tmp_path, capsys):
    """A 640x480 K with 160x120 images would scale every depth by 4: refuse it with the reason."""
    scene = make_scene(160, 120, seed=1)
    save_scene(scene, tmp_path)
    cam = scene.camera
    fx, cx, cy = 4 * cam.fx, (cam.cx + 0.5) * 4 - 0.5, (cam.cy + 0.5) * 4 - 0.5  # K of 640x480
    (tmp_path / 'K.txt').write_text(f'{fx} 0 {cx} 0 {fx} {cy} 0 0 1\n{cam.baseline}\n')
    args = ['--left', tmp_path / 'left.png', '--right', tmp_path / 'right.png',
            '--intrinsics', tmp_path / 'K.txt', '--out', tmp_path / 'o']
    assert run_demo(*args) == 2
    err = capsys.readouterr().err
    assert 'principal point (319.5, 239.5) lies outside the 160x120 images' in err
    assert 'about 640x480' in err and 'scale the first two rows of K' in err
    assert not (tmp_path / 'o').exists()


def test_an_option_the_backend_does_not_take_is_named(tmp_path, capsys):
    assert run_demo('--backend', 'sgbm', '--valid-iters', '4', '--out', tmp_path) == 0
    assert 'warning: --valid-iters has no effect on the sgbm backend' in capsys.readouterr().err

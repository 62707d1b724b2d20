"""The batch tool: pairs from folders, globs and lists; outputs; skipped pairs; B > 1."""
import csv

import cv2
import numpy as np
import pytest
from checkpoints import write_seeded_checkpoint

from foundation_stereo_ros.synthetic.scenes import make_scene, save_scene
from foundation_stereo_ros.tools import batch


def run_batch(*argv):
    argv = [str(a) for a in argv]
    if '--backend' not in argv:
        argv += ['--backend', 'sgbm']
    return batch.main(argv)


def read_summary(out):
    with open(out / 'summary.csv', encoding='utf-8') as stream:
        return {row['pair']: row for row in csv.DictReader(stream)}


@pytest.fixture
def scenes(tmp_path):
    """Three good scene folders and three broken ones, as save_scene writes them."""
    root = tmp_path / 'scenes'
    made = {}
    for seed in range(3):
        made[f's{seed}'] = make_scene(160, 96, seed=seed)
        save_scene(made[f's{seed}'], root / f's{seed}')
    for name in ('no_right', 'unreadable', 'mismatch'):
        save_scene(make_scene(160, 96, seed=9), root / name)
    (root / 'no_right/right.png').unlink()
    (root / 'unreadable/right.png').write_bytes(b'this is not a PNG')
    right = cv2.imread(str(root / 'mismatch/right.png'))
    cv2.imwrite(str(root / 'mismatch/right.png'), right[:, :120])
    return root, made


def test_glob_over_scene_folders_writes_outputs_and_lists_the_skipped(scenes, tmp_path, capsys):
    root, made = scenes
    out = tmp_path / 'out'
    assert run_batch('--glob', root / '*/left.png', '--out', out, '--batch-size', 2) == 0
    for name, scene in made.items():
        disparity = np.load(out / name / 'disparity.npy')
        depth = np.load(out / name / 'depth.npy')
        assert disparity.shape == (96, 160) and depth.shape == (96, 160)
        assert (out / name / 'disparity.png').is_file() and (out / name / 'cloud.ply').is_file()
        good = np.isfinite(disparity) & ~scene.occluded
        assert good.mean() > 0.5
        assert np.median(np.abs(disparity[good] - scene.disparity[good])) < 0.5
    rows = read_summary(out)
    assert {n for n, r in rows.items() if r['status'] == 'ok'} == set(made)
    reasons = {n: r['reason'] for n, r in rows.items() if r['status'] == 'skipped'}
    assert set(reasons) == {'no_right', 'unreadable', 'mismatch'}
    assert 'not found' in reasons['no_right']
    assert 'could not be read' in reasons['unreadable']
    assert '160x96 but right is 120x96' in reasons['mismatch']
    for name in reasons:
        assert not (out / name).exists()
    valid = np.isfinite(np.load(out / 's1/disparity.npy')).mean()
    assert float(rows['s1']['valid_share']) == pytest.approx(valid, abs=1e-4)
    printed = capsys.readouterr().out
    assert '3 of 6 pairs processed, 3 skipped' in printed
    assert 'could not be read' in printed


def test_folder_pair_with_one_camera_and_a_missing_partner(tmp_path):
    scene = make_scene(128, 96, seed=4)
    save_scene(scene, tmp_path / 'scene')
    left_dir, right_dir = tmp_path / 'L', tmp_path / 'R'
    left_dir.mkdir()
    right_dir.mkdir()
    for i in range(2):
        cv2.imwrite(str(left_dir / f'f{i}.png'), cv2.imread(str(tmp_path / 'scene/left.png')))
        cv2.imwrite(str(right_dir / f'f{i}.png'), cv2.imread(str(tmp_path / 'scene/right.png')))
    cv2.imwrite(str(left_dir / 'f2.png'), cv2.imread(str(tmp_path / 'scene/left.png')))
    out = tmp_path / 'out'
    assert run_batch('--left-dir', left_dir, '--right-dir', right_dir, '--intrinsics',
                     tmp_path / 'scene/K.txt', '--out', out) == 0
    rows = read_summary(out)
    assert rows['f0']['status'] == rows['f1']['status'] == 'ok'
    assert rows['f2']['status'] == 'skipped' and 'right image not found' in rows['f2']['reason']
    np.testing.assert_array_equal(np.load(out / 'f0/depth.npy'), np.load(out / 'f1/depth.npy'))


def test_list_file_with_relative_paths_and_a_bad_line(scenes, tmp_path):
    root, _ = scenes
    listing = root / 'pairs.txt'
    listing.write_text('# left right\ns0/left.png s0/right.png\ns2/left.png  s2/right.png  x\n'
                       's1/left.png s1/right.png  # trailing comment\n')
    out = tmp_path / 'out'
    assert run_batch('--pairs', listing, '--out', out) == 0
    rows = read_summary(out)
    assert [r['status'] for r in rows.values()].count('ok') == 2
    assert 'expected "LEFT RIGHT"' in rows['line3']['reason']


def test_batches_of_two_give_the_single_pair_results(tmp_path):
    # The network on a seeded checkpoint: a batch of two must equal two single runs.
    checkpoint = write_seeded_checkpoint(tmp_path / 'vits')
    for seed in range(2):
        save_scene(make_scene(96, 64, seed=seed), tmp_path / f'scenes/p{seed}')
    common = ['--glob', tmp_path / 'scenes/*/left.png', '--backend', 'foundation_stereo',
              '--checkpoint', checkpoint, '--device', 'cpu', '--valid-iters', 2,
              '--no-remove-invisible']
    assert run_batch(*common, '--out', tmp_path / 'b1') == 0
    assert run_batch(*common, '--out', tmp_path / 'b2', '--batch-size', 2) == 0
    for name in ('p0', 'p1'):
        single = np.load(tmp_path / 'b1' / name / 'disparity.npy')
        batched = np.load(tmp_path / 'b2' / name / 'disparity.npy')
        assert np.isfinite(single).mean() > 0.5
        np.testing.assert_allclose(batched, single, atol=1e-3, equal_nan=True)


@pytest.mark.parametrize('argv, code, message', [
    (['--glob', '{tmp}/nothing/*.png'], 2, 'no left images found'),
    (['--left-dir', '{tmp}'], 2, '--left-dir needs --right-dir'),
    (['--pairs', '{tmp}/missing.txt'], 2, 'pair list not found'),
    (['--glob', '{tmp}/*/left.png', '--batch-size', '0'], 2, '--batch-size must be'),
    (['--glob', '{tmp}/*/left.png', '--backend', 'onnx'], 2,
     'backend onnx needs an exported network: pass --model /path/to/exported.onnx'),
    (['--glob', '{tmp}/*/left.png', '--backend', 'onnx', '--model', '{tmp}/x.onnx'], 2,
     'ONNX model not found'),
    (['--glob', '{tmp}/*/left.png'], 1, 'no camera: no K.txt'),
    # Checked before the model loads, as the demo does: no NotADirectoryError at the end.
    (['--glob', '{tmp}/*/left.png', '--backend', 'sgbm', '--out', '{tmp}/a/left.png/out'], 2,
     'cannot write the outputs to --out'),
])
def test_mistakes_are_reported_without_a_traceback(tmp_path, capsys, argv, code, message):
    folder = tmp_path / 'a'
    folder.mkdir()
    scene = make_scene(64, 48, seed=0)
    cv2.imwrite(str(folder / 'left.png'), scene.left)
    cv2.imwrite(str(folder / 'right.png'), scene.right)
    argv = [a.replace('{tmp}', str(tmp_path)) for a in argv]
    if '--out' not in argv:
        argv += ['--out', tmp_path / 'out']
    assert run_batch(*argv) == code
    captured = capsys.readouterr()
    assert message in captured.err + captured.out
    assert 'Traceback' not in captured.err

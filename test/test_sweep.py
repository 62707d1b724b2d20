"""The valid_iters x scale x hierarchical sweep: figures, reference, plot and mistakes."""
import csv

import cv2
import numpy as np
import pytest
from checkpoints import write_seeded_checkpoint

from foundation_stereo_ros.backends import make_backend
from foundation_stereo_ros.pipeline import PipelineConfig, StereoPipeline
from foundation_stereo_ros.synthetic.scenes import make_scene, save_scene
from foundation_stereo_ros.tools import sweep


def run_sweep(*argv):
    return sweep.main([str(a) for a in argv])


def read_csv(path):
    with open(path, encoding='utf-8') as stream:
        # An empty valid_iters: a backend without iterations.
        return [{k: float(v or 'nan') for k, v in row.items() if k != 'hierarchical'}
                | {'hierarchical': row['hierarchical'] == 'True'}
                for row in csv.DictReader(stream)]


def test_sgbm_scale_sweep_on_a_generated_scene_scores_against_ground_truth(tmp_path, capsys):
    out = tmp_path / 'out'
    assert run_sweep('--backend', 'sgbm', '--scene-size', '160x96', '--scene-seed', '2',
                     '--scale', 0.5, 1.0, '--repeat', 1, '--out', out) == 0
    rows = read_csv(out / 'sweep.csv')
    assert [r['scale'] for r in rows] == [0.5, 1.0]
    # The scene and the pipeline run independently here; the sweep's figures must match.
    scene = make_scene(160, 96, seed=2)
    visible = ~scene.occluded
    for row in rows:
        pipeline = StereoPipeline(make_backend('sgbm'), PipelineConfig(scale=row['scale']))
        disparity = pipeline.process(scene.left, scene.right, scene.camera).disparity
        estimated = np.isfinite(disparity) & visible
        error = np.abs(disparity[estimated] - scene.disparity[estimated])
        assert row['mae'] == pytest.approx(error.mean(), rel=1e-5)
        assert row['bad1'] == pytest.approx((error > 1).mean(), rel=1e-5)
        assert row['coverage'] == pytest.approx(estimated.sum() / visible.sum(), rel=1e-5)
    assert rows[1]['median_delta'] == 0.0 and rows[1]['p95_delta'] == 0.0   # the reference
    assert rows[0]['p95_delta'] > 0.0
    plot = cv2.imread(str(out / 'sweep.png'))
    assert plot is not None and plot.shape[0] > 300 and plot.shape[1] > 500
    printed = capsys.readouterr().out
    assert 'MAE px' in printed and 'reference (scale=1 hier=off)' in printed


def test_network_sweep_over_iterations_and_hierarchy(tmp_path, capsys):
    checkpoint = write_seeded_checkpoint(tmp_path / 'vits')
    scene = make_scene(96, 64, seed=1)
    save_scene(scene, tmp_path / 'scene')
    out = tmp_path / 'out'
    assert run_sweep('--left', tmp_path / 'scene/left.png', '--right',
                     tmp_path / 'scene/right.png', '--intrinsics', tmp_path / 'scene/K.txt',
                     '--backend', 'foundation_stereo', '--checkpoint', checkpoint,
                     '--device', 'cpu', '--no-remove-invisible', '--valid-iters', 1, 2,
                     '--scale', 1.0, '--hierarchical', 'off', 'on', '--repeat', 1,
                     '--out', out) == 0
    rows = read_csv(out / 'sweep.csv')
    assert len(rows) == 4 and all(r['seconds'] > 0 for r in rows)
    assert all(np.isnan(r['mae']) for r in rows)          # no ground truth given
    reference = [r for r in rows if r['median_delta'] == 0 and r['p95_delta'] == 0]
    assert [(r['valid_iters'], r['scale'], r['hierarchical']) for r in reference] == \
        [(2, 1.0, True)]
    # One row recomputed without the sweep: the backend run directly at both settings.
    backend = make_backend('foundation_stereo', checkpoint=str(checkpoint), device='cpu')
    pipeline = StereoPipeline(backend, PipelineConfig(remove_invisible=False))
    disparities = {}
    for iters, hierarchical in ((1, False), (2, True)):
        backend.valid_iters, backend.hierarchical = iters, hierarchical
        disparities[iters] = pipeline.process(scene.left, scene.right, scene.camera).disparity
    both = np.isfinite(disparities[1]) & np.isfinite(disparities[2])
    delta = np.abs(disparities[1] - disparities[2])[both]
    row = next(r for r in rows
               if (r['valid_iters'], r['scale'], r['hierarchical']) == (1, 1.0, False))
    assert row['median_delta'] == pytest.approx(np.median(delta), rel=1e-3, abs=1e-4)
    assert row['p95_delta'] == pytest.approx(np.percentile(delta, 95), rel=1e-3, abs=1e-4)
    assert (out / 'sweep.png').stat().st_size > 10_000
    assert 'MAE' not in capsys.readouterr().out


@pytest.mark.parametrize('argv, message', [
    (['--scale', '1.5'], '--scale must be 0.05 to 1.0, got 1.5'),
    (['--valid-iters', '-1'], '--valid-iters must be 0 to 100'),
    (['--left', '{tmp}/l.png'], 'both --left and --right'),
    (['--scene-size', 'big'], '--scene-size must be WxH'),
    (['--left', '{tmp}/left.png', '--right', '{tmp}/right.png', '--intrinsics', '{tmp}/K.txt',
      '--ground-truth', '{tmp}/small.npy'], '--ground-truth is 10x10 but the images are 64x48'),
])
def test_mistakes_are_reported_without_a_traceback(tmp_path, capsys, argv, message):
    save_scene(make_scene(64, 48, seed=0), tmp_path)
    np.save(tmp_path / 'small.npy', np.ones((10, 10), np.float32))
    argv = [a.replace('{tmp}', str(tmp_path)) for a in argv] + ['--out', tmp_path / 'out',
                                                                '--backend', 'sgbm']
    assert run_sweep(*argv) == 2
    captured = capsys.readouterr()
    assert message in captured.err and 'Traceback' not in captured.err


def test_settings_without_effect_on_the_backend_are_named(tmp_path, capsys):
    """SGBM has no iterations nor hierarchy: given lists are reported, not silently dropped."""
    assert run_sweep('--backend', 'sgbm', '--scene-size', '64x48', '--valid-iters', 4, 8,
                     '--hierarchical', 'on', '--scale', 1.0, '--repeat', 1,
                     '--out', tmp_path / 'out') == 0
    err = capsys.readouterr().err
    assert 'warning: --valid-iters has no effect on the sgbm backend' in err
    assert 'warning: --hierarchical has no effect on the sgbm backend' in err
    assert run_sweep('--backend', 'sgbm', '--scene-size', '64x48', '--scale', 1.0,
                     '--repeat', 1, '--out', tmp_path / 'out2') == 0
    assert 'no effect' not in capsys.readouterr().err, 'nothing given, nothing to report'

"""benchmarks/trust_figures.py at a tiny size: every table is filled and says what it should."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope='module')
def figures(tmp_path_factory):
    out = tmp_path_factory.mktemp('trust_figures') / 'figures.json'
    proc = subprocess.run([sys.executable, str(ROOT / 'benchmarks' / 'trust_figures.py'),
                           '--size', '128x96', '--seeds', '0', '--json', str(out)],
                          capture_output=True, text=True, timeout=600, check=False, cwd=ROOT,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert '(a) left-right check with SGBM' in proc.stdout
    return json.loads(out.read_text())


def test_left_right_rows_drop_occlusion_rather_than_correct_pixels(figures):
    rows = {row['max_diff']: row for row in figures['left_right']}
    assert sorted(rows) == [0.5, 1.0, 2.0, 3.0]
    for row in rows.values():
        assert 0.0 <= row['correct_lost'] < row['occluded_dropped'] <= 1.0
    # A looser tolerance drops less.
    assert rows[0.5]['occluded_dropped'] >= rows[3.0]['occluded_dropped']


def test_edge_filter_removes_the_flying_pixels_of_an_upsampled_perfect_disparity(figures):
    rows = {(row['case'], row['rtol']): row for row in figures['flying']}
    assert {case for case, _ in rows} == {'sgbm', 'sgbm@0.5', 'truth@0.5'}
    before, after = rows[('truth@0.5', 0.0)], rows[('truth@0.5', 0.04)]
    # Bilinear upsampling bridges every edge: flying pixels before, (almost) none after.
    assert before['band_bad'] > 0.1 and after['band_bad'] < 0.02
    assert after['bad_dropped'] > 0.95


def test_denoise_rows_agree_with_the_kd_tree(figures):
    for row in figures['denoise']:
        assert row['agree'] > 0.99 and row['missed'] == 0.0

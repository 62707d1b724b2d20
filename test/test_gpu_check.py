"""benchmarks/gpu_check.py --dry-run: every step runs on the CPU and lands in the table and JSON.

The real run needs a CUDA machine and happens once; this keeps the script from rotting in
between. It starts child processes (the workers, and bench_node's camera and node), so it
takes about a minute on two free cores (several when they are shared).
"""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope='module')
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp('gpu_check')
    proc = subprocess.run([sys.executable, str(ROOT / 'benchmarks' / 'gpu_check.py'),
                           '--dry-run', '--out', str(out)], capture_output=True, text=True,
                          timeout=900, check=False, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return (json.loads((out / 'gpu_check.json').read_text()),
            (out / 'gpu_check.md').read_text())


def steps_of(data, kind):
    return [s for s in data['steps'] if s['kind'] == kind]


def test_every_step_has_a_status_within_the_budget(report):
    data, _ = report
    assert data['meta']['dry_run'] and data['meta']['elapsed_s'] < data['meta']['budget_s']
    for step in data['steps']:
        assert step['status'] in ('ok', 'skipped'), step
    compiled = [s for s in steps_of(data, 'latency') if ' compile ' in s['name']]
    assert compiled and all(s['status'] == 'skipped' for s in compiled)


def test_parity_and_precision_rows(report):
    data, _ = report
    (parity,) = steps_of(data, 'parity')
    (row,) = parity['rows']
    # The dry run compares the CPU with itself: the same model on the same pair is bitwise
    # reproducible, so anything but 0 would be a bug in the comparison.
    assert row['compare'] == 'cpu (again) fp32 vs cpu fp32' and row['max'] == 0.0
    (precision,) = steps_of(data, 'precision')
    (bf16,) = precision['rows']
    assert bf16['compare'] == 'bf16 vs fp32' and bf16['finite'] == 1.0
    assert 0.0 < bf16['max']   # autocast really ran


def test_latency_rows_for_each_precision_and_iteration_count(report):
    data, text = report
    rows = [r for s in steps_of(data, 'latency') for r in s['rows'] if r['family'] == 'vits']
    assert sorted((r['precision'], r['iters']) for r in rows) == [('bf16', 1), ('fp32', 1)]
    for row in rows:
        assert row['median_ms'] >= row['min_ms'] > 0 and row['size'] == '96x64'
        assert f'| vits | eager | {row["precision"]} | 96x64 | 1 |' in text
    ffs = [s for s in steps_of(data, 'latency') if 'ffs eager' in s['name']]
    assert len(ffs) == 1
    # Fast-FoundationStereo: measured where the package loads it, else the row says why.
    assert ffs[0]['status'] == 'skipped' or all('median_ms' in r or r['error']
                                                for r in ffs[0]['rows'])


def test_node_end_to_end_row(report):
    data, text = report
    (node,) = steps_of(data, 'node')
    assert node['status'] == 'ok', node
    (row,) = node['rows']
    assert (row['width'], row['height']) == (96, 64)
    assert row['first_output_s'] > 0 and row['camera_hz'] > 0
    assert row['dropped_busy'] >= 0 and row['dropped_unmatched'] >= 0
    assert '### The node end to end' in text and '| 96x64 |' in text


def test_cameras_row(report):
    """One node with two cameras against two nodes, or why not (the FFS reference absent)."""
    data, text = report
    (step,) = steps_of(data, 'cameras')
    assert '### Several cameras: one node against separate nodes' in text
    if step['status'] == 'skipped':
        assert 'not present' in step['detail']
        return
    assert step['status'] == 'ok', step
    modes = {row['mode']: row for row in step['rows']}
    assert len(step['rows']) == 2, 'one row per mode'
    assert set(modes) == {'one node', 'separate nodes'}
    for row in modes.values():
        assert row['cameras'] == 2 and len(row['per_camera']) == 2, row
        assert row['total_sets_per_s'] > 0 and row['rss_mib'] > 0, row
    assert modes['one node']['processes'] == 1 and modes['separate nodes']['processes'] == 2


def test_trust_filter_rows(report):
    data, text = report
    (trust,) = steps_of(data, 'trust')
    assert trust['status'] == 'ok', trust
    stages = [row['stage'] for row in trust['rows']]
    assert stages == ['confidence threshold', 'left-right check', 'edge filter', 'denoising']
    for row in trust['rows']:
        assert row['size'] == '96x64' and row['median_ms'] >= row['min_ms'] > 0
        assert f'| {row["stage"]} | 96x64 | cpu |' in text
    assert '### Trust filters' in text

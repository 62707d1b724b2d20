"""The fleet tool on a local Ray (loopback only): many generated bags, SGBM, two workers.

Every output is compared with what the bag tool writes for the same bag. Ray starts once for
the module, on 127.0.0.1 without its dashboard; its workers load ``test/node_patches`` so one
test can make a worker die mid-bag (``FSR_TEST_CRASH_ONCE``).
"""
from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_bag_tool import CLI_TOPICS, SGBM, TOPICS, frames_of, read_bag, write_bag

from foundation_stereo_ros.ros.bag_messages import ROS_TYPE_NAMES, decode
from foundation_stereo_ros.synthetic.scenes import make_scene
from foundation_stereo_ros.tools import bag_tool, fleet
from foundation_stereo_ros.tools.bags import BagError

ray = pytest.importorskip('ray', reason='the fleet extra (requirements-fleet.txt) is not '
                                        'installed')

ROOT = Path(__file__).resolve().parent.parent
PATCHES = Path(__file__).resolve().parent / 'node_patches'
# Four bags: two storages, different lengths; names as the outputs must keep them.
MESSAGE_TYPES = {name: msg_type for msg_type, name in ROS_TYPE_NAMES.items()}
BAGS = {'run_a': ('mcap', 3), 'run_b': ('sqlite3', 2), 'run_c': ('mcap', 4), 'run_d': ('mcap', 1)}


@pytest.fixture(scope='module')
def crash_file(tmp_path_factory):
    """Name the file whose existence makes the next worker die in its second inference."""
    return tmp_path_factory.mktemp('crash') / 'armed'


@pytest.fixture(scope='module')
def local_ray(crash_file):
    """Ray on the loopback address, once for the module; workers see the test patches."""
    saved = {k: os.environ.get(k) for k in ('PYTHONPATH', 'FSR_TEST_CRASH_ONCE')}
    os.environ['PYTHONPATH'] = os.pathsep.join(
        p for p in (str(PATCHES), saved['PYTHONPATH']) if p)
    os.environ['FSR_TEST_CRASH_ONCE'] = str(crash_file)
    try:  # the workers inherit the environment Ray starts with
        ray.init(address='local', _node_ip_address='127.0.0.1', include_dashboard=False,
                 num_cpus=2, log_to_driver=False)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    yield ray
    ray.shutdown()


@pytest.fixture(scope='module')
def bags(tmp_path_factory):
    """Write the four input bags in one folder, and the bag tool's output for each."""
    root = tmp_path_factory.mktemp('fleet')
    scenes = [make_scene(160, 120, seed=seed) for seed in (21, 22)]
    inputs = root / 'in'
    inputs.mkdir()
    for name, (storage, n) in BAGS.items():
        write_bag(inputs / name, storage, frames_of(scenes, n), list(range(1, n + 1)))
    expected = {}
    for name in BAGS:
        assert bag_tool.main([str(inputs / name), str(root / 'ref' / name), *CLI_TOPICS,
                              *SGBM]) == 0
        expected[name] = read_bag(root / 'ref' / name)
    return inputs, expected


def summary(out: Path) -> dict[str, dict[str, str]]:
    with open(out / 'summary.csv', newline='', encoding='utf-8') as stream:
        return {row['bag']: row for row in csv.DictReader(stream)}


def decoded(bag: tuple[dict, dict]) -> dict[str, list]:
    """Each topic's (log time, message): inputs as bytes, outputs decoded.

    The outputs' bytes may differ where the messages do not: the CDR serialiser leaves the
    alignment padding uninitialised.
    """
    data, types = bag
    return {topic: [(t, raw if topic in (*TOPICS, '/chatter')
                     else decode(raw, MESSAGE_TYPES[types[topic]]))
                    for t, raw in records] for topic, records in data.items()}


def assert_outputs_equal(out: Path, expected: dict, names=BAGS) -> None:
    for name in names:
        got = read_bag(out / name)
        assert got[1] == expected[name][1], name  # the same topics and types
        assert decoded(got) == decoded(expected[name]), name
        # The same files as the bag tool's (the bag file is named after its folder).
        assert sorted(p.name for p in (out / name).iterdir()) == sorted(
            ['metadata.yaml', f'{name}.{"db3" if BAGS[name][0] == "sqlite3" else "mcap"}'])


def run_fleet(*argv: str) -> int:
    return fleet.main([*argv, '--workers', '2', *CLI_TOPICS, *SGBM])


def test_four_bags_two_workers_equal_the_bag_tool_and_a_rerun_does_nothing(
        local_ray, bags, tmp_path, capsys):
    inputs, expected = bags
    out = tmp_path / 'out'
    assert run_fleet(str(inputs), '--out', str(out)) == 0
    assert_outputs_equal(out, expected)
    rows = summary(out)
    assert {r['status'] for r in rows.values()} == {'complete'}
    for name, (_, frames) in BAGS.items():
        assert rows[name]['sets'] == str(frames)
    assert len({r['worker'] for r in rows.values()}) == 2  # both workers took bags
    assert '4 of 4 bags complete (4 in this run); 10 sets in' in capsys.readouterr().out

    # A rerun writes nothing: every output is complete.
    files = {p: p.stat().st_mtime_ns for p in out.rglob('*') if p.is_file()
             and p.name != 'summary.csv'}
    assert run_fleet(str(inputs), '--out', str(out)) == 0
    assert {p: p.stat().st_mtime_ns for p in files} == files
    rows = summary(out)
    assert {r['status'] for r in rows.values()} == {'complete earlier'}
    assert rows['run_c']['sets'] == '4'

    # An output cut off (no complete folder, a partial one with junk) is redone from scratch.
    partial = out / '.partial' / 'run_b'
    (out / 'run_b').rename(partial)
    (partial / 'junk').write_text('left by a killed run')
    assert run_fleet(str(inputs / 'run_*'), '--out', str(out)) == 0
    assert_outputs_equal(out, expected)
    rows = summary(out)
    assert rows['run_b']['status'] == 'complete'
    assert {rows[n]['status'] for n in ('run_a', 'run_c', 'run_d')} == {'complete earlier'}


def test_a_worker_killed_mid_bag_has_its_bag_retried(local_ray, bags, crash_file, tmp_path,
                                                     caplog):
    inputs, expected = bags
    crash_file.write_text('armed')
    out = tmp_path / 'out'
    assert run_fleet(str(inputs), '--out', str(out)) == 0
    assert Path(f'{crash_file}.fired').exists(), 'no worker died: the test proves nothing'
    assert 'died' in caplog.text and 'retrying it (attempt 2 of 3)' in caplog.text
    assert_outputs_equal(out, expected)
    assert {r['status'] for r in summary(out).values()} == {'complete'}
    assert not any((out / '.partial').iterdir())


def test_a_damaged_bag_is_reported_and_the_others_complete(local_ray, bags, tmp_path, capsys):
    inputs, expected = bags
    folder = tmp_path / 'in'
    folder.mkdir()
    for name in ('run_a', 'run_c', 'run_d'):
        (folder / name).symlink_to(inputs / name)
    (mcap,) = (inputs / 'run_a').glob('*.mcap')
    damaged = folder / 'cut_off'
    damaged.mkdir()
    (damaged / 'cut_off.mcap').write_bytes(mcap.read_bytes()[:mcap.stat().st_size // 2])
    (damaged / 'metadata.yaml').write_bytes((inputs / 'run_a' / 'metadata.yaml').read_bytes())
    out = tmp_path / 'out'
    out.mkdir()
    (out / 'run_d').write_text('a file where the output goes: the worker cannot move it there')
    assert run_fleet(str(folder), '--out', str(out)) == 1
    assert_outputs_equal(out, expected, ('run_a', 'run_c'))
    rows = summary(out)
    assert rows['run_d']['status'] == 'failed'
    assert 'NotADirectoryError' in rows['run_d']['reason'], rows['run_d']
    assert rows['cut_off']['status'] == 'failed'
    assert 'cannot read the input bag' in rows['cut_off']['reason']
    assert 'mcap recover' in rows['cut_off']['reason']
    assert not (out / 'cut_off').exists()
    assert 'cut_off' in capsys.readouterr().out


def test_bags_from_files_folders_and_globs(bags, tmp_path):
    inputs, _ = bags
    single = tmp_path / 'single.mcap'
    single.write_bytes(next((inputs / 'run_a').glob('*.mcap')).read_bytes())
    found = fleet.find_bags([str(inputs / 'run_[ab]'), str(single)])
    assert found == [inputs / 'run_a', inputs / 'run_b', single]
    assert fleet.find_bags([str(inputs)]) == [inputs / name for name in sorted(BAGS)]
    assert [j.name for j in fleet.make_jobs(found)] == ['run_a', 'run_b', 'single']
    with pytest.raises(BagError, match='no bag found at'):
        fleet.find_bags([str(tmp_path / 'nothing*')])
    with pytest.raises(BagError, match='the same name would write the same output'):
        fleet.make_jobs([inputs / 'run_a', tmp_path / 'run_a'])


def test_paths_a_node_cannot_see_are_a_message(local_ray, tmp_path):
    with pytest.raises(BagError, match=r'node 127\.0\.0\.1 does not see .*nope.*shared by every'):
        fleet.check_paths_on_every_node(ray, [str(tmp_path / 'nope')], tmp_path)
    fleet.check_paths_on_every_node(ray, [str(tmp_path)], tmp_path)


def subprocess_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED='1', **extra)
    env['PYTHONPATH'] = os.pathsep.join(
        p for p in (str(PATCHES), str(ROOT), env.get('PYTHONPATH')) if p)
    env.pop('RAY_ADDRESS', None)
    return env


def test_without_ray_the_tool_says_how_to_install_it(bags, tmp_path):
    inputs, _ = bags
    proc = subprocess.run(
        [sys.executable, '-m', 'foundation_stereo_ros.fleet', str(inputs), '--out',
         str(tmp_path / 'out'), *CLI_TOPICS, *SGBM], env=subprocess_env(FSR_TEST_NO_RAY='1'),
        capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2, proc.stderr
    assert 'Traceback' not in proc.stderr
    assert "pip install 'foundation_stereo_ros[fleet]'" in proc.stderr, proc.stderr


def test_ctrl_c_keeps_the_finished_bags(bags, tmp_path):
    """Its own local Ray (the default): Ctrl-C after the first bag, which stays complete."""
    inputs, _ = bags
    out = tmp_path / 'out'
    log = tmp_path / 'log.txt'
    with log.open('w') as stream:
        proc = subprocess.Popen(
            [sys.executable, '-m', 'foundation_stereo_ros.fleet', str(inputs), '--out',
             str(out), '--workers', '1', *CLI_TOPICS, '--backend', 'slow', '--quiet'],
            env=subprocess_env(FSR_TEST_SLOW_BACKEND='0.3'), stdout=stream,
            stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 240
        while not (out / 'run_a').exists() and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=120) == 130, log.read_text()
    text = log.read_text()
    assert 'Traceback' not in text, text
    rows = summary(out)
    assert rows['run_a']['status'] == 'complete'
    data, _ = read_bag(out / 'run_a')  # closed and readable, every set in it
    assert len(data['/stereo/disparity']) == BAGS['run_a'][1]
    unfinished = [n for n in BAGS if rows[n]['status'] != 'complete']
    assert unfinished and {rows[n]['status'] for n in unfinished} <= {'interrupted', 'not run'}
    assert not any((out / n).exists() for n in unfinished)


def test_address_joins_a_running_cluster(local_ray, bags, tmp_path):
    """``--address`` of a running Ray (here the module's, as `ray start --head` would run it)."""
    inputs, expected = bags
    address = ray.get_runtime_context().gcs_address
    out = tmp_path / 'out'
    proc = subprocess.run(
        [sys.executable, '-m', 'foundation_stereo_ros.fleet', str(inputs / 'run_d'), '--out',
         str(out), '--address', address, *CLI_TOPICS, *SGBM], env=subprocess_env(),
        capture_output=True, text=True, timeout=240, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert 'Started a local Ray instance' not in proc.stderr
    assert_outputs_equal(out, expected, ('run_d',))
    assert summary(out)['run_d']['status'] == 'complete'

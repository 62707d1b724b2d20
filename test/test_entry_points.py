"""Every documented command works from the colcon install, as a user runs it.

The commands come from their sources of truth: the console scripts from setup.py, the
``python -m foundation_stereo_ros.X`` modules from the README. Each runs in a shell that
sourced ``install/setup.bash`` (what ``colcon build`` made), from a folder outside the source
tree: the tools print their ``--help``; the nodes, which have none, are started with a bad
parameter and must stop with the reason and exit code 1, without a traceback. All run at once
(each start imports torch for seconds).
"""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from package_setup import console_scripts

ROOT = Path(__file__).resolve().parent.parent
INSTALL = ROOT / 'install'
SCRIPTS = INSTALL / 'foundation_stereo_ros' / 'lib' / 'foundation_stereo_ros'
README = ROOT / 'README.md'
PARAMS_FILE = ROOT / 'config' / 'foundation_stereo.yaml'
TIMEOUT = 300.0  # a cold start on a loaded 2-core machine
USAGE = ['--help'], 0, 'usage:'

# Nodes: a bad parameter, the exit code and the words of the reason.
BAD_NODE_PARAMETER = {
    'node': (['--ros-args', '-p', 'backend:=raft'], 1, 'backend must be one of'),
    'camera': (['--ros-args', '-p', 'encoding:=yuv422'], 1, 'encoding must be one of'),
    # The managed node keeps a bad parameter for its configure transition and waits for it;
    # arguments rcl refuses stop it at start like the others.
    'lifecycle': (['--ros-args', '--params-file', '/nonexistent/params.yaml'], 1,
                  'does not exist'),
}
# What each console script and module is, by its module's last part.
KIND = {'ros.node': 'node', 'node': 'node', 'ros.synthetic_camera': 'camera',
        'synthetic.camera_node': 'camera', 'ros.lifecycle_node': 'lifecycle',
        'lifecycle_node': 'lifecycle'}


def documented_modules() -> list[str]:
    """Return the ``python -m foundation_stereo_ros.X`` commands the README shows (X)."""
    found = re.findall(r'python -m foundation_stereo_ros\.([a-z_.]+[a-z_])', README.read_text())
    return sorted(set(found))


def expectation(name: str) -> tuple[list[str], int, str]:
    """Arguments, exit code and words expected of a module (``tools.demo``, ``settings``...)."""
    if name == 'settings':  # prints the node's parameters file
        return [], 0, PARAMS_FILE.read_text().splitlines()[0]
    kind = KIND.get(name)
    return BAD_NODE_PARAMETER[kind] if kind else USAGE


def commands() -> dict[str, tuple[list[str], int, str]]:
    """Each command line to run, with the exit code and words it must give."""
    runs = {}
    for script, target in console_scripts().items():
        args, code, says = expectation(target.split(':')[0].removeprefix('foundation_stereo_ros.'))
        runs[script] = ([str(SCRIPTS / script), *args], code, says)
    for module in documented_modules():
        args, code, says = expectation(module)
        runs[f'-m {module}'] = (['python', '-m', f'foundation_stereo_ros.{module}', *args], code,
                                says)
    return runs


def test_the_readme_documents_the_entry_points_of_the_layout():
    """The modules the README tells users to run include every front end and node shim."""
    assert {'node', 'demo', 'batch', 'sweep', 'bag_tool', 'settings',
            'synthetic.camera_node'} <= set(documented_modules())


def test_every_entry_point_runs_from_the_colcon_install(tmp_path):
    if not (INSTALL / 'setup.bash').is_file():
        pytest.skip(f'{INSTALL}/setup.bash is absent: run colcon build (the CI and '
                    'scripts/test.sh do) to test the installed entry points')
    runs = commands()
    for script in console_scripts():
        assert os.access(SCRIPTS / script, os.X_OK), f'{script} is not installed in {SCRIPTS}'
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}  # only the install's
    procs = {
        name: subprocess.Popen(
            ['bash', '-c', f'source {INSTALL / "setup.bash"} && exec "$@"', 'bash', *argv],
            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for name, (argv, _, _) in runs.items()}
    failures = []
    for name, proc in procs.items():
        try:
            output, _ = proc.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
        _, code, says = runs[name]
        if proc.returncode != code or says not in output or 'Traceback' in output:
            failures.append(f'{name}: exit code {proc.returncode} (expected {code}), expected '
                            f'{says!r} in:\n{output[-2000:]}')
    assert not failures, '\n\n'.join(failures)

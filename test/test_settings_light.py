"""The settings table loads nothing heavy, and the texts derived from it do not drift.

Each check runs in a fresh interpreter: generating the parameters files, importing the table
and printing a tool's ``--help`` must not import torch, OpenCV or rclpy (with torch and cv2
made unimportable, they still work). The README's parameter list names every setting.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from foundation_stereo_ros import choices
from foundation_stereo_ros import settings as S

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ('torch', 'cv2', 'rclpy')
# Run a module as __main__ in a fresh interpreter where torch and cv2 cannot be imported, then
# report which heavy modules were loaded anyway.
RUNNER = '''
import importlib.abc, runpy, sys
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('torch', 'cv2'):
            raise ImportError(f'{name} must not be imported here')
        return None
sys.meta_path.insert(0, Refuse())
module, *sys.argv[1:] = sys.argv[1:]
try:
    runpy.run_module(module, run_name='__main__')
except SystemExit as exc:
    code = exc.code or 0
else:
    code = 0
print('LOADED', *[m for m in HEAVY if m in sys.modules], file=sys.stderr)
sys.exit(code)
'''.replace('HEAVY', repr(HEAVY))


def run_light(module: str, *argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, 'PYTHONPATH': os.pathsep.join(
        p for p in (str(ROOT), os.environ.get('PYTHONPATH')) if p)}
    return subprocess.run([sys.executable, '-c', RUNNER, module, *argv], capture_output=True,
                          text=True, timeout=120, check=False, env=env)


def loaded(run: subprocess.CompletedProcess) -> list[str]:
    (line,) = [x for x in run.stderr.splitlines() if x.startswith('LOADED')]
    return line.split()[1:]


def test_importing_the_settings_table_loads_nothing_heavy():
    run = subprocess.run(
        [sys.executable, '-c', ('import sys; import foundation_stereo_ros.settings; '
                                'import foundation_stereo_ros.synthetic.camera_settings; '
                                f'print(*[m for m in {HEAVY!r} if m in sys.modules])')],
        capture_output=True, text=True, timeout=60, check=True,
        env={**os.environ, 'PYTHONPATH': str(ROOT)})
    assert run.stdout.split() == []


@pytest.mark.parametrize('module, config', [
    ('foundation_stereo_ros.settings', 'foundation_stereo.yaml'),
    ('foundation_stereo_ros.synthetic.camera_settings', 'synthetic_camera.yaml'),
])
def test_parameter_files_are_generated_without_torch(module, config):
    run = run_light(module)
    assert run.returncode == 0, run.stderr
    assert loaded(run) == []
    assert run.stdout == (ROOT / 'config' / config).read_text(), (
        f'regenerate it: python -m {module} > config/{config}')


@pytest.mark.parametrize('module', ['foundation_stereo_ros.demo', 'foundation_stereo_ros.batch',
                                    'foundation_stereo_ros.sweep'])
def test_tool_help_needs_neither_torch_nor_opencv(module):
    run = run_light(module, '--help')
    assert run.returncode == 0, run.stderr
    assert 'usage:' in run.stdout and '--valid-iters' in run.stdout
    assert loaded(run) == []


def readme_parameter_list() -> str:
    """Return the README paragraph that lists the node's parameters ("In short: ...")."""
    text = (ROOT / 'README.md').read_text(encoding='utf-8')
    match = re.search(r'In short:\n(.*?)\n\n', text, re.DOTALL)
    assert match, 'the README lost its parameter list ("In short:" in the node section)'
    return match.group(1)


def test_readme_parameter_list_names_every_setting_and_no_other():
    listed = readme_parameter_list()
    named = set(re.findall(r'`([a-z][a-z0-9_]*)`', listed))
    missing = [s.name for s in S.SETTINGS if s.name not in named]
    assert not missing, f'add to the README parameter list: {missing}'
    # Words in backticks there are settings or the values of a setting with choices.
    values = {c for s in S.SETTINGS for c in s.choices} | {'cuda:N'}
    unknown = sorted(named - set(S.BY_NAME) - values)
    assert not unknown, f'not settings (renamed or removed?): {unknown}'


def test_one_device_name_check_for_both_backends():
    from foundation_stereo_ros.backends.device import resolve_device
    with pytest.raises(ValueError) as expected:
        choices.device_index('gpu0')
    with pytest.raises(ValueError) as torch_side:
        resolve_device('gpu0')
    assert str(torch_side.value) == str(expected.value)
    assert "device must be 'auto', 'cuda', 'cuda:N' or 'cpu'" in str(expected.value)
    # The table accepts exactly what the check accepts.
    for name in ('auto', 'cuda', 'cpu', 'cuda:3', 'gpu0', 'cuda:', 'CPU'):
        try:
            choices.device_index(name)
            accepted = True
        except ValueError:
            accepted = False
        assert (S.check_value('device', name) is None) == accepted, name

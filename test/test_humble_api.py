"""The package and its tests use only rclpy API that Humble has.

Humble's rclpy lacks the parameter callbacks and modules that arrived in Iron and later
(``test/node_patches/sitecustomize.py`` lists them and removes them under
``FSR_TEST_HUMBLE_RCLPY=1``). The node runs under that patch in test_node_e2e.py; here the
sources are scanned for those names, and the test modules that talk to ROS are collected
under the patch, as ``colcon test`` on a Humble install would collect them.
"""
from __future__ import annotations

import ast
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

TEST_DIR = Path(__file__).resolve().parent
ROOT = TEST_DIR.parent
PATCHES = TEST_DIR / 'node_patches'


def _patch_lists():
    spec = importlib.util.spec_from_file_location('humble_patch', PATCHES / 'sitecustomize.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # no switch set: defines the lists, changes nothing
    return module.IRON_MODULES, module.IRON_PARAMETER_CALLBACKS


def _sources():
    yield from sorted((ROOT / 'foundation_stereo_ros').rglob('*.py'))
    yield from sorted(p for p in TEST_DIR.rglob('*.py') if p.parent != PATCHES)
    yield from sorted((ROOT / 'launch').glob('*.py'))


def test_sources_use_no_iron_and_later_rclpy_api():
    modules, methods = _patch_lists()
    found = []
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f'{node.module}.{a.name}' for a in node.names]
            found += [f'{path.relative_to(ROOT)}:{node.lineno} imports {name}'
                      for name in names if name in modules]
            if isinstance(node, ast.Attribute) and node.attr in methods:
                found.append(f'{path.relative_to(ROOT)}:{node.lineno} uses {node.attr}')
    assert not found, 'rclpy API that Humble lacks:\n' + '\n'.join(found)


def test_ros_test_modules_collect_on_humble_rclpy():
    """Every test module that imports rclpy collects with the Iron-and-later API removed."""
    ros_tests = sorted(p.name for p in TEST_DIR.glob('test_*.py')
                       if 'rclpy' in p.read_text() and p.name != Path(__file__).name)
    env = dict(os.environ, FSR_TEST_HUMBLE_RCLPY='1', PYTHONPATH=os.pathsep.join(
        p for p in (str(PATCHES), str(ROOT), os.environ.get('PYTHONPATH')) if p))
    result = subprocess.run(
        [sys.executable, '-m', 'pytest', '--collect-only', '-q', '-p', 'no:cacheprovider',
         *ros_tests], check=False, cwd=TEST_DIR, env=env, capture_output=True, text=True,
        timeout=600)
    output = result.stdout + result.stderr
    assert 'humble rclpy: removed Node.add_pre_set_parameters_callback' in output, output
    assert result.returncode == 0 and 'ERROR collecting' not in output, output

"""Parameters are never dropped in silence: the node's start and its set-parameters service.

rcl merges params files and ``-p`` values into one value per name and drops, without a word,
a later value whose type differs from an earlier one; rclpy turns a bad QoS override into a
traceback and answers SetParameters on an undeclared name without the name. Each case runs
the node as ``python -m foundation_stereo_ros.node`` (as users start it) and reads its log.
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest
import rclpy
from param_client import set_parameters
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from test_node_e2e import TIMEOUT, NodeProcess, node_command, node_env

from foundation_stereo_ros.ros import param_sources

NAMESPACE = f'/params{os.getpid()}'


def start_all(cases):
    """Start one node per case at once (each start costs seconds of imports); return outputs."""
    procs = {name: subprocess.Popen(command, env=node_env(), text=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
             for name, (command, _) in cases.items()}
    results = {}
    for name, proc in procs.items():
        try:
            out, _ = proc.communicate(timeout=180)
        finally:
            proc.kill()
        results[name] = (proc.returncode, out)
    return results


def test_bad_values_are_refused_also_after_the_package_params_file(tmp_path):
    """Refused with parameter, value and type, whether or not a params file set them first."""
    half = tmp_path / 'half.yaml'
    half.write_text('/**:\n  ros__parameters:\n    scale: half\n')
    listed = tmp_path / 'list.yaml'
    listed.write_text('/**:\n  ros__parameters:\n    scale: [0.5, 1.0]\n')
    bad = {  # name: (-p or params file, fragments the FATAL line must hold)
        'valid_iters': (['-p', 'valid_iters:=abc'], ("valid_iters cannot be 'abc'",
                                                     'expected an integer')),
        'scale': (['-p', 'scale:=half'], ("scale cannot be 'half'", 'expected a number')),
        'rectify': (['-p', 'rectify:=maybe'], ("rectify cannot be 'maybe'",
                                               'expected a boolean')),
        'file word': (['--params-file', str(half)], ("scale cannot be 'half'", str(half))),
        'file list': (['--params-file', str(listed)], ('scale cannot be [0.5, 1.0]',
                                                       'expected a number')),
    }
    cases = {}
    for name, (args, says) in bad.items():
        # node_command puts the package's params file first, as the README's command line.
        cases[f'{name} after the package file'] = (
            node_command('-p', 'backend:=sgbm', *args), says)
        cases[f'{name} alone'] = (
            [sys.executable, '-m', 'foundation_stereo_ros.node', '--ros-args',
             '-p', 'backend:=sgbm', *args], says)
    for name, (code, out) in start_all(cases).items():
        assert code == 1, (name, out)
        assert '[FATAL]' in out and 'Traceback' not in out, (name, out)
        for fragment in cases[name][1]:
            assert fragment in out, (name, fragment, out)


def test_bad_qos_override_and_foreign_params_file(tmp_path):
    """A bad QoS override is a FATAL line with its valid values; a foreign file is named."""
    foreign = tmp_path / 'other.yaml'
    foreign.write_text('camera_driver:\n  ros__parameters:\n    backend: sgbm\n'
                       '/robot/depth:\n  ros__parameters:\n    z_far: 5.0\n')
    override = 'qos_overrides./left/image_rect.subscription.reliability'
    cases = {
        'reliability': (node_command('-p', 'backend:=sgbm', '-p', f'{override}:=sometimes'),
                        (f"QoS override {override} cannot be 'sometimes'",
                         'reliable', 'best_effort')),
        'depth': (node_command('-p', 'backend:=sgbm', '-p',
                               'qos_overrides./points.publisher.depth:=deep'),
                  ('qos_overrides./points.publisher.depth', 'non-negative integer')),
        # Its sections are for other nodes: the node would run on its defaults.
        'foreign file': (node_command('--params-file', str(foreign)),
                         (f'no section of the params file {foreign} applies',
                          'this node (/foundation_stereo)', 'camera_driver, /robot/depth')),
    }
    for name, (code, out) in start_all(cases).items():
        assert code == 1, (name, out)
        assert 'Traceback' not in out and '[FATAL]' in out, (name, out)
        for fragment in cases[name][1]:
            assert fragment in out, (name, fragment, out)


def test_set_parameters_on_an_undeclared_name_names_it_and_the_closest():
    node = NodeProcess('-p', 'backend:=sgbm', '-r', f'__ns:={NAMESPACE}')
    context = rclpy.Context()
    rclpy.init(context=context)
    client_node = rclpy.create_node('params_client', context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(client_node)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    try:
        assert node.wait_for('sgbm backend on'), node.output
        results = set_parameters(client_node, f'{NAMESPACE}/foundation_stereo',
                                 [Parameter('z_farr', value=5.0),
                                  Parameter('z_far', value=50.0)], TIMEOUT)
    finally:
        executor.shutdown(timeout_sec=5.0)
        client_node.destroy_node()
        rclpy.try_shutdown(context=context)
        code = node.stop()
    unknown, known = results
    assert not unknown.successful
    assert 'z_farr is not a parameter' in unknown.reason and 'z_far?' in unknown.reason
    assert known.successful, known.reason
    assert code == 0 and 'Traceback' not in node.output, node.output


@pytest.mark.parametrize('key, name, matches', [
    ('/**', '/foundation_stereo', True),
    ('/**', '/robot/stereo/foundation_stereo', True),
    ('foundation_stereo', '/foundation_stereo', True),
    ('/robot/foundation_stereo', '/foundation_stereo', False),
    ('/**/foundation_stereo', '/a/b/foundation_stereo', True),
    ('/*/foundation_stereo', '/a/b/foundation_stereo', False),
    ('/*/foundation_stereo', '/a/foundation_stereo', True),
    ('camera_driver', '/foundation_stereo', False),
])
def test_params_file_sections_match_node_names_like_rcl(tmp_path, key, name, matches):
    path = tmp_path / 'p.yaml'
    path.write_text(f'{key}:\n  ros__parameters:\n    z_far: 5.0\n')
    argv = ['x', '--ros-args', '--params-file', str(path)]
    given = param_sources.given_values(argv, name)
    assert (given == [param_sources.GivenValue('z_far', 5.0, f'{path} ({key})')]) == matches
    assert bool(param_sources.unmatched_files(argv, name)) != matches


def test_command_line_values_typed_like_rcl():
    argv = ['node', '--ros-args', '-p', 'a:=abc', '--param', 'b:=1', '-p', 'c:=1.5', '-p',
            'd:=true', '-p', 'e:=[0.5, 1.0]', '-p', "f:='7'", '-p', 'g:=1e3', '--', '-p', 'h:=1']
    values = {g.name: g.value for g in param_sources.given_values(argv, '/n')}
    assert values == {'a': 'abc', 'b': 1, 'c': 1.5, 'd': True, 'e': [0.5, 1.0], 'f': '7',
                      'g': 1000.0}

"""Launch files and parameter files: what can be checked without launch/launch_ros installed.

The launch files are executed against small recording stand-ins for the launch and launch_ros
classes, so the test sees every action they create: which executables (must be console scripts
of setup.py), which parameter files (must exist, parse as ROS params YAML and hold only
parameters the node declares, with valid values) and which remaps (must target the node's
input topics). Where launch_ros is installed, the files also build a real LaunchDescription.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import py_compile
import subprocess
import sys
import types
from pathlib import Path

import pytest
import yaml
from lifecycle_msgs.msg import Transition
from package_setup import console_scripts

from foundation_stereo_ros import settings
from foundation_stereo_ros.ros.topic_names import INPUT_TOPICS, RAW_INPUT_TOPICS
from foundation_stereo_ros.synthetic.camera_settings import SETTINGS as CAMERA_TABLE
from foundation_stereo_ros.synthetic.camera_settings import camera_params_yaml

ROOT = Path(__file__).resolve().parent.parent
LAUNCH_DIR = ROOT / 'launch'
CAMERA_SETTINGS = {s.name: s for s in CAMERA_TABLE}


class Recorded:
    """Stands in for a launch class: keeps its constructor arguments."""

    def __init__(self, *args, **kwargs):
        self.args = args
        self.kwargs = kwargs


STAND_INS = {
    'launch': ['LaunchDescription'],
    'launch.actions': ['DeclareLaunchArgument', 'OpaqueFunction', 'IncludeLaunchDescription',
                       'Shutdown', 'EmitEvent', 'RegisterEventHandler'],
    'launch.events': ['matches_action'],
    'launch.launch_description': ['LaunchDescription'],
    'launch.launch_description_sources': ['PythonLaunchDescriptionSource'],
    'launch.substitutions': ['LaunchConfiguration', 'PathJoinSubstitution'],
    'launch_ros': [],
    'launch_ros.actions': ['Node', 'LifecycleNode'],
    'launch_ros.event_handlers': ['OnStateTransition'],
    'launch_ros.events': [],
    'launch_ros.events.lifecycle': ['ChangeState'],
    'launch_ros.parameter_descriptions': ['ParameterValue'],
    'launch_ros.substitutions': ['FindPackageShare'],
}


@pytest.fixture
def stand_ins(monkeypatch):
    classes = {}
    for module_name, class_names in STAND_INS.items():
        module = types.ModuleType(module_name)
        for name in class_names:
            cls = classes.setdefault(name, type(name, (Recorded,), {}))
            setattr(module, name, cls)
        monkeypatch.setitem(sys.modules, module_name, module)
    return classes


def load_launch_file(name):
    path = LAUNCH_DIR / name
    spec = importlib.util.spec_from_file_location(name.replace('.', '_'), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def ros_params(path):
    """Read the parameters of a ROS params YAML file for the wildcard node (shape checked)."""
    data = yaml.safe_load(Path(path).read_text())
    assert list(data) == ['/**'], 'parameters for any node name and namespace'
    assert list(data['/**']) == ['ros__parameters']
    return data['/**']['ros__parameters']


def arguments_of(description, stand_ins):
    return {a.args[0]: a.kwargs['default_value'] for a in description.args[0]
            if isinstance(a, stand_ins['DeclareLaunchArgument'])}


@pytest.mark.parametrize('name', ['foundation_stereo.launch.py', 'synthetic_demo.launch.py'])
def test_launch_files_compile(name):
    py_compile.compile(str(LAUNCH_DIR / name), doraise=True)


@pytest.mark.parametrize('script,target,argv,code,says', [
    ('foundation_stereo_node', 'foundation_stereo_ros.ros.node:main',
     ['--ros-args', '-p', 'backend:=raft'], 1, 'backend must be one of'),
    # Started right, it waits unconfigured; a missing --params-file ends it at once (runner).
    ('foundation_stereo_lifecycle_node', 'foundation_stereo_ros.ros.lifecycle_node:main',
     ['--ros-args', '--params-file', '/nonexistent.yaml'], 1, 'does not exist'),
    ('synthetic_stereo_camera', 'foundation_stereo_ros.ros.synthetic_camera:main',
     ['--ros-args', '-p', 'encoding:=yuv422'], 1, 'encoding must be one of'),
    ('foundation_stereo_demo', 'foundation_stereo_ros.tools.demo:main', ['--help'], 0, 'usage:'),
    ('foundation_stereo_bag', 'foundation_stereo_ros.tools.bag_tool:main', ['--help'], 0,
     'usage:'),
])
def test_console_scripts_run_their_mains(script, target, argv, code, says):
    """Each console script names a main, and ``python -m`` of its module runs that main."""
    assert console_scripts()[script] == target
    module_name, function = target.split(':')
    assert callable(getattr(importlib.import_module(module_name), function))
    env = {**os.environ, 'PYTHONPATH': os.pathsep.join(
        p for p in (str(ROOT), os.environ.get('PYTHONPATH')) if p)}
    run = subprocess.run([sys.executable, '-m', module_name, *argv], check=False,
                         capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode == code, run.stderr
    assert says in run.stdout + run.stderr
    assert 'Traceback' not in run.stderr


def test_node_params_file_is_generated_from_the_settings_table():
    text = (ROOT / 'config' / 'foundation_stereo.yaml').read_text()
    assert text == settings.params_yaml(), (
        'regenerate it: python -m foundation_stereo_ros.settings > config/foundation_stereo.yaml')
    params = ros_params(ROOT / 'config' / 'foundation_stereo.yaml')
    for name, value in params.items():
        assert settings.check_value(name, value) is None, (name, value)
        # Same type as declared: rclpy refuses a string for a double parameter (and a list
        # of strings is a string array, a list setting's tuple default).
        setting = settings.BY_NAME[name]
        assert type(value) is (list if setting.is_list else setting.item_type), name
        if setting.is_list:
            assert all(type(item) is setting.item_type for item in value), name
    assert {name: settings.BY_NAME[name].coerce(value) for name, value in params.items()} \
        == settings.DEFAULTS, 'the file documents the defaults'


def test_camera_params_file_matches_declared_parameters():
    text = (ROOT / 'config' / 'synthetic_camera.yaml').read_text()
    assert text == camera_params_yaml(), (
        'regenerate it: python -m foundation_stereo_ros.synthetic.camera_settings > '
        'config/synthetic_camera.yaml')
    params = ros_params(ROOT / 'config' / 'synthetic_camera.yaml')
    assert params == {s.name: s.default for s in CAMERA_TABLE} | {'moving': True}
    assert set(params) <= set(CAMERA_SETTINGS)
    for name, value in params.items():
        assert CAMERA_SETTINGS[name].check(value) is None, (name, value)


def test_foundation_stereo_launch(stand_ins):
    module = load_launch_file('foundation_stereo.launch.py')
    description = module.generate_launch_description()
    assert isinstance(description, stand_ins['LaunchDescription'])
    args = arguments_of(description, stand_ins)
    for name in ('namespace', 'checkpoint', 'backend', 'params_file', 'left_image',
                 'left_info', 'right_image', 'right_info', 'log_level', 'rectify',
                 'image_transport', 'left_raw_image', 'right_raw_image', 'model', 'cameras',
                 'lifecycle', 'autostart'):
        assert name in args, name
    assert Path(args['params_file']).resolve() == ROOT / 'config' / 'foundation_stereo.yaml'

    (opaque,) = [a for a in description.args[0]
                 if isinstance(a, stand_ins['OpaqueFunction'])]
    context = types.SimpleNamespace(launch_configurations={
        **args, 'backend': 'sgbm', 'checkpoint': '', 'namespace': 'zed',
        'left_image': 'left/image_rect_color'})
    (node,) = opaque.kwargs['function'](context)
    kw = node.kwargs
    assert kw['package'] == 'foundation_stereo_ros'
    assert kw['executable'] in console_scripts()
    assert kw['namespace'] == 'zed'
    params_file, overrides = kw['parameters']
    ros_params(params_file)
    assert overrides == {'backend': 'sgbm'}, 'empty launch arguments leave the params file alone'
    assert isinstance(node, stand_ins['Node']) and args['lifecycle'] == 'false'
    remaps = dict(kw['remappings'])
    assert set(remaps) == set(INPUT_TOPICS) | set(RAW_INPUT_TOPICS)
    assert remaps['left/image_rect'] == 'left/image_rect_color'
    assert remaps['right/camera_info'] == 'right/camera_info'
    assert remaps['left/image_raw'] == 'left/image_raw'
    assert kw['ros_arguments'] == ['--log-level', args['log_level']]

    # rectify and image_transport reach the node as typed parameters.
    context.launch_configurations.update(rectify='true', image_transport='compressed')
    (node,) = opaque.kwargs['function'](context)
    _, overrides = node.kwargs['parameters']
    assert overrides == {'backend': 'sgbm', 'rectify': True, 'image_transport': 'compressed'}
    # cameras:=[front,rear] reaches the node as a string array.
    for text in ('[front,rear]', '[front, rear]', 'front,rear', "['front', 'rear']"):
        context.launch_configurations.update(cameras=text)
        (node,) = opaque.kwargs['function'](context)
        assert node.kwargs['parameters'][1]['cameras'] == ['front', 'rear'], text
    context.launch_configurations.update(cameras='', rectify='', image_transport='')
    # lifecycle:=true: the managed node, configured then activated by launch events...
    context.launch_configurations.update(lifecycle='true')
    managed, handler, configure = opaque.kwargs['function'](context)
    assert isinstance(managed, stand_ins['LifecycleNode'])
    assert managed.kwargs['executable'] == 'foundation_stereo_lifecycle_node'
    assert managed.kwargs['executable'] in console_scripts()
    assert managed.kwargs['name'] == args['node_name'] and managed.kwargs['namespace'] == 'zed'
    transitions = {}
    for event in [configure, *handler.args[0].kwargs['entities']]:
        change = event.kwargs['event']
        assert change.kwargs['lifecycle_node_matcher'].args == (managed,)
        transitions[change.kwargs['transition_id']] = event
    on_inactive = handler.args[0].kwargs
    assert on_inactive['target_lifecycle_node'] is managed
    assert (on_inactive['start_state'], on_inactive['goal_state']) == ('configuring', 'inactive')
    assert set(transitions) == {Transition.TRANSITION_CONFIGURE, Transition.TRANSITION_ACTIVATE}
    assert transitions[Transition.TRANSITION_CONFIGURE] is configure
    # ...unless autostart:=false leaves it to a lifecycle manager.
    context.launch_configurations.update(autostart='false')
    (managed,) = opaque.kwargs['function'](context)
    assert isinstance(managed, stand_ins['LifecycleNode'])
    context.launch_configurations.update(lifecycle='false', autostart='true')
    # A params file that does not exist fails the launch with its path (launch_ros would
    # only warn and start the node on its defaults).
    context.launch_configurations['params_file'] = '/nonexistent.yaml'
    with pytest.raises(RuntimeError, match='params_file:=/nonexistent.yaml does not exist'):
        opaque.kwargs['function'](context)
    # The node's end ends the launch; its failure (at start) fails it: launch turns an
    # exception in an event handler into exit code 1 of ros2 launch, a Shutdown alone gives 0.
    end = kw['on_exit']

    def exited(code):
        return types.SimpleNamespace(returncode=code, process_name='foundation_stereo_node-1')

    running = types.SimpleNamespace(is_shutdown=False)
    with pytest.raises(RuntimeError, match='foundation_stereo_node-1 exited with code 1'):
        end(exited(1), running)
    (shutdown,) = end(exited(0), running)
    assert isinstance(shutdown, stand_ins['Shutdown'])
    # Stopped by the launch itself (Ctrl-C, then SIGTERM after its timeout): not a failure.
    (shutdown,) = end(exited(-15), types.SimpleNamespace(is_shutdown=True))
    assert isinstance(shutdown, stand_ins['Shutdown'])


def test_synthetic_demo_launch(stand_ins):
    module = load_launch_file('synthetic_demo.launch.py')
    description = module.generate_launch_description()
    actions = description.args[0]
    args = arguments_of(description, stand_ins)
    assert args['backend'] == 'sgbm', 'the demo runs without model weights'

    (opaque,) = [a for a in actions if isinstance(a, stand_ins['OpaqueFunction'])]
    context = types.SimpleNamespace(launch_configurations=dict(args))
    (camera,) = opaque.kwargs['function'](context)
    assert isinstance(camera, stand_ins['Node'])
    assert camera.kwargs['executable'] in console_scripts()
    assert camera.kwargs['namespace'] == args['namespace']
    params_file, overrides = camera.kwargs['parameters']
    camera_params = ros_params(params_file)
    assert camera_params['moving'] is True
    assert set(overrides) <= set(CAMERA_SETTINGS)
    for name, value in overrides.items():
        assert CAMERA_SETTINGS[name].check(value) is None, (name, value)
    assert overrides['rate'] == 10.0 and type(overrides['rate']) is float

    # Two synthetic cameras into one node: each in its namespace, its own scenes and frames.
    context.launch_configurations['cameras'] = '[front,rear]'
    front, rear = opaque.kwargs['function'](context)
    assert (front.kwargs['namespace'], rear.kwargs['namespace']) == (
        f'{args["namespace"]}/front', f'{args["namespace"]}/rear')
    seeds = {n.kwargs['parameters'][1]['seed'] for n in (front, rear)}
    frames = {n.kwargs['parameters'][1]['frame_id'] for n in (front, rear)}
    assert len(seeds) == 2 and len(frames) == 2

    (include,) = [a for a in actions if isinstance(a, stand_ins['IncludeLaunchDescription'])]
    source = include.args[0]
    included = Path(source.args[0])
    assert included.resolve() == LAUNCH_DIR / 'foundation_stereo.launch.py'
    passed = dict(include.kwargs['launch_arguments'])
    included_args = arguments_of(
        load_launch_file('foundation_stereo.launch.py').generate_launch_description(),
        stand_ins)
    assert set(passed) <= set(included_args)
    assert 'namespace' in passed, 'camera and node share a namespace, topics line up'
    assert passed['cameras'].args == ('cameras',), 'the node serves the same cameras'


def test_launch_files_with_real_launch_ros():
    pytest.importorskip('launch_ros', reason='launch_ros is not installed (PyPI has no Jazzy '
                        'launch_ros); the stand-in tests above cover the files')
    from launch import LaunchDescription

    for name in ('foundation_stereo.launch.py', 'synthetic_demo.launch.py'):
        assert isinstance(load_launch_file(name).generate_launch_description(),
                          LaunchDescription)

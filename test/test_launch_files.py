"""Launch files and parameter files: what can be checked without launch/launch_ros installed.

The launch files are executed against small recording stand-ins for the launch and launch_ros
classes, so the test sees every action they create: which executables (must be console scripts
of setup.py), which parameter files (must exist, parse as ROS params YAML and hold only
parameters the node declares, with valid values) and which remaps (must target the node's
input topics). Where launch_ros is installed, the files also build a real LaunchDescription.
"""
from __future__ import annotations

import ast
import importlib.util
import py_compile
import sys
import types
from pathlib import Path

import pytest
import yaml

from foundation_stereo_ros import node_params
from foundation_stereo_ros.synthetic.camera_node import PARAMETERS as CAMERA_PARAMETERS

ROOT = Path(__file__).resolve().parent.parent
LAUNCH_DIR = ROOT / 'launch'
NODE_INPUTS = ('left/image_rect', 'left/camera_info', 'right/image_rect', 'right/camera_info')


class Recorded:
    """Stands in for a launch class: keeps its constructor arguments."""

    def __init__(self, *args, **kwargs):
        self.args = args
        self.kwargs = kwargs


STAND_INS = {
    'launch': ['LaunchDescription'],
    'launch.actions': ['DeclareLaunchArgument', 'OpaqueFunction', 'IncludeLaunchDescription'],
    'launch.launch_description': ['LaunchDescription'],
    'launch.launch_description_sources': ['PythonLaunchDescriptionSource'],
    'launch.substitutions': ['LaunchConfiguration', 'PathJoinSubstitution'],
    'launch_ros': [],
    'launch_ros.actions': ['Node'],
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


def console_scripts():
    tree = ast.parse((ROOT / 'setup.py').read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                if isinstance(key, ast.Constant) and key.value == 'console_scripts':
                    entries = ast.literal_eval(value)
                    return {e.split('=')[0].strip(): e.split('=')[1].strip() for e in entries}
    raise AssertionError('setup.py has no console_scripts')


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


@pytest.mark.parametrize('script,target', [
    ('foundation_stereo_node', 'foundation_stereo_ros.node:main'),
    ('synthetic_stereo_camera', 'foundation_stereo_ros.synthetic.camera_node:main'),
    ('foundation_stereo_bag', 'foundation_stereo_ros.bag_tool:main'),
])
def test_console_scripts_point_at_mains(script, target):
    assert console_scripts()[script] == target
    module_name, function = target.split(':')
    assert importlib.util.find_spec(module_name) is not None
    source = Path(importlib.util.find_spec(module_name).origin).read_text()
    assert f'def {function}(' in source and "if __name__ == '__main__':" in source


def test_node_params_file_matches_declared_parameters():
    params = ros_params(ROOT / 'config' / 'foundation_stereo.yaml')
    assert set(params) == set(node_params.SPECS), 'every parameter, nothing else'
    for name, value in params.items():
        assert node_params.check_value(name, value) is None, (name, value)
        # Same type as declared: rclpy refuses an int for a double parameter.
        assert type(value) is type(node_params.DEFAULTS[name]), name
    assert params == node_params.DEFAULTS, 'the file documents the defaults'


def test_camera_params_file_matches_declared_parameters():
    params = ros_params(ROOT / 'config' / 'synthetic_camera.yaml')
    assert set(params) <= set(CAMERA_PARAMETERS)
    for name, value in params.items():
        assert type(value) is type(CAMERA_PARAMETERS[name][0]), name


def test_foundation_stereo_launch(stand_ins):
    module = load_launch_file('foundation_stereo.launch.py')
    description = module.generate_launch_description()
    assert isinstance(description, stand_ins['LaunchDescription'])
    args = arguments_of(description, stand_ins)
    for name in ('namespace', 'checkpoint', 'backend', 'params_file', 'left_image',
                 'left_info', 'right_image', 'right_info', 'log_level'):
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
    remaps = dict(kw['remappings'])
    assert set(remaps) == set(NODE_INPUTS)
    assert remaps['left/image_rect'] == 'left/image_rect_color'
    assert remaps['right/camera_info'] == 'right/camera_info'
    assert kw['ros_arguments'] == ['--log-level', args['log_level']]


def test_synthetic_demo_launch(stand_ins):
    module = load_launch_file('synthetic_demo.launch.py')
    description = module.generate_launch_description()
    actions = description.args[0]
    args = arguments_of(description, stand_ins)
    assert args['backend'] == 'sgbm', 'the demo runs without model weights'

    (camera,) = [a for a in actions if isinstance(a, stand_ins['Node'])]
    assert camera.kwargs['executable'] in console_scripts()
    params_file, overrides = camera.kwargs['parameters']
    assert params_file.args == ('camera_params_file',)  # LaunchConfiguration of that argument
    camera_params = ros_params(args['camera_params_file'])
    assert camera_params['moving'] is True
    assert set(overrides) <= set(CAMERA_PARAMETERS)
    rate = overrides['rate']
    assert rate.kwargs['value_type'] is float

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


def test_launch_files_with_real_launch_ros():
    pytest.importorskip('launch_ros', reason='launch_ros is not installed (PyPI has no Jazzy '
                        'launch_ros); the stand-in tests above cover the files')
    from launch import LaunchDescription

    for name in ('foundation_stereo.launch.py', 'synthetic_demo.launch.py'):
        assert isinstance(load_launch_file(name).generate_launch_description(),
                          LaunchDescription)

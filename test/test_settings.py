"""The settings table and every surface derived from it: node, YAML, demo, bag tool, pipeline."""
import argparse
import math
from pathlib import Path

import pytest
import rclpy
import yaml

from foundation_stereo_ros import settings as S
from foundation_stereo_ros.choices import BACKENDS
from foundation_stereo_ros.pipeline import PipelineConfig
from foundation_stereo_ros.sync import SYNC_POLICIES
from foundation_stereo_ros.tools import bag_tool, demo

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope='module')
def declared():
    """Every parameter the real node declares: name -> (value, descriptor)."""
    from foundation_stereo_ros.ros.node import FoundationStereoNode

    context = rclpy.Context()
    rclpy.init(context=context)
    node = FoundationStereoNode(context=context, namespace='/settings_test',
                                parameter_overrides=[rclpy.parameter.Parameter('backend',
                                                                               value='sgbm')])
    try:
        # Not ours: rclpy's own parameters and the QoS overrides it declares per topic.
        names = [n for n in node.list_parameters([], 0).names
                 if n not in ('use_sim_time', 'start_type_description_service')
                 and not n.startswith('qos_overrides.')]
        yield {n: (node.get_parameter(n).value, node.describe_parameter(n)) for n in names}
    finally:
        node.destroy_node()
        rclpy.try_shutdown(context=context)


def tool_defaults(parser: argparse.ArgumentParser) -> dict:
    return {a.dest: a.default for a in parser._actions if a.dest in S.BY_NAME}


def test_node_yaml_demo_and_bag_tool_agree_on_every_default(declared):
    node = {name: value for name, (value, _) in declared.items()}
    assert set(node) == set(S.BY_NAME), 'the node declares every setting and nothing else'
    # ROS and YAML give lists where the table holds tuples (list settings).
    assert {n: tuple(v) if isinstance(v, list) else v for n, v in node.items()} == {
        **S.DEFAULTS, 'backend': 'sgbm'}
    params = yaml.safe_load((ROOT / 'config/foundation_stereo.yaml').read_text())
    assert {n: S.BY_NAME[n].coerce(v) for n, v in params['/**']['ros__parameters'].items()} \
        == S.DEFAULTS
    assert params['/**']['ros__parameters']['cameras'] == ['']
    demo_defaults = tool_defaults(demo.build_parser())
    bag_defaults = tool_defaults(bag_tool.build_parser())
    for name, default in S.DEFAULTS.items():
        if name in demo_defaults:
            assert demo_defaults[name] == default, name
        if name in bag_defaults:
            assert bag_defaults[name] == default, name
    # The network and pipeline settings are on both command lines; sync on the bag tool's.
    both = {s.name for s in S.SETTINGS if s.target in (S.BACKEND, S.PIPELINE)}
    assert both <= set(demo_defaults) and both <= set(bag_defaults)
    assert {'sync_policy', 'slop', 'queue_size'} <= set(bag_defaults)


@pytest.mark.parametrize('name', [s.name for s in S.SETTINGS if s.choices])
def test_node_demo_and_bag_tool_accept_the_same_choices(declared, name):
    setting = S.BY_NAME[name]
    _, descriptor = declared[name]
    assert descriptor.additional_constraints == setting.constraints
    for parser, module, extra in ((demo.build_parser(), demo, []),
                                  (bag_tool.build_parser(), bag_tool, ['in', 'out'])):
        if name not in tool_defaults(parser):
            continue  # sync_policy: the demo has a single pair, nothing to synchronise
        models = ['--checkpoint', 'x.pth', '--model', 'x.onnx']   # what each backend needs
        for choice in setting.choices:
            args = parser.parse_args([*extra, setting.option, choice, *models])
            assert S.from_args(args, module_targets(module))[name] == choice
        args = parser.parse_args([*extra, setting.option, 'bogus', *models])
        with pytest.raises(S.SettingsError, match=f'{setting.option} must be one of'):
            S.from_args(args, module_targets(module))


def module_targets(module):
    return bag_tool.BAG_SETTINGS if module is bag_tool else (S.BACKEND, S.PIPELINE)


def test_enumerations_come_from_their_owners():
    assert S.BY_NAME['backend'].choices == tuple(BACKENDS)
    assert S.BY_NAME['sync_policy'].choices == SYNC_POLICIES


def test_node_descriptors_carry_ranges_and_runtime_rules(declared):
    _, scale = declared['scale']
    assert scale.floating_point_range[0].from_value == pytest.approx(0.05)
    assert not scale.read_only and scale.dynamic_typing  # 1 is accepted for 1.0
    _, iters = declared['valid_iters']
    assert (iters.integer_range[0].from_value, iters.integer_range[0].to_value) == (0, 100)
    _, backend = declared['backend']
    assert backend.read_only and 'restart' in backend.description


@pytest.mark.parametrize('name,value,fragment', [
    ('backend', 'raft', 'one of'),
    ('device', 'gpu', 'one of auto, cuda, cpu (or cuda:N)'),
    ('device', 'cuda:x', 'one of'),
    ('precision', 'int8', 'one of auto, fp32, fp16, bf16'),
    ('warmup_width', -1, '0 to 8192'),
    ('valid_iters', -1, '0 to 100'),
    ('valid_iters', 101, '0 to 100'),
    ('valid_iters', 3.0, 'must be an int'),
    ('valid_iters', True, 'must be an int'),
    ('scale', 1.5, '0.05 to 1.0'),
    ('scale', 0.0, '0.05 to 1.0'),
    ('scale', math.nan, 'finite'),
    ('z_far', math.inf, 'finite'),
    ('scale', '0.5', 'must be a float'),
    ('hierarchical', 1, 'must be a bool'),
    ('num_disparities', 100, 'in steps of 16'),
    ('block_size', 4, 'in steps of 2'),
    ('sgbm_mode', 'fast', 'sgbm_3way'),
    ('sync_policy', 'nearest', 'exact, approximate'),
    ('nonsense', 1, 'unknown setting'),
    ('cameras', 'front', 'must be a list of str'),
    ('cameras', [], 'at least one item'),
    ('cameras', ['front', 'front'], 'more than once'),
    ('cameras', ['/front'], 'relative namespace'),
    ('cameras', ['front/'], 'relative namespace'),
    ('cameras', [3], 'must be a str'),
    ('camera_max_rates', [-1.0], '0.0 to 1000.0'),
    ('camera_max_rates', [math.nan], 'finite'),
])
def test_bad_values_rejected_with_reason(name, value, fragment):
    reason = S.check_value(name, value)
    assert reason is not None and fragment in reason, reason
    assert name in reason


@pytest.mark.parametrize('name,value', [
    ('device', 'cuda:1'), ('scale', 1), ('num_disparities', 272), ('block_size', 31),
    ('valid_iters', 1), ('z_near', 0.0), ('min_disparity', -16),
    ('cameras', ['']), ('cameras', ('front', 'rear', 'head/left')), ('cameras', ['', 'rear']),
    ('camera_max_rates', [15, 15.0]),
])
def test_good_values_accepted(name, value):
    assert S.check_value(name, value) is None


@pytest.mark.parametrize('name,value', [
    ('backend', 'sgbm'), ('checkpoint', '/x.pth'), ('device', 'cpu'), ('precision', 'fp16'),
    ('sync_policy', 'approximate'), ('slop', 0.05), ('queue_size', 3), ('num_disparities', 64),
])
def test_read_only_changes_rejected_with_restart_hint(name, value):
    reason = S.check_changes(S.DEFAULTS, {name: value})
    assert reason is not None
    assert f'{name} cannot change while the node runs' in reason
    assert f'-p {name}:={value}' in reason
    # Setting a read-only parameter to its current value is harmless.
    assert S.check_changes(S.DEFAULTS, {name: S.DEFAULTS[name]}) is None


def test_changes_judged_together():
    current = {**S.DEFAULTS, 'z_near': 1.0, 'z_far': 2.0}
    # Moving the range past itself in one call is fine...
    assert S.check_changes(current, {'z_near': 3.0, 'z_far': 4.0}) is None
    # ...one at a time is not, and the reason names both values.
    reason = S.check_changes(current, {'z_near': 3.0})
    assert 'z_far (2.0) must be greater than z_near (3.0)' in reason
    # Several problems are all reported.
    reason = S.check_changes(current, {'scale': 2.0, 'backend': 'sgbm'})
    assert 'scale' in reason and 'backend' in reason
    # Parameters that are not ours (use_sim_time...) are not ours to judge.
    assert S.check_changes(current, {'use_sim_time': True}) is None


def test_settings_route_values_to_backend_and_pipeline():
    s = S.Settings({'backend': 'sgbm', 'scale': 1, 'num_disparities': 64})
    assert s.backend == 'sgbm' and s.scale == 1.0 and type(s.scale) is float
    assert s.backend_options() == {
        'num_disparities': 64, 'block_size': 5, 'min_disparity': 0, 'sgbm_mode': 'sgbm_3way',
        'uniqueness_ratio': 10, 'speckle_window_size': 100, 'speckle_range': 2}
    assert s.pipeline_options() == {
        'scale': 1.0, 'z_near': 0.0, 'z_far': 100.0, 'remove_invisible': True,
        'left_right_check': False, 'left_right_max_diff': 1.0, 'confidence_threshold': 0.0,
        'edge_rtol': 0.0, 'denoise_radius': 0.0, 'denoise_min_neighbors': 30,
        'backend_options': {}}
    assert s['queue_size'] == 10 and set(s) == set(S.BY_NAME)

    s = S.Settings({'checkpoint': '/w/model_best_bp2.pth', 'device': 'cpu'})
    assert s.backend_options() == {
        'checkpoint': '/w/model_best_bp2.pth', 'device': 'cpu', 'precision': 'auto',
        'compile': False, 'warmup_width': 0, 'warmup_height': 0,
        'valid_iters': 0, 'hierarchical': False, 'small_ratio': 0.5}
    assert s.pipeline_options()['backend_options'] == {
        'valid_iters': 0, 'hierarchical': False, 'small_ratio': 0.5}


def test_warm_up_size_needs_both_sides():
    with pytest.raises(ValueError, match='warmup_width .640. and warmup_height .0. go together'):
        S.Settings({'backend': 'sgbm', 'warmup_width': 640})
    assert S.Settings({'backend': 'sgbm', 'warmup_width': 640, 'warmup_height': 480})


def test_settings_reject_missing_checkpoint_with_what_to_do():
    with pytest.raises(ValueError, match='checkpoint:=/path/to/model_best_bp2.pth') as info:
        S.Settings({'backend': 'foundation_stereo'})
    assert 'backend:=sgbm' in str(info.value)


def test_command_line_messages_name_the_options():
    parser = demo.build_parser()
    with pytest.raises(S.SettingsError) as info:
        S.from_args(parser.parse_args(['--backend', 'foundation_stereo']))
    assert '--checkpoint /path/to/model_best_bp2.pth' in str(info.value)
    assert '--backend sgbm' in str(info.value)
    with pytest.raises(S.SettingsError, match='--valid-iters must be 0 to 100'):
        S.from_args(parser.parse_args(['--backend', 'sgbm', '--valid-iters', '-1']))
    args = parser.parse_args(['--backend', 'sgbm', '--no-remove-invisible', '--z-far', '7'])
    chosen = S.from_args(args)
    assert chosen.remove_invisible is False and chosen.z_far == 7.0


def test_settings_list_every_problem():
    with pytest.raises(ValueError) as info:
        S.Settings({'backend': 'sgbm', 'scale': 3.0, 'queue_size': 0})
    assert 'scale' in str(info.value) and 'queue_size' in str(info.value)
    with pytest.raises(ValueError, match='z_far'):
        S.Settings({'backend': 'sgbm', 'z_near': 5.0, 'z_far': 1.0})


def test_pipeline_config_uses_the_table_ranges_and_defaults():
    config = PipelineConfig()
    assert (config.scale, config.z_near, config.z_far, config.remove_invisible) == (
        S.DEFAULTS['scale'], S.DEFAULTS['z_near'], S.DEFAULTS['z_far'],
        S.DEFAULTS['remove_invisible'])
    with pytest.raises(ValueError, match='scale must be 0.05 to 1.0'):
        PipelineConfig(scale=0.01)
    with pytest.raises(ValueError, match='valid_iters must be 0 to 100'):
        PipelineConfig(backend_options={'valid_iters': 101})


def test_list_settings_in_the_node_yaml_and_on_command_lines(declared):
    _, cameras = declared['cameras']
    assert cameras.type == rclpy.Parameter.Type.STRING_ARRAY.value and cameras.read_only
    _, rates = declared['camera_max_rates']
    assert rates.dynamic_typing and not rates.read_only, '[15] is taken for [15.0] at runtime'
    # One rate for all, or one per camera; the pipeline never sees them.
    assert S.camera_rates(S.Settings({'backend': 'sgbm', 'cameras': ['a', 'b']})) == (0.0, 0.0)
    assert S.camera_rates(S.Settings({'backend': 'sgbm', 'cameras': ['a', 'b'],
                                      'camera_max_rates': [0, 15]})) == (0.0, 15.0)
    with pytest.raises(S.SettingsError, match='2 values for 3 cameras'):
        S.Settings({'backend': 'sgbm', 'cameras': ['a', 'b', 'c'],
                    'camera_max_rates': [1.0, 2.0]})
    # Runtime changes compare lists with the tuples in force, and are judged together.
    current = dict(S.Settings({'backend': 'sgbm', 'cameras': ['a', 'b']}))
    assert S.check_changes(current, {'cameras': ['a', 'b']}) is None
    assert 'restart with -p cameras' in S.check_changes(current, {'cameras': ['a']})
    assert '3 values for 2 cameras' in S.check_changes(current, {'camera_max_rates': [1, 2, 3]})
    assert 'cleanup' in S.check_changes(current, {'cameras': ['a']},
                                        how_to_change='cleanup, set {name}, configure')
    with pytest.raises(TypeError, match='items of one type'):
        S.Setting('mixed', ('a', 1), 'Mixed.')


def test_a_list_setting_on_a_command_line_takes_several_words(monkeypatch):
    names = S.Setting('names', ('a',), 'Names.', S.PIPELINE, unique=True)
    monkeypatch.setattr(S, 'SETTINGS', (names,))
    monkeypatch.setitem(S.BY_NAME, 'names', names)
    monkeypatch.setitem(S.DEFAULTS, 'names', names.default)
    parser = argparse.ArgumentParser()
    S.add_arguments(parser, [S.PIPELINE])
    assert parser.parse_args([]).names == ('a',)
    args = parser.parse_args(['--names', 'b', 'c'])
    assert args.names == ['b', 'c']
    with pytest.raises(S.SettingsError, match='--names holds .b. more than once'):
        S.from_args(parser.parse_args(['--names', 'b', 'b']), [S.PIPELINE], backend='sgbm')
    assert '    names: [a]' in S.params_yaml((names,))


TRUST = ('confidence_threshold', 'left_right_check', 'left_right_max_diff', 'edge_rtol',
         'denoise_radius', 'denoise_min_neighbors')


def test_trust_settings_change_at_runtime_and_reach_every_tool():
    from foundation_stereo_ros.tools import batch, sweep
    for name in TRUST:
        assert S.BY_NAME[name].runtime and S.BY_NAME[name].target == S.PIPELINE, name
    for parser in (demo.build_parser(), batch.build_parser(), bag_tool.build_parser(),
                   sweep.build_parser()):
        assert set(TRUST) <= set(tool_defaults(parser))
    # Off by default: the outputs of a default run are what they were.
    assert S.DEFAULTS['left_right_check'] is False
    assert S.DEFAULTS['confidence_threshold'] == S.DEFAULTS['edge_rtol'] == 0.0
    assert S.DEFAULTS['denoise_radius'] == 0.0
    args = demo.build_parser().parse_args(['--backend', 'sgbm', '--left-right-check',
                                           '--edge-rtol', '0.04', '--confidence-threshold', '1'])
    options = S.from_args(args).pipeline_options()
    assert options['left_right_check'] is True and options['edge_rtol'] == 0.04
    assert options['confidence_threshold'] == 1.0
    with pytest.raises(S.SettingsError, match='--confidence-threshold must be 0.0 to 1.0'):
        S.from_args(demo.build_parser().parse_args(['--backend', 'sgbm',
                                                    '--confidence-threshold', '2']))
    assert S.check_changes(S.DEFAULTS, {'edge_rtol': 0.04, 'denoise_radius': 0.03}) is None


def test_sgbm_lr_check_is_the_one_left_right_check():
    assert 'lr_check' not in S.BY_NAME and S.RENAMED['lr_check'] == 'left_right_check'
    assert 'lr_check' not in S.Settings({'backend': 'sgbm'}).backend_options()
    assert S.option_names('set left_right_check to true; the backend and z_far=5',
                          every_word=False) == \
        'set --left-right-check to true; the backend and --z-far 5'

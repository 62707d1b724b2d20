"""Unit tests of the node's parameter rules (pure Python, no ROS graph)."""
import math

import pytest

from foundation_stereo_ros import node_params as P


def test_every_default_is_valid_and_typed():
    for spec in P.PARAMS:
        assert P.check_value(spec.name, spec.default) is None, spec.name
        assert spec.description.endswith(('restart the node to change it.',
                                          'applies from the next pair.'))
    assert P.NodeSettings.from_values({'backend': 'sgbm'}).as_dict() == {
        **P.DEFAULTS, 'backend': 'sgbm'}


@pytest.mark.parametrize('name,value,fragment', [
    ('backend', 'raft', 'one of foundation_stereo, sgbm'),
    ('device', 'gpu', 'one of auto, cuda, cpu'),
    ('device', 'cuda:x', 'one of'),
    ('precision', 'int8', 'one of fp32'),
    ('valid_iters', 0, '1 to 100'),
    ('valid_iters', 3.0, 'must be a int'),
    ('valid_iters', True, 'must be a int'),
    ('scale', 1.5, '0.05 to 1.0'),
    ('scale', 0.0, '0.05 to 1.0'),
    ('scale', math.nan, 'finite'),
    ('z_far', math.inf, 'finite'),
    ('scale', '0.5', 'must be a float'),
    ('hierarchical', 1, 'must be a bool'),
    ('num_disparities', 100, 'in steps of 16'),
    ('block_size', 4, 'in steps of 2'),
    ('sync_policy', 'nearest', 'exact, approximate'),
    ('input_qos', 'best_effort', 'sensor_data, reliable'),
    ('nonsense', 1, 'unknown parameter'),
])
def test_bad_values_rejected_with_reason(name, value, fragment):
    reason = P.check_value(name, value)
    assert reason is not None and fragment in reason, reason
    assert name in reason


@pytest.mark.parametrize('name,value', [
    ('device', 'cuda:1'), ('scale', 1), ('num_disparities', 272), ('block_size', 31),
    ('valid_iters', 1), ('z_near', 0.0),
])
def test_good_values_accepted(name, value):
    assert P.check_value(name, value) is None


def test_runtime_changes_accepted_and_split():
    current = dict(P.DEFAULTS)
    changes = {'valid_iters': 8, 'scale': 0.5, 'z_near': 0.3, 'z_far': 5.0,
               'hierarchical': True, 'small_ratio': 0.25, 'remove_invisible': False}
    assert P.check_changes(current, changes) is None
    pipeline, backend = P.split_runtime_changes(changes)
    assert pipeline == {'scale': 0.5, 'z_near': 0.3, 'z_far': 5.0, 'remove_invisible': False}
    assert backend == {'valid_iters': 8, 'hierarchical': True, 'small_ratio': 0.25}
    assert P.split_runtime_changes({'scale': 1})[0] == {'scale': 1.0}
    assert type(P.split_runtime_changes({'scale': 1})[0]['scale']) is float


@pytest.mark.parametrize('name,value', [
    ('backend', 'sgbm'), ('checkpoint', '/x.pth'), ('device', 'cpu'), ('precision', 'fp16'),
    ('sync_policy', 'approximate'), ('slop', 0.05), ('queue_size', 3), ('input_qos', 'reliable'),
    ('output_qos_depth', 1), ('num_disparities', 64),
])
def test_read_only_changes_rejected_with_restart_hint(name, value):
    reason = P.check_changes(P.DEFAULTS, {name: value})
    assert reason is not None
    assert f'{name} cannot change while the node runs' in reason
    assert f'-p {name}:={value}' in reason
    # Setting a read-only parameter to its current value is harmless.
    assert P.check_changes(P.DEFAULTS, {name: P.DEFAULTS[name]}) is None


def test_changes_judged_together():
    current = {**P.DEFAULTS, 'z_near': 1.0, 'z_far': 2.0}
    # Moving the range past itself in one call is fine...
    assert P.check_changes(current, {'z_near': 3.0, 'z_far': 4.0}) is None
    # ...one at a time is not, and the reason names both values.
    reason = P.check_changes(current, {'z_near': 3.0})
    assert 'z_far (2.0) must be greater than z_near (3.0)' in reason
    # Several problems are all reported.
    reason = P.check_changes(current, {'scale': 2.0, 'backend': 'sgbm'})
    assert 'scale' in reason and 'backend' in reason
    # Parameters that are not ours (use_sim_time...) are not ours to judge.
    assert P.check_changes(current, {'use_sim_time': True}) is None


def test_settings_from_values():
    s = P.NodeSettings.from_values({'backend': 'sgbm', 'scale': 1, 'num_disparities': 64})
    assert s.backend == 'sgbm' and s.scale == 1.0 and type(s.scale) is float
    assert s.backend_options() == {'num_disparities': 64, 'block_size': 5}
    assert s.pipeline_options() == {'scale': 1.0, 'z_near': 0.0, 'z_far': 100.0,
                                    'remove_invisible': True}
    assert s.as_dict()['queue_size'] == 10
    assert set(s.as_dict()) == set(P.SPECS)

    s = P.NodeSettings.from_values({'checkpoint': '/w/model_best_bp2.pth', 'device': 'cpu'})
    assert s.backend_options() == {
        'checkpoint': '/w/model_best_bp2.pth', 'device': 'cpu', 'precision': 'fp32',
        'valid_iters': 32, 'hierarchical': False, 'small_ratio': 0.5}


def test_settings_reject_missing_checkpoint_with_what_to_do():
    with pytest.raises(ValueError, match='checkpoint:=/path/to/model_best_bp2.pth') as info:
        P.NodeSettings.from_values({'backend': 'foundation_stereo'})
    assert 'backend:=sgbm' in str(info.value)


def test_settings_list_every_problem():
    with pytest.raises(ValueError) as info:
        P.NodeSettings.from_values({'backend': 'sgbm', 'scale': 3.0, 'queue_size': 0})
    assert 'scale' in str(info.value) and 'queue_size' in str(info.value)
    with pytest.raises(ValueError, match='z_far'):
        P.NodeSettings.from_values({'backend': 'sgbm', 'z_near': 5.0, 'z_far': 1.0})

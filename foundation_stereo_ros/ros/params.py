"""ROS parameters from a table of :class:`~foundation_stereo_ros.settings.Setting`.

Both nodes declare their parameters here: one descriptor per setting (description, range,
choices, read-only), and one set-parameters callback that checks a change against the table
and, when every change is valid, hands it to the node. Only what Humble's rclpy has is used
(``add_on_set_parameters_callback``; the post-set callbacks arrived in Iron), and float
parameters take integers too (``ros2 param set ... z_far 50``), as users type them.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    SetParametersResult,
)
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.node import Node
from rclpy.parameter import Parameter

from foundation_stereo_ros.settings import Setting, Value

_READ_ONLY = ' Read-only: set it at start (params file or -p), restart the node to change it.'
# A managed (lifecycle) node reads its parameters when it is configured.
_UNCONFIGURED = (' Set it at start or while the node is unconfigured; it is read by the configure '
                 'transition (to change it later: deactivate, cleanup, set it, configure).')
_RUNTIME = ' May change at runtime; applies from the next pair.'


class ParameterError(RuntimeError):
    """A parameter given at start has the wrong type or value; the message says what to do."""


def make_descriptor(setting: Setting, *, managed: bool = False) -> ParameterDescriptor:
    """ROS parameter descriptor of ``setting``.

    ``managed``: for a lifecycle node, whose read-only settings may be set while it is
    unconfigured (its set-parameters check refuses them once configured).
    """
    description = setting.description + (
        _RUNTIME if setting.runtime else _UNCONFIGURED if managed else _READ_ONLY)
    if setting.choices:
        description += f' Values: {setting.constraints}.'
    descriptor = ParameterDescriptor(
        description=description, read_only=not (setting.runtime or managed),
        additional_constraints=setting.constraints,
        # A float parameter accepts an integer (50 for 50.0, [15] for [15.0]); the table
        # checks the value.
        dynamic_typing=setting.item_type is float)
    if setting.is_list:
        pass  # ROS ranges bound scalars; the table checks each item
    elif setting.low is not None and setting.type_name == 'int':
        descriptor.integer_range = [IntegerRange(
            from_value=int(setting.low), to_value=int(setting.high), step=int(setting.step))]
    elif setting.low is not None:
        descriptor.floating_point_range = [FloatingPointRange(
            from_value=float(setting.low), to_value=float(setting.high), step=0.0)]
    return descriptor


def declare(node: Node, table: Sequence[Setting], *,
            problems: dict[str, str] | None = None) -> dict[str, Value]:
    """Declare every setting of ``table`` on ``node``; return the values given at start.

    Raises :class:`ParameterError` for a value of the wrong type or out of range, unless a
    ``problems`` dict is given (a lifecycle node, declared as ``managed`` in
    :func:`make_descriptor`): then such a parameter is declared with its default and
    ``problems[name]`` says what was wrong, for the configure transition to report.
    """
    managed = problems is not None
    values = {}
    for setting in table:
        descriptor = make_descriptor(setting, managed=managed)
        try:
            try:
                parameter = node.declare_parameter(setting.name, _ros_value(setting.default),
                                                   descriptor)
            except (InvalidParameterTypeException, InvalidParameterValueException) as exc:
                raise ParameterError(
                    f'invalid parameter {setting.name}: {exc}; expected a {setting.type_name}'
                    + (f' ({setting.constraints})' if setting.constraints else '')) from exc
            value = _plain(parameter.value)
            reason = setting.check(value)
            if reason:
                raise ParameterError(f'invalid parameter: {reason}')
        except ParameterError as exc:
            if not managed:
                raise
            problems[setting.name] = str(exc)  # type: ignore[index]
            if not node.has_parameter(setting.name):
                node.declare_parameter(setting.name, _ros_value(setting.default), descriptor,
                                       ignore_override=True)
            else:
                node.set_parameters([Parameter(setting.name, value=_ros_value(setting.default))])
            value = setting.default
        values[setting.name] = setting.coerce(value)
    return values


def on_change(node: Node, table: Sequence[Setting],
              check: Callable[[Mapping[str, Any]], str | None],
              apply: Callable[[dict[str, Value]], None]) -> None:
    """Route runtime changes of ``table``'s parameters through ``check`` then ``apply``.

    ``check(changes)`` returns why to refuse them (None to accept); accepted changes, coerced
    to their declared types, go to ``apply`` at once. Names outside the table
    (``use_sim_time``, ``qos_overrides...``) are left alone.
    """
    by_name = {s.name: s for s in table}

    def callback(parameters: Sequence[Parameter]) -> SetParametersResult:
        changes = {p.name: _plain(p.value) for p in parameters if p.name in by_name}
        if not changes:
            return SetParametersResult(successful=True)
        reason = check(changes)
        if reason:
            return SetParametersResult(successful=False, reason=reason)
        apply({name: by_name[name].coerce(value) for name, value in changes.items()})
        return SetParametersResult(successful=True)

    node.add_on_set_parameters_callback(callback)


def current_values(node: Node, table: Sequence[Setting]) -> dict[str, Any]:
    """Return the values the declared parameters of ``table`` hold now (arrays as tuples)."""
    return {s.name: _plain(node.get_parameter(s.name).value) for s in table}


def _ros_value(value: Value) -> Any:
    """Return a setting's value as rclpy takes it: lists for array parameters."""
    return list(value) if isinstance(value, tuple) else value


def _plain(value: Any) -> Any:
    """Return a parameter value as the table reads it: arrays as tuples."""
    return value if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) \
        else tuple(value)

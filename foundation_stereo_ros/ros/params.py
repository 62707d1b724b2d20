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
_RUNTIME = ' May change at runtime; applies from the next pair.'


class ParameterError(RuntimeError):
    """A parameter given at start has the wrong type or value; the message says what to do."""


def make_descriptor(setting: Setting) -> ParameterDescriptor:
    """ROS parameter descriptor of ``setting``."""
    description = setting.description + (_RUNTIME if setting.runtime else _READ_ONLY)
    if setting.choices:
        description += f' Values: {setting.constraints}.'
    descriptor = ParameterDescriptor(
        description=description, read_only=not setting.runtime,
        additional_constraints=setting.constraints,
        # A float parameter accepts an integer (50 for 50.0); the table checks the value.
        dynamic_typing=setting.type_name == 'float')
    if setting.low is not None and setting.type_name == 'int':
        descriptor.integer_range = [IntegerRange(
            from_value=int(setting.low), to_value=int(setting.high), step=int(setting.step))]
    elif setting.low is not None:
        descriptor.floating_point_range = [FloatingPointRange(
            from_value=float(setting.low), to_value=float(setting.high), step=0.0)]
    return descriptor


def declare(node: Node, table: Sequence[Setting]) -> dict[str, Value]:
    """Declare every setting of ``table`` on ``node``; return the values given at start.

    Raises :class:`ParameterError` for a value of the wrong type or out of range.
    """
    values = {}
    for setting in table:
        try:
            parameter = node.declare_parameter(setting.name, setting.default,
                                               make_descriptor(setting))
        except (InvalidParameterTypeException, InvalidParameterValueException) as exc:
            raise ParameterError(
                f'invalid parameter {setting.name}: {exc}; expected a {setting.type_name}'
                + (f' ({setting.constraints})' if setting.constraints else '')) from exc
        value = parameter.value
        reason = setting.check(value)
        if reason:
            raise ParameterError(f'invalid parameter: {reason}')
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
        changes = {p.name: p.value for p in parameters if p.name in by_name}
        if not changes:
            return SetParametersResult(successful=True)
        reason = check(changes)
        if reason:
            return SetParametersResult(successful=False, reason=reason)
        apply({name: by_name[name].coerce(value) for name, value in changes.items()})
        return SetParametersResult(successful=True)

    node.add_on_set_parameters_callback(callback)

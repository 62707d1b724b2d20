"""ROS parameters from a table of :class:`~foundation_stereo_ros.settings.Setting`.

Both nodes declare their parameters here: one descriptor per setting (description, range,
choices, read-only), and one set-parameters callback that checks a change against the table
and, when every change is valid, hands it to the node. Only what Humble's rclpy has is used
(``add_on_set_parameters_callback``; the post-set callbacks arrived in Iron), and float
parameters take integers too (``ros2 param set ... z_far 50``), as users type them.
"""
from __future__ import annotations

import difflib
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    SetParametersResult,
)
from rcl_interfaces.srv import SetParameters, SetParametersAtomically
from rclpy import qos
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.node import Node
from rclpy.parameter import Parameter

from foundation_stereo_ros.ros import param_sources
from foundation_stereo_ros.settings import Setting, Value

_READ_ONLY = ' Read-only: set it at start (params file or -p), restart the node to change it.'
# A managed (lifecycle) node reads its parameters when it is configured.
_UNCONFIGURED = (' Set it at start or while the node is unconfigured; it is read by the configure '
                 'transition (to change it later: deactivate, cleanup, set it, configure).')
_RUNTIME = ' May change at runtime; applies from the next pair.'
# The words for the types of settings in messages.
_TYPE_WORDS = {'bool': 'a boolean (true or false)', 'int': 'an integer',
               'float': 'a number', 'str': 'a string'}
# The QoS override parameters rclpy declares: qos_overrides.<topic>.<entity>.<policy>;
# the valid values of each enumerated policy come from rclpy's own enums.
QOS_PREFIX = 'qos_overrides.'
QOS_POLICIES = {'reliability': qos.ReliabilityPolicy, 'history': qos.HistoryPolicy,
                'durability': qos.DurabilityPolicy, 'liveliness': qos.LivelinessPolicy}
QOS_INTEGER_POLICIES = ('depth', 'deadline', 'lifespan', 'liveliness_lease_duration')
# The ROS arguments of this process (run_node records what it gives rclpy.init).
_arguments: list[str] | None = None


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


def use_arguments(argv: Sequence[str] | None) -> None:
    """Record the arguments given to ``rclpy.init`` (None: ``sys.argv``), for :func:`declare`."""
    global _arguments
    _arguments = None if argv is None else list(argv)


def _given_arguments() -> list[str]:
    return list(sys.argv if _arguments is None else _arguments)


def _type_problem(setting: Setting, value: Any) -> str | None:
    """Return why ``value`` is not of ``setting``'s type (a list, a word for a number...)."""
    if setting.type_name == 'float' and type(value) is str:
        value = param_sources.scalar(value)  # a file's unquoted 1e3 is a number to rcl
    if setting.is_list:  # ROS arrays and YAML lists; the items are judged on declaring
        return None if isinstance(value, (list, tuple)) else 'expected a list ([a, b, ...])'
    expected = type(setting.default)
    if type(value) is expected or (expected is float and type(value) is int):
        return None
    return f'expected {_TYPE_WORDS[setting.type_name]}' + (
        f' ({setting.constraints})' if setting.constraints else '')


def qos_override_problem(name: str, value: Any) -> str | None:
    """Return why ``value`` is not valid for the QoS override parameter ``name``."""
    policy = name.rsplit('.', 1)[-1]
    if policy in QOS_POLICIES:
        keys = [k for k in QOS_POLICIES[policy].short_keys() if k != 'unknown']
        if isinstance(value, str) and value.lower() in keys:
            return None
        return f'valid values: {", ".join(keys)}'
    if policy in QOS_INTEGER_POLICIES:
        if type(value) is int and value >= 0:
            return None
        return 'expected a non-negative integer' + (
            ' (nanoseconds)' if policy != 'depth' else ' (the queue depth)')
    return None


def check_given(node: Node, table: Sequence[Setting],
                argv: Sequence[str] | None = None) -> None:
    """Refuse values of the command line and params files that rcl would drop or choke on.

    Every ``-p`` and params-file value for ``node`` (``argv``, default: what ``rclpy.init``
    got) is checked against ``table``'s types and rclpy's QoS override values, each source
    on its own: rcl keeps the first type it saw for a name and drops a later value of
    another type in silence. Warns about params files with no section for this node.
    Raises :class:`ParameterError` naming each bad value, where it came from and what is
    expected.
    """
    argv = _given_arguments() if argv is None else list(argv)
    fqn = node.get_fully_qualified_name()
    for path, sections in param_sources.unmatched_files(argv, fqn).items():
        node.get_logger().warning(
            f'no section of the params file {path} applies to this node ({fqn}), so none of '
            f'its values are used; it holds sections for: {", ".join(sections) or "nothing"}. '
            f'Key it /** (any node) or {fqn}, or start the node with the name it uses '
            '(ros2 run: -r __node:=NAME -r __ns:=/NS; ros2 launch: node_name:=, namespace:=)')
    by_name = {s.name: s for s in table}
    problems = []
    for given in param_sources.given_values(argv, fqn):
        if given.name in by_name:
            why = _type_problem(by_name[given.name], given.value)
            what = f'parameter {given.name}'
        elif given.name.startswith(QOS_PREFIX):
            why = qos_override_problem(given.name, given.value)
            what = f'QoS override {given.name}'
        else:
            continue
        if why:
            problems.append(f'{what} cannot be {given.value!r} (from {given.source}): {why}')
    if problems:
        raise ParameterError('invalid parameters: ' + '; '.join(problems))


def declare(node: Node, table: Sequence[Setting], argv: Sequence[str] | None = None, *,
            problems: dict[str, str] | None = None) -> dict[str, Value]:
    """Declare every setting of ``table`` on ``node``; return the values given at start.

    Raises :class:`ParameterError` for a value of the wrong type or out of range, also one
    that rcl would drop in silence (see :func:`check_given`, which reads ``argv``), unless a
    ``problems`` dict is given (a lifecycle node, declared as ``managed`` in
    :func:`make_descriptor`): then such a parameter is declared with its default and
    ``problems[name]`` says what was wrong, for the configure transition to report.
    """
    managed = problems is not None
    try:
        check_given(node, table, argv)
    except ParameterError as exc:
        if not managed:
            raise
        problems['parameters'] = str(exc)  # type: ignore[index]
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
    (``use_sim_time``, ``qos_overrides...``) are left alone; undeclared names are refused
    with the closest parameter (:func:`explain_undeclared`).
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
    explain_undeclared(node)


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


def closest_parameter(node: Node, name: str) -> str:
    """Say that ``name`` is not a parameter of ``node``, and which one is closest."""
    known = node.list_parameters([], 0).names
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
    return (f'{name} is not a parameter of this node'
            + (f' (did you mean {close[0]}?)' if close else '')
            + '; ros2 param list shows its parameters')


def explain_undeclared(node: Node) -> None:
    """Make the set-parameters services name an undeclared parameter and the closest one.

    rclpy answers ``Invalid access to undeclared parameter(s): []`` (the name missing);
    wrapping the services' callbacks is the only hook, since the set-parameters callbacks
    are not called for undeclared names.
    """
    for service in node.services:
        if service.srv_type not in (SetParameters, SetParametersAtomically):
            continue
        original = service.callback

        def callback(request: Any, response: Any, original: Callable = original) -> Any:
            response = original(request, response)
            undeclared = [p.name for p in request.parameters if not node.has_parameter(p.name)]
            results = getattr(response, 'results', None)
            if results is not None:  # SetParameters: one result per parameter
                for parameter, result in zip(request.parameters, results):
                    if not result.successful and parameter.name in undeclared:
                        result.reason = closest_parameter(node, parameter.name)
            elif undeclared and not response.result.successful:
                response.result.reason = '; '.join(closest_parameter(node, n)
                                                   for n in undeclared)
            return response

        service.callback = callback

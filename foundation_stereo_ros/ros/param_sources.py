"""The parameter values a user gave on the command line, read as rcl reads them.

rcl merges ``--params-file`` files and ``-p NAME:=VALUE`` into one value per name, and a
later value whose type differs from an earlier one is dropped without a word (``--params-file
config/foundation_stereo.yaml -p valid_iters:=abc`` runs with the file's 0). To refuse such
values, the node reads every source itself, in order: :func:`given_values` lists each value
with where it came from, and :func:`unmatched_files` names the params files of which no
section applies to the node. Pure Python (YAML only), no rclpy.
"""
from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

# The key under which a params file holds a node's parameters.
PARAMETERS_KEY = 'ros__parameters'
# rcl's words for booleans in -p values (rcl_yaml_param_parser).
_TRUE = frozenset({'true', 'True', 'TRUE', 'yes', 'Yes', 'YES', 'on', 'On', 'ON', 'y', 'Y'})
_FALSE = frozenset({'false', 'False', 'FALSE', 'no', 'No', 'NO', 'off', 'Off', 'OFF', 'n',
                    'N'})


@dataclass(frozen=True)
class GivenValue:
    """One value of one parameter, and where the user gave it (``-p NAME:=TEXT`` or a file)."""

    name: str
    value: Any
    source: str


def scalar(text: str) -> Any:
    """Return the value of a ``-p`` text as rcl types it: bool, int, float, else a string."""
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    if re.fullmatch(r'[+-]?\d+', text):
        return int(text)
    # strtod's forms (1e3, .5, inf, nan); Python's float() also takes '1_0', strtod does not.
    if '_' not in text:
        try:
            return float(text)
        except ValueError:
            pass
    return text


def parse_value(text: str) -> Any:
    """Return the value of ``-p NAME:=TEXT``: a YAML list or quoted string, else a scalar."""
    stripped = text.strip()
    if stripped[:1] in ('[', '"', "'", '{'):
        try:
            return yaml.safe_load(stripped)
        except yaml.YAMLError:
            return text
    return scalar(text)


def ros_arguments(argv: Sequence[str]) -> Iterator[tuple[str, str]]:
    """Yield ``(flag, argument)`` of the ``-p`` and ``--params-file`` flags in ``argv``.

    Only inside ``--ros-args`` sections (which end at ``--`` or the next ``--ros-args``).
    """
    inside = False
    args = list(argv)
    index = 0
    while index < len(args):
        arg = args[index]
        if arg == '--ros-args':
            inside = True
        elif arg == '--':
            inside = False
        elif inside and arg in ('-p', '--param', '--params-file') and index + 1 < len(args):
            yield ('-p' if arg == '--param' else arg), args[index + 1]
            index += 1
        index += 1


def _node_pattern(key: str) -> re.Pattern:
    """Compile the node name of a params file section (wildcards ``/**`` and ``/*``)."""
    key = key if key.startswith('/') else '/' + key
    parts = re.split(r'(/\*\*|/\*)', key)
    regex = ''.join({'/**': r'(/[^/]+)*', '/*': r'/[^/]+'}.get(p, re.escape(p)) for p in parts)
    return re.compile(regex)


def _sections(data: Any, prefix: str = '') -> Iterator[tuple[str, Any]]:
    """Yield ``(node name, parameters)`` of a params file (nested namespaces joined by /)."""
    if not isinstance(data, Mapping):
        return
    for key, value in data.items():
        name = f'{prefix}/{key}' if prefix else str(key)
        if not isinstance(value, Mapping):
            continue
        if PARAMETERS_KEY in value:
            yield name, value[PARAMETERS_KEY]
        else:
            yield from _sections(value, name)


def _flatten(parameters: Any, prefix: str = '') -> Iterator[tuple[str, Any]]:
    """Yield ``(dotted name, value)``: nested mappings are parameter name prefixes."""
    if not isinstance(parameters, Mapping):
        return
    for key, value in parameters.items():
        name = f'{prefix}{key}'
        if isinstance(value, Mapping):
            yield from _flatten(value, name + '.')
        else:
            yield name, value


def _read(path: str) -> Any:
    """Return the YAML of ``path``, None when it cannot be read (rcl reports that itself)."""
    try:
        return yaml.safe_load(Path(path).read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None


def file_sections(path: str) -> list[str]:
    """Return the node names the params file ``path`` has sections for."""
    return [name for name, _ in _sections(_read(path))]


def given_values(argv: Sequence[str], node_name: str) -> list[GivenValue]:
    """Return the values ``argv`` gives the node ``node_name`` (fully qualified), in order."""
    values = []
    for flag, argument in ros_arguments(argv):
        if flag == '--params-file':
            for section, parameters in _sections(_read(argument)):
                if _node_pattern(section).fullmatch(node_name):
                    values += [GivenValue(name, value, f'{argument} ({section})')
                               for name, value in _flatten(parameters)]
        else:
            name, sep, text = argument.partition(':=')
            if sep:
                values.append(GivenValue(name, parse_value(text), f'-p {argument}'))
    return values


def unmatched_files(argv: Sequence[str], node_name: str) -> dict[str, list[str]]:
    """Map each params file of ``argv`` that has no section for ``node_name`` to its sections."""
    unmatched = {}
    for flag, argument in ros_arguments(argv):
        if flag != '--params-file' or _read(argument) is None:
            continue
        sections = file_sections(argument)
        if not any(_node_pattern(s).fullmatch(node_name) for s in sections):
            unmatched[argument] = sections
    return unmatched

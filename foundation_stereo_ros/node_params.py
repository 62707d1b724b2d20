"""Parameters of the stereo node: names, defaults, ranges, and the rules for changing them.

Pure Python (no rclpy) so the rules are unit-tested alone; ``node.py`` turns each
:class:`ParamSpec` into a ROS ``ParameterDescriptor`` and asks :func:`check_changes` before
accepting a runtime change. Defaults here match ``config/foundation_stereo.yaml``.

Runtime changes of ``valid_iters``, ``hierarchical``, ``small_ratio`` (backend) and ``scale``,
``z_near``, ``z_far``, ``remove_invisible`` (pipeline) apply from the next pair. Everything
else picks the model, the device or the ROS plumbing and is read-only once the node runs.
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

Value = bool | int | float | str

BACKENDS = ('foundation_stereo', 'sgbm')
DEVICES = ('auto', 'cuda', 'cpu')
PRECISIONS = ('fp32', 'fp16', 'bf16')
SYNC_POLICIES = ('exact', 'approximate')
INPUT_QOS = ('sensor_data', 'reliable')

PIPELINE_PARAMS = ('scale', 'z_near', 'z_far', 'remove_invisible')
BACKEND_RUNTIME_PARAMS = ('valid_iters', 'hierarchical', 'small_ratio')

_CUDA_INDEX = re.compile(r'cuda:\d+')


@dataclass(frozen=True)
class ParamSpec:
    """One node parameter: its default (which fixes its type) and what values it accepts.

    ``low``/``high`` bound numbers (inclusive); ``step`` (integers only) restricts them to
    ``low + k * step``; ``choices`` lists the accepted strings; ``runtime`` says whether it may
    change while the node runs.
    """

    name: str
    default: Value
    description: str
    low: float | None = None
    high: float | None = None
    step: int = 0
    choices: tuple[str, ...] = ()
    runtime: bool = False

    @property
    def type_name(self) -> str:
        """'bool', 'int', 'float' or 'str'."""
        return type(self.default).__name__

    @property
    def constraints(self) -> str:
        """Describe the accepted values in words, for descriptors and error messages."""
        if self.choices:
            return 'one of ' + ', '.join(self.choices)
        if self.low is not None:
            text = f'{self.low} to {self.high}'
            if self.step:
                text += f' in steps of {self.step}'
            return text
        return ''


_READ_ONLY = ' Read-only: set it at start (params file or -p), restart the node to change it.'
_RUNTIME = ' May change at runtime; applies from the next pair.'


def _spec(name: str, default: Value, description: str, **kw: Any) -> ParamSpec:
    tail = _RUNTIME if kw.get('runtime') else _READ_ONLY
    return ParamSpec(name, default, description + tail, **kw)


PARAMS: tuple[ParamSpec, ...] = (
    _spec('backend', 'foundation_stereo',
          'Disparity backend: foundation_stereo (the network) or sgbm (OpenCV, CPU).',
          choices=BACKENDS),
    _spec('checkpoint', '',
          'FoundationStereo checkpoint (.pth) with its cfg.yaml beside it; needed by the '
          'foundation_stereo backend.'),
    _spec('device', 'auto',
          'Torch device: auto (CUDA when available), cuda, cuda:N or cpu.', choices=DEVICES),
    _spec('precision', 'fp32',
          'Network precision: fp32, or fp16/bf16 autocast (CUDA only).', choices=PRECISIONS),
    _spec('valid_iters', 32, 'GRU refinement iterations of the network (more: finer, slower).',
          low=1, high=100, step=1, runtime=True),
    _spec('hierarchical', False,
          'Coarse-to-fine inference: a low-resolution pass initialises the full one.',
          runtime=True),
    _spec('small_ratio', 0.5, 'Resolution ratio of the coarse pass when hierarchical.',
          low=0.1, high=0.9, runtime=True),
    _spec('scale', 1.0,
          'Run the backend on images resized by this factor; outputs stay at camera '
          'resolution.', low=0.05, high=1.0, runtime=True),
    _spec('z_near', 0.0, 'Depth and points nearer than this (metres) are NaN.',
          low=0.0, high=1000.0, runtime=True),
    _spec('z_far', 100.0, 'Depth and points farther than this (metres) are NaN.',
          low=0.01, high=10000.0, runtime=True),
    _spec('remove_invisible', True,
          'Invalidate disparities whose match falls outside the right image.', runtime=True),
    _spec('sync_policy', 'exact',
          'Input synchronisation: exact (equal stamps) or approximate (within slop).',
          choices=SYNC_POLICIES),
    _spec('slop', 0.01, 'Largest stamp spread (seconds) of a set with approximate sync.',
          low=0.0, high=1.0),
    _spec('queue_size', 10, 'Pending messages kept per input while waiting for a set.',
          low=1, high=100, step=1),
    _spec('input_qos', 'sensor_data',
          'Input QoS: sensor_data (best effort, like camera drivers) or reliable.',
          choices=INPUT_QOS),
    _spec('output_qos_depth', 5, 'History depth of the (reliable) output publishers.',
          low=1, high=100, step=1),
    _spec('num_disparities', 128, 'SGBM disparity search range in pixels (multiple of 16).',
          low=16, high=1024, step=16),
    _spec('block_size', 5, 'SGBM matching block size in pixels (odd).',
          low=1, high=31, step=2),
    _spec('camera_info_timeout', 2.0,
          'Warn (throttled) when images arrive but no CameraInfo did for this long (seconds).',
          low=0.1, high=60.0),
    _spec('diagnostics_period', 1.0, 'Period of /diagnostics messages (seconds).',
          low=0.1, high=60.0),
)

SPECS: dict[str, ParamSpec] = {spec.name: spec for spec in PARAMS}
DEFAULTS: dict[str, Value] = {spec.name: spec.default for spec in PARAMS}


def check_value(name: str, value: Any) -> str | None:
    """Return why ``value`` is not acceptable for parameter ``name``, or None if it is."""
    spec = SPECS.get(name)
    if spec is None:
        return f'unknown parameter {name!r}; known: {", ".join(SPECS)}'
    expected = type(spec.default)
    ok_type = type(value) is expected or (expected is float and type(value) is int)
    if not ok_type:
        return (f'{name} must be a {spec.type_name}, got {type(value).__name__} {value!r}'
                + (' (write 1.0, not 1)' if expected is float else ''))
    if spec.choices:
        if value in spec.choices:
            return None
        if name == 'device' and _CUDA_INDEX.fullmatch(value):
            return None
        return f'{name} must be {spec.constraints}, got {value!r}'
    if spec.low is not None:
        if isinstance(value, float) and not math.isfinite(value):
            return f'{name} must be a finite number ({spec.constraints}), got {value}'
        if not spec.low <= value <= spec.high:
            return f'{name} must be {spec.constraints}, got {value}'
        if spec.step and (value - spec.low) % spec.step:
            return f'{name} must be {spec.constraints}, got {value}'
    return None


def _check_together(values: Mapping[str, Any]) -> list[str]:
    errors = []
    if values['z_far'] <= values['z_near']:
        errors.append(f'z_far ({values["z_far"]}) must be greater than z_near '
                      f'({values["z_near"]})')
    return errors


def check_changes(current: Mapping[str, Any], changes: Mapping[str, Any]) -> str | None:
    """Return why the runtime ``changes`` must be rejected, or None to accept them all.

    ``current`` holds every parameter's value now; the changes are judged together (so
    ``z_near`` and ``z_far`` may move past each other in one call). Names that are not ours
    (``use_sim_time``...) are left to whoever owns them.
    """
    errors = []
    for name, value in changes.items():
        spec = SPECS.get(name)
        if spec is None:
            continue
        if not spec.runtime and value != current.get(name):
            errors.append(f'{name} cannot change while the node runs (it selects the model, '
                          f'device or ROS plumbing): restart with -p {name}:={value}')
            continue
        reason = check_value(name, value)
        if reason:
            errors.append(reason)
    if not errors:
        errors.extend(_check_together({**current, **changes}))
    return '; '.join(errors) or None


@dataclass(frozen=True)
class NodeSettings:
    """Every parameter's value at start, validated (see :data:`PARAMS` for meanings)."""

    backend: str
    checkpoint: str
    device: str
    precision: str
    valid_iters: int
    hierarchical: bool
    small_ratio: float
    scale: float
    z_near: float
    z_far: float
    remove_invisible: bool
    sync_policy: str
    slop: float
    queue_size: int
    input_qos: str
    output_qos_depth: int
    num_disparities: int
    block_size: int
    camera_info_timeout: float
    diagnostics_period: float

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> NodeSettings:
        """Validate ``values`` (missing names take defaults); ValueError lists every problem."""
        merged = {**DEFAULTS, **values}
        errors = [r for r in (check_value(k, v) for k, v in merged.items()) if r]
        if not errors:
            errors.extend(_check_together(merged))
            if merged['backend'] == 'foundation_stereo' and not merged['checkpoint']:
                errors.append(
                    'backend foundation_stereo needs a checkpoint: pass -p checkpoint:='
                    '/path/to/model_best_bp2.pth (its cfg.yaml beside it), or use '
                    '-p backend:=sgbm')
        if errors:
            raise ValueError('invalid parameters: ' + '; '.join(errors))
        typed = {k: float(v) if SPECS[k].type_name == 'float' else v
                 for k, v in merged.items() if k in SPECS}
        return cls(**typed)

    def as_dict(self) -> dict[str, Value]:
        """All values by parameter name."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def backend_options(self) -> dict[str, Value]:
        """Keyword arguments of ``backends.make_backend`` for the chosen backend."""
        if self.backend == 'sgbm':
            return {'num_disparities': self.num_disparities, 'block_size': self.block_size}
        return {'checkpoint': self.checkpoint, 'device': self.device,
                'precision': self.precision, 'valid_iters': self.valid_iters,
                'hierarchical': self.hierarchical, 'small_ratio': self.small_ratio}

    def pipeline_options(self) -> dict[str, Value]:
        """Keyword arguments of ``PipelineConfig``."""
        return {name: getattr(self, name) for name in PIPELINE_PARAMS}


def split_runtime_changes(changes: Mapping[str, Any]) -> tuple[dict, dict]:
    """Split accepted runtime changes into (pipeline config changes, backend attributes)."""
    pipeline = {k: (float(v) if SPECS[k].type_name == 'float' else v)
                for k, v in changes.items() if k in PIPELINE_PARAMS}
    backend = {k: (float(v) if SPECS[k].type_name == 'float' else v)
               for k, v in changes.items() if k in BACKEND_RUNTIME_PARAMS}
    return pipeline, backend

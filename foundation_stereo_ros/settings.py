"""Every setting of the stereo pipeline, declared once.

:data:`SETTINGS` holds each setting's name, default (which fixes its type), range or choices,
whether it may change at runtime, where it goes and its description. Everything else derives
from it:

* the node's ROS parameters and their descriptors (:mod:`.ros_params`),
* ``config/foundation_stereo.yaml`` (:func:`params_yaml` writes it; a test keeps them equal),
* the command lines of the demo, the bag tool and the other offline tools
  (:func:`add_arguments` / :func:`from_args`: same names, same defaults),
* the ranges :class:`~foundation_stereo_ros.pipeline.PipelineConfig` checks, and the backend
  options :func:`make_backend` receives.

The names a setting chooses from come from :mod:`.choices` (which the backends import too) and
sync policies from :mod:`.sync`: pure Python, no torch, OpenCV or rclpy, so generating the
parameters file, parsing a command line or printing ``--help`` loads nothing heavy, and the
rules are unit-tested alone.
"""
from __future__ import annotations

import argparse
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from foundation_stereo_ros.choices import (
    BACKENDS,
    CUDA_INDEX,
    DEVICES,
    PRECISION_CHOICES,
    PROVIDER_CHOICES,
    SGBM_MODES,
)
from foundation_stereo_ros.sync import SYNC_POLICIES

Value = bool | int | float | str | tuple
# A list setting's default is a tuple of its item type (ROS string/double array parameters).
ITEM_TYPES = (bool, int, float, str)

# Where a setting's value goes. BACKEND: the backend constructor (``backends`` says which);
# PIPELINE: PipelineConfig; SYNC: the stereo synchroniser; INPUT: which images come in and
# how they are prepared (the stereo-set step, the node's subscriptions); NODE: the node's own
# plumbing.
BACKEND, PIPELINE, SYNC, INPUT, NODE = 'backend', 'pipeline', 'sync', 'input', 'node'

# image_transport plugins the node subscribes with: raw (sensor_msgs/Image) or compressed
# (sensor_msgs/CompressedImage, JPEG or PNG, on <image topic>/compressed). Declared here, with
# no ROS import, for the table; stereo_io maps each to its message type.
IMAGE_TRANSPORTS = ('raw', 'compressed')
# A camera of the cameras setting: '' (the node's own topics) or a relative ROS namespace.
CAMERA_NAMESPACE = r'([A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*)?'


@dataclass(frozen=True)
class Setting:
    """One setting: its default (which fixes its type) and what values it accepts.

    A tuple default makes a list setting (a ROS array parameter): its items have the type of
    the default's items and each item is checked as a scalar setting would be (``low``/
    ``high``, ``choices``, ``pattern``); a list is never empty, and ``unique`` ones hold no
    item twice.
    ``low``/``high`` bound numbers (inclusive); ``step`` (integers only) restricts them to
    ``low + k * step``; ``choices`` lists the accepted strings (``pattern`` may accept more,
    e.g. ``cuda:N``); ``runtime`` says whether it may change while the node runs; ``target``
    says where the value goes and ``backends`` which backends take it (BACKEND target only);
    ``tools`` says whether the offline command lines expose it.
    """

    name: str
    default: Value
    description: str
    target: str = 'node'
    low: float | None = None
    high: float | None = None
    step: int = 0
    choices: tuple[str, ...] = ()
    pattern: str | None = None
    runtime: bool = False
    backends: tuple[str, ...] = ()
    tools: bool = True
    hint: str = ''  # the accepted values in words when a pattern alone says it
    unique: bool = False  # a list setting whose items must differ

    def __post_init__(self) -> None:
        if self.is_list and not (self.default and all(
                type(item) is type(self.default[0]) in ITEM_TYPES for item in self.default)):
            raise TypeError(f'{self.name}: a list default needs items of one type of '
                            f'{ITEM_TYPES}')

    @property
    def is_list(self) -> bool:
        """Tell whether the setting holds a list (a tuple default)."""
        return isinstance(self.default, tuple)

    @property
    def item_type(self) -> type:
        """Type of the value, or of each item of a list setting."""
        return type(self.default[0]) if self.is_list else type(self.default)

    @property
    def type_name(self) -> str:
        """'bool', 'int', 'float' or 'str'; 'list of str'... for a list setting."""
        name = self.item_type.__name__
        return f'list of {name}' if self.is_list else name

    @property
    def constraints(self) -> str:
        """Describe the accepted values in words, for descriptors and error messages."""
        text = self.item_constraints
        if self.is_list:
            return ('a non-empty list' + (', no item twice' if self.unique else '')
                    + (f'; each item {text}' if text else ''))
        return text

    @property
    def item_constraints(self) -> str:
        """Describe the accepted values of one item (of the value itself, for a scalar)."""
        text = self.hint
        if self.choices:
            text = 'one of ' + ', '.join(self.choices) + (
                f' (or {self.pattern_hint})' if self.pattern else '')
        elif self.low is not None:
            text = f'{self.low} to {self.high}'
            if self.step:
                text += f' in steps of {self.step}'
        return text

    @property
    def pattern_hint(self) -> str:
        """Describe the extra accepted strings ('cuda:N' for the device)."""
        return self.pattern.replace(r'\d+', 'N') if self.pattern else ''

    @property
    def option(self) -> str:
        """Return the command-line option: ``--valid-iters`` for ``valid_iters``."""
        return '--' + self.name.replace('_', '-')

    def check(self, value: Any) -> str | None:
        """Return why ``value`` is not acceptable, or None if it is.

        A list setting takes a list or tuple (ROS gives lists, or arrays of numbers).
        """
        if not self.is_list:
            return self._check_item(value, self.name)
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            return (f'{self.name} must be a {self.type_name} ([a, b, ...]), got '
                    f'{type(value).__name__} {value!r}')
        if not value:
            return f'{self.name} must hold at least one item'
        for index, item in enumerate(value):
            reason = self._check_item(item, f'{self.name}[{index}]')
            if reason:
                return reason
        twice = sorted({str(item) for item in value if list(value).count(item) > 1})
        if twice and self.unique:
            return f'{self.name} holds {", ".join(map(repr, twice))} more than once'
        return None

    def _check_item(self, value: Any, name: str) -> str | None:
        expected = self.item_type
        if not (type(value) is expected or (expected is float and type(value) is int)):
            article = 'an' if expected.__name__[0] in 'aeiou' else 'a'
            return (f'{name} must be {article} {expected.__name__}, got '
                    f'{type(value).__name__} {value!r}')
        if self.choices or self.pattern:
            if value in self.choices or (self.pattern and re.fullmatch(self.pattern, value)):
                return None
            return f'{name} must be {self.item_constraints}, got {value!r}'
        if self.low is not None:
            if isinstance(value, float) and not math.isfinite(value):
                return f'{name} must be a finite number ({self.item_constraints}), got {value}'
            if not self.low <= value <= self.high or (
                    self.step and (value - self.low) % self.step):
                return f'{name} must be {self.item_constraints}, got {value}'
        return None

    def coerce(self, value: Any) -> Value:
        """``value`` in the declared type (an integer given for a float becomes a float).

        A list setting's value becomes a tuple of the item type.
        """
        if self.is_list:
            return tuple(self.item_type(item) for item in value)
        return float(value) if self.type_name == 'float' else value


_FS = ('foundation_stereo',)
_SGBM = ('sgbm',)
_ONNX = ('onnx',)

SETTINGS: tuple[Setting, ...] = (
    # -- the backend (read-only: it selects the model, the device or the matcher) ------------
    Setting('backend', 'foundation_stereo',
            'Disparity backend: foundation_stereo (the network), onnx (an exported network '
            'on ONNX Runtime / TensorRT) or sgbm (OpenCV, CPU).',
            BACKEND, choices=tuple(BACKENDS)),
    Setting('checkpoint', '',
            'Network checkpoint: FoundationStereo model_best_bp2.pth (its cfg.yaml beside it) '
            'or Fast-FoundationStereo model_best_bp2_serialize.pth / converted .safetensors, '
            'or the folder holding one; needed by the foundation_stereo backend.',
            BACKEND, backends=_FS),
    Setting('model', '',
            'Exported network (.onnx) for the onnx backend: this package\'s export, '
            'FoundationStereo scripts/make_onnx.py or Fast-FoundationStereo '
            'scripts/make_single_onnx.py.', BACKEND, backends=_ONNX),
    Setting('provider', 'auto',
            'ONNX Runtime provider of the onnx backend: auto (TensorRT, else CUDA, else CPU) '
            'or one forced.', BACKEND, choices=PROVIDER_CHOICES, backends=_ONNX),
    Setting('trt_cache_dir', '',
            'Where the onnx backend keeps built TensorRT engines (empty: '
            '~/.cache/foundation_stereo_ros/tensorrt); the first build can take minutes.',
            BACKEND, backends=_ONNX),
    Setting('trt_fp16', True, 'Let TensorRT run the onnx backend\'s layers in fp16.',
            BACKEND, backends=_ONNX),
    Setting('device', 'auto', 'Device: auto (CUDA when available), cuda, cuda:N or cpu.',
            BACKEND, choices=DEVICES, pattern=CUDA_INDEX, backends=_FS + _ONNX),
    Setting('precision', 'auto',
            'Network precision: auto (fp16 autocast on CUDA, the official default; fp32 on '
            'CPU), fp32, or fp16/bf16 autocast (on CPU slow unless it has native units).',
            BACKEND, choices=PRECISION_CHOICES, backends=_FS),
    Setting('compile', False,
            'torch.compile the network (CUDA graphs for the refinement step on CUDA). '
            'Compiles at start for warmup_width x warmup_height, else on the first pair, and '
            'again (logged, one slow pair) whenever the input size changes.',
            BACKEND, backends=_FS),
    Setting('warmup_width', 0,
            'Width of a dummy pair run at start so the first real pair is fast (compilation, '
            'cuDNN tuning): the camera width times scale; 0: no warm-up.',
            BACKEND, low=0, high=8192, step=1, backends=_FS),
    Setting('warmup_height', 0,
            'Height of the warm-up pair (the camera height times scale); 0: no warm-up.',
            BACKEND, low=0, high=8192, step=1, backends=_FS),
    Setting('valid_iters', 0, 'GRU refinement iterations of the network (more: finer, '
            'slower); 0: the checkpoint\'s own count (FoundationStereo 32; '
            'Fast-FoundationStereo its cfg.yaml\'s valid_iters, else 8).',
            BACKEND, low=0, high=100, step=1, runtime=True, backends=_FS),
    Setting('hierarchical', False,
            'Coarse-to-fine inference: a low-resolution pass initialises the full one.',
            BACKEND, runtime=True, backends=_FS),
    Setting('small_ratio', 0.5, 'Resolution ratio of the coarse pass when hierarchical.',
            BACKEND, low=0.1, high=0.9, runtime=True, backends=_FS),
    Setting('num_disparities', 128,
            'SGBM disparity search range in pixels (multiple of 16; at least the largest '
            'disparity, fx * baseline / nearest depth).', BACKEND, low=16, high=1024, step=16,
            backends=_SGBM),
    Setting('block_size', 5, 'SGBM matching block size in pixels (odd; 3 to 11 is usual).',
            BACKEND, low=1, high=31, step=2, backends=_SGBM),
    Setting('min_disparity', 0,
            'SGBM smallest disparity searched (negative with a shifted principal point).',
            BACKEND, low=-1024, high=1024, step=1, backends=_SGBM),
    Setting('sgbm_mode', 'sgbm_3way',
            'SGBM path directions: sgbm_3way (fastest), sgbm (5), hh4 (4), hh (8, slow).',
            BACKEND, choices=SGBM_MODES, backends=_SGBM),
    Setting('uniqueness_ratio', 10,
            'SGBM: percent by which the best match must beat the second best.',
            BACKEND, low=0, high=100, step=1, backends=_SGBM),
    Setting('speckle_window_size', 100,
            'SGBM speckle filter: largest blob (pixels) removed as noise; 0 disables it.',
            BACKEND, low=0, high=10000, step=1, backends=_SGBM),
    Setting('speckle_range', 2, 'SGBM speckle filter: disparity spread within one blob.',
            BACKEND, low=0, high=64, step=1, backends=_SGBM),
    # -- the pipeline (may change at runtime) -----------------------------------------------
    Setting('scale', 1.0,
            'Run the backend on images resized by this factor; outputs stay at camera '
            'resolution.', PIPELINE, low=0.05, high=1.0, runtime=True),
    Setting('z_near', 0.0, 'Depth and points nearer than this (metres) are NaN.',
            PIPELINE, low=0.0, high=1000.0, runtime=True),
    Setting('z_far', 100.0, 'Depth and points farther than this (metres) are NaN.',
            PIPELINE, low=0.01, high=10000.0, runtime=True),
    Setting('remove_invisible', True,
            'Invalidate disparities whose match falls outside the right image.',
            PIPELINE, runtime=True),
    # -- depth you can trust: filters after the disparity (may change at runtime; 0 = off) ----
    Setting('left_right_check', False,
            'Left-right consistency check for every backend: the right view\'s disparity by '
            'the mirror trick (one batch of two), pixels whose two disparities disagree by '
            'more than left_right_max_diff dropped; the agreement joins the confidence map '
            '(and gives SGBM one). Twice the backend\'s cost.', PIPELINE, runtime=True),
    Setting('left_right_max_diff', 1.0,
            'Largest left/right disparity disagreement (pixels at the backend\'s run size) '
            'the left-right check keeps.', PIPELINE, low=0.1, high=64.0, runtime=True),
    Setting('confidence_threshold', 0.0,
            'Drop pixels whose confidence is below this from disparity, depth and points; '
            '0: off.', PIPELINE, low=0.0, high=1.0, runtime=True),
    Setting('edge_rtol', 0.0,
            'Flying pixels: drop pixels where the relative depth spread in a 3x3 window '
            'exceeds this (about 0.04 drops object edges); 0: off.',
            PIPELINE, low=0.0, high=10.0, runtime=True),
    Setting('denoise_radius', 0.0,
            'Cloud denoising: drop points with fewer than denoise_min_neighbors neighbours '
            'within this radius (metres; the official demo: 0.03), counted in the organized '
            'cloud\'s image neighbourhood; 0: off.', PIPELINE, low=0.0, high=10.0, runtime=True),
    Setting('denoise_min_neighbors', 30,
            'Neighbours a point needs within denoise_radius to be kept (the official demo: '
            '30).', PIPELINE, low=1, high=10000, step=1, runtime=True),
    # -- input synchronisation (read-only) ---------------------------------------------------
    Setting('sync_policy', 'exact',
            'Input synchronisation: exact (equal stamps) or approximate (within slop).',
            SYNC, choices=SYNC_POLICIES),
    Setting('slop', 0.01, 'Largest stamp spread (seconds) of a set with approximate sync.',
            SYNC, low=0.0, high=1.0),
    Setting('queue_size', 10, 'Pending messages kept per input while waiting for a set.',
            SYNC, low=1, high=100, step=1),
    # -- input images (read-only) ------------------------------------------------------------
    Setting('rectify', False,
            'Subscribe to left/image_raw and right/image_raw and rectify them with their '
            'CameraInfo (D, K, R, P; plumb_bob, rational_polynomial or equidistant); outputs '
            'are in the rectified left frame and depth/camera_info is the rectified one.',
            INPUT),
    Setting('image_transport', 'raw',
            'Input image transport: raw (sensor_msgs/Image) or compressed (JPEG/PNG '
            'CompressedImage on <image topic>/compressed). The bag tool tells by the type.',
            INPUT, choices=IMAGE_TRANSPORTS, tools=False),
    Setting('cache_camera_info', False,
            'Reuse the latest CameraInfo of each camera for every image pair, instead of '
            'synchronising it with the images: for drivers and bags that publish CameraInfo '
            'once (latched) or rarely, or stamp it 0.', SYNC),
    # -- cameras (one node, one model, several stereo cameras) ------------------------------
    Setting('cameras', ('',),
            'Stereo cameras this node serves, each by the namespace of its topics relative to '
            'the node\'s: [front, rear] reads front/left/image_rect... and publishes '
            'front/disparity...; \'\' is the node\'s own topics (the default, one camera). '
            'One model serves them all: sets of the same size run as one batch.',
            NODE, pattern=CAMERA_NAMESPACE, tools=False, unique=True,
            hint="'' (the node's own topics) or a relative namespace such as front or "
                 'head/left'),
    Setting('camera_max_rates', (0.0,),
            'Most sets per second processed for each camera (0: as fast as the model goes): '
            'one value for every camera, or one per camera in the order of cameras, e.g. '
            '[0.0, 15.0] to run the rear camera at most at 15 Hz.',
            NODE, low=0.0, high=1000.0, runtime=True, tools=False),
    # -- the node's monitoring (read-only) ---------------------------------------------------
    Setting('camera_info_timeout', 2.0,
            'Warn (throttled) when an input is silent while the others arrive, or no set '
            'forms, for this long (seconds).',
            NODE, low=0.1, high=60.0, tools=False),
    Setting('diagnostics_period', 1.0, 'Period of /diagnostics messages (seconds).',
            NODE, low=0.1, high=60.0, tools=False),
)

BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}
# Former names, for the hint to a user who still passes one.
RENAMED: dict[str, str] = {'lr_check': 'left_right_check'}
DEFAULTS: dict[str, Value] = {s.name: s.default for s in SETTINGS}


class SettingsError(ValueError):
    """Settings that cannot be used; the message lists every problem."""


def check_value(name: str, value: Any) -> str | None:
    """Return why ``value`` is not acceptable for setting ``name``, or None if it is."""
    setting = BY_NAME.get(name)
    if setting is None:
        return f'unknown setting {name!r}; known: {", ".join(BY_NAME)}'
    return setting.check(value)


def check_together(values: Mapping[str, Any]) -> list[str]:
    """Problems between settings (each alone valid)."""
    errors = []
    if (values.get('warmup_width', 0) > 0) != (values.get('warmup_height', 0) > 0):
        errors.append(f'warmup_width ({values.get("warmup_width", 0)}) and warmup_height '
                      f'({values.get("warmup_height", 0)}) go together: set both or neither')
    if 'z_far' in values and values['z_far'] <= values.get('z_near', DEFAULTS['z_near']):
        errors.append(f'z_far ({values["z_far"]}) must be greater than z_near '
                      f'({values.get("z_near", DEFAULTS["z_near"])})')
    cameras = values.get('cameras', DEFAULTS['cameras'])
    rates = values.get('camera_max_rates', DEFAULTS['camera_max_rates'])
    if len(rates) not in (1, len(cameras)):
        errors.append(f'camera_max_rates has {len(rates)} values for {len(cameras)} cameras: '
                      'give one value for every camera, or one per camera')
    return errors


def camera_rates(values: Mapping[str, Any]) -> tuple[float, ...]:
    """Return the rate cap of each camera (0: none), one per item of ``cameras``."""
    rates = tuple(values['camera_max_rates'])
    return rates * len(values['cameras']) if len(rates) == 1 else rates


# How a read-only setting changes; a managed (lifecycle) node says it its own way.
RESTART_HINT = 'restart with -p {name}:={value}'


def check_changes(current: Mapping[str, Any], changes: Mapping[str, Any], *,
                  how_to_change: str = RESTART_HINT) -> str | None:
    """Return why the runtime ``changes`` must be rejected, or None to accept them all.

    ``current`` holds every setting's value now; the changes are judged together (so
    ``z_near`` and ``z_far`` may move past each other in one call). ``how_to_change`` (with
    ``{name}`` and ``{value}``) tells how to change a read-only setting. Names that are not ours
    (``use_sim_time``...) are left to whoever owns them.
    """
    errors = []
    coerced = {}
    for name, value in changes.items():
        setting = BY_NAME.get(name)
        if setting is None:
            continue
        reason = setting.check(value)
        if reason is None:
            coerced[name] = setting.coerce(value)
        if not setting.runtime and coerced.get(name, value) != current.get(name):
            errors.append(f'{name} cannot change while the node runs (it selects the model, '
                          f'device or ROS plumbing): '
                          + how_to_change.format(name=name, value=value))
        elif reason:
            errors.append(reason)
    if not errors:
        errors.extend(check_together({**current, **coerced}))
    return '; '.join(errors) or None


class Settings(Mapping[str, Value]):
    """Validated values of every setting (missing names take their defaults).

    Read them as a mapping or as attributes (``settings.valid_iters``). Raises
    :class:`SettingsError` listing every problem.
    """

    def __init__(self, values: Mapping[str, Any] | None = None) -> None:
        """Validate ``values`` against :data:`SETTINGS`."""
        merged = {**DEFAULTS, **(values or {})}
        errors = [r for r in (check_value(k, v) for k, v in merged.items()) if r]
        if not errors:
            errors.extend(check_together(merged))
            if merged['backend'] == 'foundation_stereo' and not merged['checkpoint']:
                errors.append(
                    'backend foundation_stereo needs a checkpoint: pass checkpoint:='
                    '/path/to/model_best_bp2.pth (its cfg.yaml beside it), or use '
                    'backend:=sgbm')
            if merged['backend'] == 'onnx' and not merged['model']:
                errors.append('backend onnx needs an exported network: pass '
                              'model:=/path/to/exported.onnx')
        if errors:
            raise SettingsError('invalid settings: ' + '; '.join(errors))
        self._values = {k: BY_NAME[k].coerce(v) for k, v in merged.items()}

    def __getitem__(self, name: str) -> Value:
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __getattr__(self, name: str) -> Value:
        try:
            return self.__dict__['_values'][name]
        except KeyError:
            raise AttributeError(name) from None

    def __repr__(self) -> str:
        return f'Settings({self._values!r})'

    def backend_options(self) -> dict[str, Value]:
        """Keyword arguments of the chosen backend's constructor."""
        return backend_options(self._values)

    def pipeline_options(self) -> dict[str, Value]:
        """Keyword arguments of ``PipelineConfig``: pipeline and runtime backend settings."""
        return pipeline_options(self._values)


def backend_options(values: Mapping[str, Value]) -> dict[str, Value]:
    """Return the constructor keywords of the backend ``values['backend']`` names."""
    backend = values['backend']
    return {s.name: values[s.name] for s in SETTINGS
            if s.target == BACKEND and backend in s.backends}


def runtime_backend_names(backend: str) -> tuple[str, ...]:
    """Names of the settings ``backend`` takes per pair (they may change at runtime)."""
    return tuple(s.name for s in SETTINGS
                 if s.target == BACKEND and s.runtime and backend in s.backends)


def pipeline_options(values: Mapping[str, Value]) -> dict[str, Any]:
    """``PipelineConfig`` keywords: its own settings plus the backend's runtime ones."""
    options: dict[str, Any] = {s.name: values[s.name] for s in SETTINGS
                               if s.target == PIPELINE and s.name in values}
    options['backend_options'] = {name: values[name]
                                  for name in runtime_backend_names(values['backend'])
                                  if name in values}
    return options


# -- how a message names a setting ----------------------------------------------------------------

# Who reads a message about a setting: the node's user (ROS parameters, ``checkpoint:=X``) or
# an offline tool's (command-line options, ``--checkpoint X``).
ROS_PARAMETERS, COMMAND_LINE = 'ros_parameters', 'command_line'


def mention(name: str, value: Value | None = None, phrasing: str = ROS_PARAMETERS) -> str:
    """Name setting ``name`` (with ``value``, if given) the way ``phrasing``'s reader sets it."""
    setting = BY_NAME[name]
    if phrasing == COMMAND_LINE:
        return setting.option if value is None else f'{setting.option} {value}'
    return name if value is None else f'{name}:={value}'


def startup_settings(backend: str) -> tuple[str, ...]:
    """Names of the settings fixed when ``backend`` starts (what to check when it cannot)."""
    return tuple(s.name for s in SETTINGS
                 if s.target == BACKEND and not s.runtime and backend in s.backends)


def without_effect(backend: str, values: Mapping[str, Any]) -> list[str]:
    """Names in ``values`` that ``backend`` does not take, where they differ from the default.

    Another backend's settings: SGBM's ``block_size`` given with the network, the network's
    ``valid_iters`` with SGBM. A value may be a list (a sweep's): given if any differs.
    """
    def given(name: str, value: Any) -> bool:
        many = value if isinstance(value, list | tuple) else [value]   # a sweep's list
        return any(v != BY_NAME[name].default for v in many)

    return [name for name, value in values.items()
            if name in BY_NAME and BY_NAME[name].target == BACKEND
            and BY_NAME[name].backends    # () : every backend's (the backend choice itself)
            and backend not in BY_NAME[name].backends and given(name, value)]


# -- command lines ------------------------------------------------------------------------------

def tool_settings(targets: Iterable[str] = (BACKEND, PIPELINE)) -> tuple[Setting, ...]:
    """Return the settings an offline tool exposes for ``targets``."""
    wanted = set(targets)
    return tuple(s for s in SETTINGS if s.tools and s.target in wanted)


def add_arguments(parser: argparse.ArgumentParser,
                  targets: Iterable[str] = (BACKEND, PIPELINE)) -> None:
    """Add one option per setting of ``targets``: ``--valid-iters`` for ``valid_iters``.

    Same names and defaults as the node's parameters; booleans get ``--x/--no-x``. Values are
    checked by :func:`from_args`, so the messages are the node's.
    """
    group = parser.add_argument_group('pipeline settings (the node\'s parameters)')
    for s in tool_settings(targets):
        help_text = s.description + (f' ({s.constraints})' if s.constraints else '')
        help_text = help_text.replace('%', '%%') + ' Default: %(default)s.'
        if s.type_name == 'bool':
            group.add_argument(s.option, dest=s.name, default=s.default,
                               action=argparse.BooleanOptionalAction, help=help_text)
        elif s.is_list:  # --cameras front rear
            group.add_argument(s.option, dest=s.name, default=s.default, nargs='+',
                               type=s.item_type, metavar=s.name.upper(), help=help_text)
        else:
            group.add_argument(s.option, dest=s.name, default=s.default,
                               type=type(s.default), metavar=s.name.upper(), help=help_text)


def from_args(args: argparse.Namespace, targets: Iterable[str] = (BACKEND, PIPELINE),
              **overrides: Value) -> Settings:
    """Validate a command line built with :func:`add_arguments` into :class:`Settings`.

    Messages name the options (``--valid-iters``), not the parameters.
    """
    values = {s.name: getattr(args, s.name) for s in tool_settings(targets)}
    values.update(overrides)
    values = {name: tuple(value) if isinstance(value, list) else value
              for name, value in values.items()}
    try:
        return Settings(values)
    except SettingsError as exc:
        raise SettingsError(option_names(str(exc))) from None


def option_names(message: str, every_word: bool = True) -> str:
    """``message`` with settings named as command-line options: ``--z-far`` for ``z_far``.

    ``every_word`` False: one-word names (backend, model, scale...) only where a value
    follows (``scale=0.5``), so prose that uses them as words stays readable.
    """
    for s in SETTINGS:
        # Whole words only: 'model' must not rewrite 'model_best_bp2.pth'.
        valued = '' if every_word or '_' in s.name else '(?=:?=)'
        message = re.sub(rf'\b{s.name}\b{valued}(:=|=)?', lambda m, s=s: s.option + (
            ' ' if m.group(1) else ''), message)
    return message


# -- the parameters file ------------------------------------------------------------------------

_YAML_HEADER = """\
# Parameters of foundation_stereo_node, with their defaults. Generated from
# foundation_stereo_ros/settings.py (python -m foundation_stereo_ros.settings > this file);
# a test keeps the two equal.
# Use: ros2 run foundation_stereo_ros foundation_stereo_node --ros-args --params-file THIS_FILE
# "/**" matches the node whatever its name and namespace. QoS: see the README (qos_overrides).
/**:
  ros__parameters:
"""


def _yaml_value(value: Value) -> str:
    if isinstance(value, tuple):  # a YAML flow sequence: [front, rear]
        return '[' + ', '.join(_yaml_value(item) for item in value) + ']'
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, str):
        return f'"{value}"' if value == '' else value
    return repr(value)


def params_yaml(table: Iterable[Setting] = SETTINGS, header: str = _YAML_HEADER,
                values: Mapping[str, Value] | None = None) -> str:
    """Return a parameters file of ``table``: ``config/foundation_stereo.yaml`` by default.

    Each setting with its description, whether it may change at runtime and its range, then
    its value: the default unless ``values`` gives another.
    """
    values = values or {}
    lines = [header.rstrip('\n')]
    for s in table:
        when = 'runtime' if s.runtime else 'read-only'
        extra = f'; {s.constraints}' if s.constraints else ''
        lines.append(f'    # {s.description} [{when}{extra}]')
        lines.append(f'    {s.name}: {_yaml_value(values.get(s.name, s.default))}')
    return '\n'.join(lines) + '\n'


if __name__ == '__main__':
    print(params_yaml(), end='')

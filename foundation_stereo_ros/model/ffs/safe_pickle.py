"""Restricted unpickler for ``torch.save(model)`` archives (FFS ``*_serialize.pth``).

A serialized Fast-FoundationStereo checkpoint is a torch zip archive whose ``data.pkl``
rebuilds the whole ``nn.Module`` object graph. ``torch.load(weights_only=False)`` would import
and run whatever the pickle names. Here every global the pickle asks for is looked up in an
explicit allowlist and replaced by inert data:

* module classes (``torch.nn`` layers, the official ``core.*`` / ``foundation_stereo_ori.*``
  classes, timm's EdgeNeXt classes) become :class:`.records.ModuleRecord` s: class path,
  plain attributes, children, tensors. No class of the file is imported or called;
* tensor and parameter rebuild functions are re-implemented here on top of the archive's
  raw storage records;
* OmegaConf containers become plain ``dict`` / ``list`` values;
* a handful of harmless builtins (``dict``, ``list``, ``set``, ``OrderedDict``...).

Any other global is refused with :class:`UnsafeCheckpointError` naming it, before anything
it refers to could run.
"""
from __future__ import annotations

import collections
import pickle
import pickletools
import zipfile
from pathlib import Path
from typing import Any

import torch

from .records import ClassRef, ModuleRecord

__all__ = [
    'MODULE_CLASSES',
    'UnsafeCheckpointError',
    'canonical_class_path',
    'is_serialized_module',
    'read_module_records',
    'root_class',
]


class UnsafeCheckpointError(pickle.UnpicklingError):
    """The pickle names a global outside the allowlist (or uses it in a way not allowed)."""


_TORCH_NN = {
    'activation': ('GELU', 'LeakyReLU', 'ReLU', 'Sigmoid', 'Tanh'),
    'batchnorm': ('BatchNorm2d', 'BatchNorm3d'),
    'container': ('ModuleDict', 'ModuleList', 'Sequential'),
    'conv': ('Conv2d', 'Conv3d', 'ConvTranspose2d', 'ConvTranspose3d'),
    'dropout': ('Dropout',),
    'instancenorm': ('InstanceNorm2d', 'InstanceNorm3d'),
    'linear': ('Identity', 'Linear'),
    'normalization': ('LayerNorm',),
    'pooling': ('AdaptiveAvgPool2d', 'AdaptiveMaxPool2d'),
    'upsampling': ('Upsample',),
}

_OFFICIAL = {
    'foundation_stereo': ('FastFoundationStereo', 'hourglass'),
    'distill_block': ('ForwardHelper', 'PostForwardHelper'),
    'extractor': ('Feature', 'ContextNetSharedBackbone'),
    'update': ('BasicSelectiveMultiUpdateBlock', 'BasicMotionEncoder', 'SelectiveConvGRU',
               'RaftConvGRU', 'DispHead'),
    'submodule': ('BasicConv', 'BasicConv_IN', 'ChannelAttentionEnhancement', 'Conv2x',
                  'Conv2x_IN', 'Conv3dNormActReduced', 'CostVolumeDisparityAttention',
                  'EdgeNextConvEncoder', 'FeatureAtt', 'FlashAttentionTransformerEncoderLayer',
                  'FlashMultiheadAttention', 'LayerNorm2d', 'PositionalEmbedding',
                  'ResnetBasicBlock', 'ResnetBasicBlock3D', 'SpatialAttentionExtractor'),
}

_TIMM_EDGENEXT = ('ConvBlock', 'CrossCovarianceAttn', 'EdgeNeXtStage',
                  'PositionalEncodingFourier', 'SplitTransposeBlock')

# Aliases a file may use for the same class -> the canonical path the builder knows.
_ALIASES: dict[str, str] = {}
for _sub, _names in _OFFICIAL.items():
    for _name in _names:
        _ALIASES[f'foundation_stereo_ori.{_sub}.{_name}'] = f'core.{_sub}.{_name}'
for _name in ('Mlp',):
    for _mod in ('timm.models.layers.mlp', 'timm.layers'):
        _ALIASES[f'{_mod}.{_name}'] = f'timm.layers.mlp.{_name}'
for _mod in ('timm.models.layers.norm', 'timm.layers'):
    _ALIASES[f'{_mod}.LayerNorm2d'] = 'timm.layers.norm.LayerNorm2d'

#: Canonical class paths of every module type a checkpoint may contain.
MODULE_CLASSES: frozenset[str] = frozenset(
    [f'torch.nn.modules.{mod}.{name}' for mod, names in _TORCH_NN.items() for name in names]
    + [f'core.{sub}.{name}' for sub, names in _OFFICIAL.items() for name in names]
    + [f'timm.models.edgenext.{name}' for name in _TIMM_EDGENEXT]
    + ['timm.layers.mlp.Mlp', 'timm.layers.norm.LayerNorm2d'])


def canonical_class_path(path: str) -> str:
    """Map an alias (``foundation_stereo_ori.*``, older timm paths) to its canonical path."""
    return _ALIASES.get(path, path)


# ----------------------------------------------------------------------------- inert objects
class _Pickled:
    """Target of NEWOBJ + BUILD for an allowlisted class: keeps the state, runs nothing."""

    _class_path = ''

    def __init__(self, *args: Any) -> None:
        if args:
            raise UnsafeCheckpointError(f'{self._class_path} is called with arguments in the '
                                        f'pickle; only plain object state is accepted')
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _PickledModule(_Pickled):
    pass


class _PickledOmegaConf(_Pickled):
    pass


_TYPE_CACHE: dict[str, type] = {}


def _inert_type(path: str, base: type) -> type:
    if path not in _TYPE_CACHE:
        _TYPE_CACHE[path] = type(f'Pickled[{path}]', (base,), {'_class_path': path})
    return _TYPE_CACHE[path]


class _AnyType:
    """Stand-in for ``typing.Any`` (only appears in OmegaConf metadata)."""


class _StorageType:
    """Stand-in for ``torch.FloatStorage`` & co.: only carries the dtype."""

    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype


_STORAGE_TYPES = {
    'FloatStorage': torch.float32, 'DoubleStorage': torch.float64,
    'HalfStorage': torch.float16, 'BFloat16Storage': torch.bfloat16,
    'LongStorage': torch.int64, 'IntStorage': torch.int32, 'ShortStorage': torch.int16,
    'CharStorage': torch.int8, 'ByteStorage': torch.uint8, 'BoolStorage': torch.bool,
}
_DTYPES = {'float32', 'float64', 'float16', 'bfloat16', 'int64', 'int32', 'int8', 'uint8',
           'bool'}


def _rebuild_tensor(storage: Any, offset: int, size: tuple, stride: tuple,
                    requires_grad: bool = False, backward_hooks: Any = None,
                    metadata: Any = None) -> torch.Tensor:
    if not isinstance(storage, torch.Tensor):
        raise UnsafeCheckpointError('tensor rebuild without a storage record')
    if backward_hooks:
        raise UnsafeCheckpointError('tensor with backward hooks (code) in the pickle')
    return storage.as_strided(tuple(size), tuple(stride), int(offset))


def _rebuild_parameter(data: Any, requires_grad: bool = True,
                       backward_hooks: Any = None) -> torch.Tensor:
    if not isinstance(data, torch.Tensor):
        raise UnsafeCheckpointError('parameter rebuild without a tensor')
    if backward_hooks:
        raise UnsafeCheckpointError('parameter with backward hooks (code) in the pickle')
    return data


def _safe_defaultdict(*args: Any) -> dict:
    if args and args[0] not in (None, list, dict, set, bool, int):
        raise UnsafeCheckpointError('collections.defaultdict with a non-builtin factory')
    return {}


_SAFE_GLOBALS: dict[tuple[str, str], Any] = {
    ('collections', 'OrderedDict'): collections.OrderedDict,
    ('collections', 'defaultdict'): _safe_defaultdict,
    ('torch._utils', '_rebuild_tensor_v2'): _rebuild_tensor,
    ('torch._utils', '_rebuild_parameter'): _rebuild_parameter,
    ('typing', 'Any'): _AnyType,
}
for _builtins in ('__builtin__', 'builtins'):
    _SAFE_GLOBALS.update({(_builtins, 'dict'): dict, (_builtins, 'list'): list,
                          (_builtins, 'set'): set, (_builtins, 'frozenset'): frozenset,
                          (_builtins, 'tuple'): tuple, (_builtins, 'long'): int,
                          (_builtins, 'int'): int, (_builtins, 'float'): float,
                          (_builtins, 'bool'): bool})
_OMEGACONF = {'omegaconf.dictconfig.DictConfig', 'omegaconf.listconfig.ListConfig',
              'omegaconf.base.ContainerMetadata', 'omegaconf.base.Metadata',
              'omegaconf.nodes.AnyNode', 'omegaconf.nodes.IntegerNode',
              'omegaconf.nodes.FloatNode', 'omegaconf.nodes.BooleanNode',
              'omegaconf.nodes.StringNode'}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, stream: Any, archive: zipfile.ZipFile, prefix: str) -> None:
        super().__init__(stream)
        self._archive = archive
        self._prefix = prefix
        self._storages: dict[str, torch.Tensor] = {}

    def find_class(self, module: str, name: str) -> Any:
        path = f'{module}.{name}'
        if (module, name) in _SAFE_GLOBALS:
            return _SAFE_GLOBALS[(module, name)]
        if canonical_class_path(path) in MODULE_CLASSES:
            return _inert_type(path, _PickledModule)
        if path in _OMEGACONF:
            return _inert_type(path, _PickledOmegaConf)
        if module == 'torch' and name in _STORAGE_TYPES:
            return _StorageType(_STORAGE_TYPES[name])
        if module == 'torch' and name in _DTYPES:
            return getattr(torch, name)
        raise UnsafeCheckpointError(
            f'refusing global {path!r}: it is not on the allowlist of classes and functions a '
            f'FoundationStereo-family checkpoint may name, so the file was not loaded (nothing '
            f'from it ran). If you trust the file and it holds a new block type, report it')

    def persistent_load(self, pid: Any) -> torch.Tensor:
        if (not isinstance(pid, tuple) or len(pid) != 5 or pid[0] != 'storage'
                or not isinstance(pid[1], _StorageType)):
            raise UnsafeCheckpointError(f'unexpected persistent id {pid!r:.80} in the pickle')
        _, storage_type, key, _location, numel = pid
        key = str(key)
        if key not in self._storages:
            try:
                raw = self._archive.read(f'{self._prefix}/data/{key}')
            except KeyError as err:
                raise UnsafeCheckpointError(f'storage record data/{key} is missing from the '
                                            f'archive') from err
            flat = torch.empty(int(numel), dtype=storage_type.dtype)
            if len(raw) != flat.numel() * flat.element_size():
                raise UnsafeCheckpointError(f'storage record data/{key} holds {len(raw)} bytes, '
                                            f'the pickle says {numel} elements')
            # Copied into memory torch allocates itself: kernels run markedly slower on
            # tensors that merely wrap a Python buffer.
            if raw:
                flat.view(torch.uint8).copy_(torch.frombuffer(bytearray(raw), dtype=torch.uint8))
            self._storages[key] = flat
        return self._storages[key]


# ----------------------------------------------------------------------------- conversion
def _plain(value: Any, where: str) -> Any:
    """Turn unpickled attribute values into plain data (OmegaConf -> dict/list)."""
    if isinstance(value, _PickledOmegaConf):
        return _omegaconf_value(value, where)
    if isinstance(value, _PickledModule):
        raise UnsafeCheckpointError(f'{where}: module stored as a plain attribute')
    if isinstance(value, type) and issubclass(value, _PickledModule):
        return ClassRef(canonical_class_path(value._class_path))
    if isinstance(value, type) or callable(value) and not isinstance(value, torch.Tensor):
        raise UnsafeCheckpointError(f'{where}: attribute holds a callable {value!r:.60}')
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [_plain(v, where) for v in value]
        return type(value)(items) if not isinstance(value, list) else items
    if isinstance(value, dict):
        return {k: _plain(v, where) for k, v in value.items()}
    if isinstance(value, (_StorageType, _AnyType)):
        raise UnsafeCheckpointError(f'{where}: unexpected {type(value).__name__} value')
    return value


def _omegaconf_value(node: _PickledOmegaConf, where: str) -> Any:
    state = node.state if isinstance(node.state, dict) else {}
    kind = node._class_path.rsplit('.', 1)[-1]
    if kind == 'DictConfig':
        content = state.get('_content')
        if not isinstance(content, dict):
            raise UnsafeCheckpointError(f'{where}: OmegaConf DictConfig without content '
                                        f'({content!r:.40}); interpolations are not supported')
        return {str(k): _omegaconf_value(v, f'{where}.{k}') if isinstance(v, _PickledOmegaConf)
                else _plain(v, where) for k, v in content.items()}
    if kind == 'ListConfig':
        content = state.get('_content')
        if not isinstance(content, list):
            raise UnsafeCheckpointError(f'{where}: OmegaConf ListConfig without content')
        return [_omegaconf_value(v, where) if isinstance(v, _PickledOmegaConf)
                else _plain(v, where) for v in content]
    if kind.endswith('Node'):
        value = state.get('_val')
        if isinstance(value, str) and value.startswith('${'):
            raise UnsafeCheckpointError(f'{where}: OmegaConf interpolation {value!r} is not '
                                        f'supported; resolve it in the checkpoint first')
        return _plain(value, where)
    raise UnsafeCheckpointError(f'{where}: OmegaConf {kind} used as a value')


_MODULE_BOOKKEEPING = {'training', '_is_full_backward_hook', '_non_persistent_buffers_set',
                       '_parameters', '_buffers', '_modules'}


def _to_record(obj: _PickledModule, where: str) -> ModuleRecord:
    state = obj.state
    if not isinstance(state, dict):
        raise UnsafeCheckpointError(f'{where or "<root>"}: {obj._class_path} has no '
                                    f'attribute dictionary in the pickle')
    record = ModuleRecord(class_path=obj._class_path)
    for key, value in state.items():
        if key in _MODULE_BOOKKEEPING:
            continue
        if key.startswith('_'):
            if key.endswith('hooks') and value:
                raise UnsafeCheckpointError(f'{where or "<root>"}: module hooks ({key}) are '
                                            f'code and are not accepted')
            continue
        record.attrs[key] = _plain(value, f'{where or "<root>"}.{key}')
    for kind, target in (('_parameters', record.params), ('_buffers', record.buffers)):
        for name, value in dict(state.get(kind) or {}).items():
            if value is not None and not isinstance(value, torch.Tensor):
                raise UnsafeCheckpointError(f'{where}.{name}: {kind[1:-1]} is not a tensor')
            target[name] = value
    record.non_persistent = frozenset(state.get('_non_persistent_buffers_set') or ())
    for name, child in dict(state.get('_modules') or {}).items():
        path = f'{where}.{name}' if where else name
        if child is None:
            record.children[name] = None
        elif isinstance(child, _PickledModule):
            record.children[name] = _to_record(child, path)
        else:
            raise UnsafeCheckpointError(f'{path}: child module is a {type(child).__name__}')
    return record


# ----------------------------------------------------------------------------- entry points
def _pickle_prefix(archive: zipfile.ZipFile) -> str:
    names = [n for n in archive.namelist() if n.endswith('/data.pkl') and n.count('/') == 1]
    if len(names) != 1:
        raise UnsafeCheckpointError(f'{archive.filename} is not a torch.save archive (expected '
                                    f'one <name>/data.pkl, found {names[:3]})')
    return names[0].rsplit('/', 1)[0]


def root_class(path: str | Path) -> str:
    """Canonical class path of the object at the root of a torch zip archive's pickle.

    '' when the root is a plain container (the dict of a state-dict checkpoint). Reads only
    the first opcodes of ``data.pkl``; nothing is unpickled. Raises ``OSError``,
    ``zipfile.BadZipFile`` or :class:`UnsafeCheckpointError` (no single ``data.pkl``).
    """
    with zipfile.ZipFile(path) as archive:
        prefix = _pickle_prefix(archive)
        with archive.open(f'{prefix}/data.pkl') as stream:
            head = stream.read(256)
    return _root_global(head)


def is_serialized_module(path: str | Path) -> bool:
    """Tell whether ``path`` is a torch zip archive whose pickle has a module at its root."""
    try:
        return root_class(path) in MODULE_CLASSES
    except (OSError, zipfile.BadZipFile, UnsafeCheckpointError):
        return False


def _root_global(head: bytes) -> str:
    """Canonical path of the first global a pickle loads ('' if none in ``head``).

    A serialized module starts with its class (GLOBAL, or two strings + STACK_GLOBAL from
    protocol 4); a state-dict checkpoint starts with a dict. Only opcodes are decoded.
    """
    strings: list[str] = []
    try:
        for opcode, arg, _pos in pickletools.genops(head):
            if opcode.name == 'GLOBAL':
                return canonical_class_path(str(arg).replace(' ', '.'))
            if opcode.name == 'STACK_GLOBAL' and len(strings) >= 2:
                return canonical_class_path(f'{strings[-2]}.{strings[-1]}')
            if isinstance(arg, str) and 'UNICODE' in opcode.name:
                strings.append(arg)
            elif opcode.name not in ('PROTO', 'FRAME', 'MEMOIZE', 'BINPUT', 'LONG_BINPUT'):
                return ''
    except (ValueError, EOFError):
        pass
    return ''


def read_module_records(path: str | Path) -> ModuleRecord:
    """Unpickle a ``torch.save(model)`` archive into a :class:`ModuleRecord` tree, safely.

    Raises :class:`UnsafeCheckpointError` (naming the global) for anything outside the
    allowlist, and ``ValueError`` for files that are not torch zip archives.
    """
    path = Path(path)
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as err:
        raise ValueError(f'{path} is not a torch.save zip archive ({err})') from err
    with archive:
        prefix = _pickle_prefix(archive)
        byteorder = f'{prefix}/byteorder'
        if byteorder in archive.namelist() and archive.read(byteorder).strip() != b'little':
            raise ValueError(f'{path} was saved on a big-endian machine; not supported')
        with archive.open(f'{prefix}/data.pkl') as stream:
            root = _RestrictedUnpickler(stream, archive, prefix).load()
    if not isinstance(root, _PickledModule):
        raise ValueError(f'{path} does not hold a serialized module (its pickle '  # noqa: TRY004
                         f'is a {type(root).__name__})')
    return _to_record(root, '')

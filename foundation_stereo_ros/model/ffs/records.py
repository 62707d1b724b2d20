"""Neutral description of a serialized ``nn.Module`` tree, and its JSON form.

A :class:`ModuleRecord` is what the restricted unpickler makes of one pickled module: the
class path the file names (``core.submodule.BasicConv``), its plain attributes, its child
records and its parameters / buffers. Nothing in it is executable; the network is built from
it by :mod:`.builder`. The same tree, with tensors replaced by their shapes, is the JSON
architecture description of the converted (pickle-free) format.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ['ClassRef', 'ModuleRecord', 'TensorSpec', 'record_from_json', 'record_to_json']

_DTYPES = {str(t).removeprefix('torch.'): t for t in (
    torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.int32,
    torch.int16, torch.int8, torch.uint8, torch.bool)}
# Plain tensors stored inside the JSON (e.g. ``dx``, the position table) stay small.
_MAX_INLINE_TENSOR = 1 << 16


@dataclass(frozen=True)
class ClassRef:
    """A class named by the file as a plain attribute value (e.g. ``norm_layer``)."""

    path: str


@dataclass(frozen=True)
class TensorSpec:
    """Shape and dtype of a parameter or buffer whose values live elsewhere."""

    shape: tuple[int, ...]
    dtype: torch.dtype


@dataclass
class ModuleRecord:
    """One module of the tree: class path, plain attributes, children, tensors."""

    class_path: str
    attrs: dict[str, Any] = field(default_factory=dict)
    children: dict[str, ModuleRecord | None] = field(default_factory=dict)
    params: dict[str, torch.Tensor | TensorSpec | None] = field(default_factory=dict)
    buffers: dict[str, torch.Tensor | TensorSpec | None] = field(default_factory=dict)
    non_persistent: frozenset[str] = frozenset()

    @property
    def class_name(self) -> str:
        """Last component of the class path."""
        return self.class_path.rsplit('.', 1)[-1]

    def named_records(self, prefix: str = '') -> Iterator[tuple[str, ModuleRecord]]:
        """Yield ``(dotted path, record)`` for this record and every descendant."""
        yield prefix, self
        for name, child in self.children.items():
            if child is not None:
                yield from child.named_records(f'{prefix}.{name}' if prefix else name)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Parameters and persistent buffers under their state-dict keys (tensors only)."""
        out: dict[str, torch.Tensor] = {}
        for path, record in self.named_records():
            stem = f'{path}.' if path else ''
            for name, value in record.params.items():
                if isinstance(value, torch.Tensor):
                    out[stem + name] = value
            for name, value in record.buffers.items():
                if isinstance(value, torch.Tensor) and name not in record.non_persistent:
                    out[stem + name] = value
        return out


# ----------------------------------------------------------------------------- JSON form
def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix('torch.')


def _parse_dtype(name: str) -> torch.dtype:
    dtype = _DTYPES.get(name)
    if dtype is None:
        raise ValueError(f'unknown tensor dtype {name!r} in the architecture description')
    return dtype


def _value_to_json(value: Any, where: str) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, list):
        return [_value_to_json(v, where) for v in value]
    if isinstance(value, tuple):
        return {'__tuple__': [_value_to_json(v, where) for v in value]}
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise ValueError(f'{where}: mapping with non-string keys cannot be described')
        return {'__dict__': {k: _value_to_json(v, where) for k, v in value.items()}}
    if isinstance(value, ClassRef):
        return {'__class__': value.path}
    if isinstance(value, torch.dtype):
        return {'__dtype__': _dtype_name(value)}
    if isinstance(value, torch.Tensor):
        if value.numel() > _MAX_INLINE_TENSOR:
            raise ValueError(f'{where}: plain tensor of {value.numel()} elements is too large '
                             f'to describe inline')
        return {'__tensor__': {'dtype': _dtype_name(value.dtype), 'shape': list(value.shape),
                               'data': value.flatten().tolist()}}
    raise ValueError(f'{where}: attribute of type {type(value).__name__} cannot be described')


def _value_from_json(value: Any) -> Any:
    if isinstance(value, list):
        return [_value_from_json(v) for v in value]
    if not isinstance(value, dict):
        return value
    if '__tuple__' in value:
        return tuple(_value_from_json(v) for v in value['__tuple__'])
    if '__dict__' in value:
        return {k: _value_from_json(v) for k, v in value['__dict__'].items()}
    if '__class__' in value:
        return ClassRef(str(value['__class__']))
    if '__dtype__' in value:
        return _parse_dtype(value['__dtype__'])
    if '__tensor__' in value:
        spec = value['__tensor__']
        return torch.tensor(spec['data'], dtype=_parse_dtype(spec['dtype'])).reshape(
            spec['shape'])
    raise ValueError(f'unrecognised value {sorted(value)} in the architecture description')


def _tensors_to_json(tensors: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in tensors.items():
        if value is None:
            out[name] = None
        else:
            out[name] = {'shape': list(value.shape), 'dtype': _dtype_name(value.dtype)}
    return out


def _tensors_from_json(spec: dict[str, Any]) -> dict[str, TensorSpec | None]:
    return {name: None if value is None else
            TensorSpec(tuple(int(s) for s in value['shape']), _parse_dtype(value['dtype']))
            for name, value in spec.items()}


def _record_to_dict(record: ModuleRecord, path: str) -> dict[str, Any]:
    return {
        'class': record.class_path,
        'attrs': {k: _value_to_json(v, f'{path or "<root>"}.{k}')
                  for k, v in record.attrs.items()},
        'parameters': _tensors_to_json(record.params),
        'buffers': _tensors_to_json(record.buffers),
        'non_persistent': sorted(record.non_persistent),
        'children': {k: None if v is None else _record_to_dict(v, f'{path}.{k}' if path else k)
                     for k, v in record.children.items()},
    }


def _record_from_dict(data: dict[str, Any]) -> ModuleRecord:
    try:
        return ModuleRecord(
            class_path=str(data['class']),
            attrs={k: _value_from_json(v) for k, v in data['attrs'].items()},
            children={k: None if v is None else _record_from_dict(v)
                      for k, v in data['children'].items()},
            params=_tensors_from_json(data['parameters']),
            buffers=_tensors_from_json(data['buffers']),
            non_persistent=frozenset(data.get('non_persistent', ())),
        )
    except (KeyError, TypeError, AttributeError) as err:
        raise ValueError(f'malformed module entry in the architecture description '
                         f'({type(err).__name__}: {err})') from err


def record_to_json(record: ModuleRecord) -> str:
    """JSON text describing the module tree (tensor values replaced by shape and dtype)."""
    return json.dumps(_record_to_dict(record, ''), separators=(',', ':'))


def record_from_json(text: str) -> ModuleRecord:
    """Inverse of :func:`record_to_json` (parameters become :class:`TensorSpec`)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f'architecture description is not valid JSON: {err}') from err
    if not isinstance(data, dict):
        raise ValueError('architecture description must be a JSON object')  # noqa: TRY004
    return _record_from_dict(data)

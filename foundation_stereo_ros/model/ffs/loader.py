"""Load a Fast-FoundationStereo checkpoint: serialized ``.pth`` or the converted format.

* ``model_best_bp2_serialize.pth`` (``torch.save`` of the module) is read with the restricted
  unpickler of :mod:`.safe_pickle`; nothing from the file runs.
* The converted format (``python -m foundation_stereo_ros.model.convert``) is one
  ``.safetensors`` file whose header metadata holds the JSON architecture description: no
  pickle at all.

As in the official scripts, a ``cfg.yaml`` next to the file overrides the pickled
``max_disp``. Its ``valid_iters`` (else the pickled one, else the family's 8) becomes the
network's ``default_iters``: the count run when none is asked for (``valid_iters: 0``).
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import yaml

from . import builder
from .network import FastFoundationStereo
from .records import ModuleRecord, record_from_json, record_to_json
from .safe_pickle import is_serialized_module, read_module_records

__all__ = [
    'CONVERTED_FORMAT',
    'CONVERTED_SUFFIX',
    'SERIALIZED_NAME',
    'is_ffs_checkpoint',
    'load_ffs_checkpoint',
    'read_ffs_records',
    'save_converted',
]

SERIALIZED_NAME = 'model_best_bp2_serialize.pth'
CONVERTED_SUFFIX = '.safetensors'
CONVERTED_FORMAT = 'foundation_stereo_ros/fast_foundation_stereo/1'
# Fields of cfg.yaml the official scripts write into model.args before running.
_CFG_OVERRIDES = ('max_disp', 'valid_iters')


def is_ffs_checkpoint(path: str | Path) -> bool:
    """Tell whether ``path`` is a serialized FFS module archive or a converted file."""
    path = Path(path)
    return path.suffix == CONVERTED_SUFFIX or is_serialized_module(path)


def _read_cfg(path: Path) -> dict[str, Any]:
    cfg_path = path.parent / 'cfg.yaml'
    if not cfg_path.is_file():
        return {}
    try:
        cfg = yaml.safe_load(cfg_path.read_text(encoding='utf-8'))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ValueError(f'{cfg_path} is not valid YAML: {err}') from err
    if cfg is None:
        return {}
    if not isinstance(cfg, Mapping):
        raise ValueError(f'{cfg_path} must hold a mapping of config fields')  # noqa: TRY004
    return dict(cfg)


def _read_converted(path: Path) -> tuple[ModuleRecord, dict[str, torch.Tensor]]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open
    try:
        with safe_open(str(path), framework='pt') as handle:
            metadata = handle.metadata() or {}
        weights = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise ValueError(f'{path} is not a readable safetensors file ({err})') from err
    if metadata.get('format') != CONVERTED_FORMAT or 'architecture' not in metadata:
        raise ValueError(f'{path} is a safetensors file without a Fast-FoundationStereo '
                         f'architecture description (expected format {CONVERTED_FORMAT}); '
                         f'create it with python -m foundation_stereo_ros.model.convert')
    return record_from_json(metadata['architecture']), weights


def read_ffs_records(path: str | Path) -> tuple[ModuleRecord, dict[str, torch.Tensor]]:
    """Module-record tree and state dict of an FFS checkpoint (either format), cfg applied."""
    path = Path(path)
    if path.suffix == CONVERTED_SUFFIX:
        record, weights = _read_converted(path)
    else:
        record = read_module_records(path)
        weights = record.state_dict()
    args = record.attrs.get('args')
    if not isinstance(args, dict):
        raise builder.ArchitectureError('<root>.args: the model config is missing')
    cfg = _read_cfg(path)
    args.update({k: cfg[k] for k in _CFG_OVERRIDES if k in cfg})
    return record, weights


def _check_max_disp(model: FastFoundationStereo) -> None:
    bins = model.max_disp // 4
    if model.max_disp % 32:
        raise ValueError(f'max_disp must be a multiple of 32 (the cost volume has max_disp/4 '
                         f'bins, halved three times in the hourglass), got {model.max_disp}')
    for name, module in model.named_modules():
        max_len = getattr(module, 'max_len', None)
        if isinstance(max_len, int) and bins // 4 > max_len:
            raise ValueError(f'max_disp {model.max_disp} is too large for this checkpoint: '
                             f'{name} covers at most {max_len * 16} (set max_disp in cfg.yaml '
                             f'to {max_len * 16} or less)')


def load_ffs_checkpoint(path: str | Path, device: str | torch.device = 'cpu',
                        ) -> tuple[FastFoundationStereo, dict[str, Any]]:
    """Rebuild and load an FFS checkpoint without running any code from it.

    Returns ``(model, cfg)``: the network in eval mode on ``device`` and its config (the
    pickled ``args`` with the ``cfg.yaml`` overrides and ``valid_iters`` filled in; the
    model's ``default_iters`` is that ``valid_iters``).
    Raises :class:`.safe_pickle.UnsafeCheckpointError`, :class:`.builder.ArchitectureError`
    or ``ValueError`` with what was wrong.
    """
    path = Path(path)
    record, weights = read_ffs_records(path)
    model = builder.build_network(record)
    builder.load_weights(model, weights)
    _check_max_disp(model)
    cfg = dict(model.args)
    cfg.setdefault('valid_iters', FastFoundationStereo.default_iters)
    iters = cfg['valid_iters']
    if type(iters) is not int or iters < 1:
        raise ValueError(f"cfg 'valid_iters' must be a positive integer (the refinement "
                         f"iterations run by default), got {iters!r}")
    model.default_iters = iters   # this checkpoint's count, for valid_iters 0
    return model.to(torch.device(device)).eval(), cfg


def save_converted(checkpoint: str | Path, out: str | Path) -> tuple[Path, str]:
    """Convert an FFS checkpoint to the pickle-free format; returns (path, summary).

    The network is rebuilt and its weights loaded first, so only loadable checkpoints are
    written. ``cfg.yaml`` overrides next to ``checkpoint`` are baked into the description.
    """
    from safetensors.torch import save_file
    out = Path(out)
    if out.suffix != CONVERTED_SUFFIX:
        raise ValueError(f'output must end in {CONVERTED_SUFFIX}, got {out.name}')
    record, weights = read_ffs_records(checkpoint)
    model = builder.build_network(record)
    builder.load_weights(model, weights)
    _check_max_disp(model)
    summary = model.architecture_summary()
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    metadata = {'format': CONVERTED_FORMAT, 'architecture': record_to_json(record),
                'summary': summary, 'source': json.dumps(Path(checkpoint).name)}
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out), metadata=metadata)
    return out, summary

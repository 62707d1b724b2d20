"""Loading released checkpoints of the FoundationStereo family (one entry point).

* FoundationStereo: a folder with ``model_best_bp2.pth`` (weights under ``'model'``, plus
  training bookkeeping) and ``cfg.yaml`` (the architecture fields, see :mod:`.config`). Loaded
  with ``torch.load(weights_only=True)``, memory-mapped when possible so that unused entries
  (e.g. optimizer state) are never read.
* Fast-FoundationStereo / C-FFS: ``model_best_bp2_serialize.pth`` (a serialized module, read
  by a restricted unpickler that runs nothing from the file) or its converted
  ``.safetensors`` form; see :mod:`.ffs.loader`.

:func:`load_checkpoint` tells them apart from the file itself, and says what a file is (empty,
truncated, not a torch archive, a pickled object of an unknown class) before judging its
config or weights. :func:`check_checkpoint` does that much without loading anything, and
:data:`ACCEPTED` says in words what is accepted. Every failure raises :class:`CheckpointError`
with what was wrong and what to do.
"""
from __future__ import annotations

import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import yaml

from .config import DEFAULT_VIT_SIZE, VIT_SIZES, ConfigError, normalize_config
from .ffs.builder import ArchitectureError
from .ffs.loader import CONVERTED_SUFFIX, SERIALIZED_NAME, load_ffs_checkpoint
from .ffs.network import FastFoundationStereo
from .ffs.safe_pickle import MODULE_CLASSES, UnsafeCheckpointError, root_class
from .foundation_stereo import FoundationStereo

__all__ = [
    'ACCEPTED',
    'CheckpointError',
    'build_model',
    'check_checkpoint',
    'checkpoint_filter_fn',
    'load_checkpoint',
    'read_config',
    'vit_size_of_state_dict',
]

CONFIG_NAME = 'cfg.yaml'
DEFAULT_WEIGHTS_NAME = 'model_best_bp2.pth'
# DINOv2 embedding width of each ViT size; read from the class token of the weights.
_EMBED_DIM_TO_VIT = {384: 'vits', 768: 'vitb', 1024: 'vitl'}
_CLS_TOKEN_KEY = 'feature.dino.depth_anything.pretrained.cls_token'
_VIT_NAMES = {'vits': 'ViT-S', 'vitb': 'ViT-B', 'vitl': 'ViT-L'}

# What load_checkpoint accepts, in words (for the advice of whoever asks for a checkpoint).
ACCEPTED = (f'a FoundationStereo {DEFAULT_WEIGHTS_NAME} with its {CONFIG_NAME} beside it, a '
            f'Fast-FoundationStereo {SERIALIZED_NAME} or its converted {CONVERTED_SUFFIX} '
            f'({CONFIG_NAME} optional), or the folder holding one of them')
# Roots of a state-dict pickle: plain containers, not a pickled object.
_CONTAINER_ROOTS = ('', 'collections.OrderedDict', 'builtins.dict', '__builtin__.dict')
_ZIP_END = b'PK\x05\x06'   # end-of-central-directory record, the last part of a zip

PathLike = str | Path
StereoModel = FoundationStereo | FastFoundationStereo


class CheckpointError(RuntimeError):
    """A checkpoint (weights file or its cfg.yaml) that cannot be loaded."""


def build_model(cfg: Mapping[str, Any] | None) -> FoundationStereo:
    """Build a randomly initialised FoundationStereo network in eval mode for ``cfg``.

    ``cfg`` is the content of a cfg.yaml.

    Raises :class:`.config.ConfigError` (a ``ValueError``) for unusable config values.
    """
    return FoundationStereo(cfg).eval()


def read_config(path: PathLike) -> dict[str, Any]:
    """Read a ``cfg.yaml`` into a plain dict (no validation)."""
    path = Path(path)
    try:
        with open(path, encoding='utf-8') as stream:
            cfg = yaml.safe_load(stream)
    except yaml.YAMLError as err:
        raise CheckpointError(f'{path} is not valid YAML: {err}') from err
    except UnicodeDecodeError as err:
        raise CheckpointError(f'{path} is not a text (YAML) file: {err}') from err
    if cfg is None:
        cfg = {}
    if not isinstance(cfg, dict):
        raise CheckpointError(f'{path} must hold a mapping of config fields, got '
                              f'{type(cfg).__name__}')
    return cfg


def checkpoint_filter_fn(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remap foreign key layouts to the official one (all in one place).

    Only one remapping is known to be needed: checkpoints saved from a
    ``DistributedDataParallel`` wrapper prefix every key with ``module.``.
    """
    keys = list(state_dict)
    if keys and all(k.startswith('module.') for k in keys):
        return {k[len('module.'):]: v for k, v in state_dict.items()}
    return dict(state_dict)


def vit_size_of_state_dict(state_dict: Mapping[str, torch.Tensor]) -> str | None:
    """'vits' / 'vitb' / 'vitl' from the DINOv2 embedding width, or None if not recognisable."""
    token = state_dict.get(_CLS_TOKEN_KEY)
    if not isinstance(token, torch.Tensor) or token.dim() == 0:
        return None
    return _EMBED_DIM_TO_VIT.get(int(token.shape[-1]))


def _resolve_weights(path: Path) -> Path:
    if path.is_dir():
        for name in (DEFAULT_WEIGHTS_NAME, SERIALIZED_NAME):
            if (path / name).is_file():
                return path / name
        found = sorted(path.glob('*.pth')) + sorted(path.glob('*.safetensors'))
        if len(found) == 1:
            return found[0]
        raise CheckpointError(f'{path} is a folder without a single weights file (expected '
                              f'{DEFAULT_WEIGHTS_NAME} or {SERIALIZED_NAME}); pass the file')
    if not path.is_file():
        raise CheckpointError(f'checkpoint not found: {path}')
    return path


def _check_torch_file(path: Path) -> bool:
    """Reject files that cannot be torch.save output, before unpickling anything.

    Returns whether it is a zip archive (the current format) rather than a legacy pickle.
    """
    with open(path, 'rb') as stream:
        head = stream.read(4)
        stream.seek(0, 2)
        size = stream.tell()
        stream.seek(max(0, size - 65557))   # the end record sits in the last 64 KiB + 22
        tail = stream.read()
    if not head:
        raise CheckpointError(f'{path} is empty; download or copy the checkpoint again')
    if head.startswith(b'PK'):
        if _ZIP_END not in tail:
            raise CheckpointError(f'{path} is a truncated zip archive (its end, the zip '
                                  f'directory, is missing; {size} bytes): an interrupted '
                                  f'download or copy. Download or copy the checkpoint again')
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except zipfile.BadZipFile as err:
            raise CheckpointError(f'{path} is a damaged zip archive ({err}); download or '
                                  f'copy the checkpoint again') from err
        if not any(name.endswith('/data.pkl') for name in names):
            raise CheckpointError(f'{path} is a zip archive but not a PyTorch checkpoint '
                                  f'(no data.pkl inside; holds {names[:3]}); expected '
                                  f'{ACCEPTED}')
        return True
    if head[0] != 0x80:   # legacy torch.save files are pickles (protocol opcode 0x80)
        raise CheckpointError(f'{path} is not a PyTorch checkpoint (neither a torch.save zip '
                              f'archive nor a pickle); expected {ACCEPTED}')
    return False


def _is_ffs(weights: Path) -> bool:
    """Tell the family of a weights file from the file itself; CheckpointError if neither.

    Judged before any cfg.yaml is read, so a damaged or foreign file is named as such rather
    than by a config check of the other family.
    """
    if weights.suffix == CONVERTED_SUFFIX:
        return True
    if not _check_torch_file(weights):
        return False    # a legacy pickle: only state dicts were saved that way
    try:
        root = root_class(weights)
    except (OSError, zipfile.BadZipFile, UnsafeCheckpointError) as err:
        raise CheckpointError(f'{weights} could not be read as a torch.save archive ({err}); '
                              f'download or copy it again') from err
    if root in MODULE_CLASSES:
        return True
    if root not in _CONTAINER_ROOTS:
        raise CheckpointError(
            f'{weights} holds a pickled object of class {root}, which is not a network this '
            f'package can rebuild (nor a state dict); expected {ACCEPTED}')
    return False


def _config_of(weights: Path) -> Path:
    cfg_path = weights.parent / CONFIG_NAME
    if not cfg_path.is_file():
        raise CheckpointError(
            f'{CONFIG_NAME} not found next to {weights}. FoundationStereo checkpoints are '
            f'folders (e.g. pretrained_models/23-51-11/ with {DEFAULT_WEIGHTS_NAME} and '
            f'{CONFIG_NAME}): copy the whole folder, not only the .pth file')
    return cfg_path


def check_checkpoint(path: PathLike) -> Path:
    """Return the weights file :func:`load_checkpoint` would load for ``path``.

    Checks what :func:`load_checkpoint` checks before reading weights (the file or folder, the
    kind of file, a FoundationStereo file's ``cfg.yaml``), reading only file headers; raises
    :class:`CheckpointError` saying what is wrong.
    """
    weights = _resolve_weights(Path(path))
    if not _is_ffs(weights):
        _config_of(weights)
    return weights


def _torch_load(path: Path) -> Any:
    """torch.load(weights_only=True) on CPU, memory-mapped when the format allows it."""
    _check_torch_file(path)

    def load(mmap: bool) -> Any:
        return torch.load(path, map_location='cpu', weights_only=True, mmap=mmap)

    try:
        try:
            return load(mmap=True)
        except RuntimeError as err:
            if 'mmap can only be used' not in str(err):
                raise
            return load(mmap=False)      # legacy (non-zip) serialization cannot be mapped
    except pickle.UnpicklingError as err:
        if 'Weights only load failed' in str(err):
            raise CheckpointError(
                f'{path} contains Python objects other than tensors and plain containers, so '
                f'torch.load(weights_only=True) refused it (or it is damaged). If you trust '
                f'the file, re-save only its weights once: ckpt = torch.load(path, '
                f'weights_only=False); torch.save({{"model": ckpt["model"]}}, path)') from err
        raise CheckpointError(f'{path} is not a PyTorch checkpoint (unpickling failed: {err}); '
                              f'expected the {DEFAULT_WEIGHTS_NAME} of a FoundationStereo '
                              f'release') from err
    except (RuntimeError, EOFError, ValueError, OSError, zipfile.BadZipFile,
            AttributeError, TypeError, IndexError, KeyError) as err:
        first_line = str(err).splitlines()[0] if str(err) else repr(err)
        raise CheckpointError(f'{path} could not be read as a PyTorch checkpoint '
                              f'({type(err).__name__}: {first_line}); download or copy it '
                              f'again') from err


def _state_dict_of(ckpt: Any, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(ckpt, Mapping) and isinstance(ckpt.get('model'), Mapping):
        state_dict = ckpt['model']
    elif isinstance(ckpt, Mapping) and ckpt and all(
            isinstance(v, torch.Tensor) for v in ckpt.values()):
        state_dict = ckpt      # a bare state dict
    else:
        found = list(ckpt)[:8] if isinstance(ckpt, Mapping) else type(ckpt).__name__
        raise CheckpointError(f"{path} holds no FoundationStereo weights: expected a dict "
                              f"with the state dict under 'model' (or a bare state dict), "
                              f"found {found}")
    bad = [k for k, v in state_dict.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f'{path}: state-dict entries that are not tensors: {bad[:5]}')
    return checkpoint_filter_fn(state_dict)


def _few(names: list[str], n: int = 5) -> str:
    shown = ', '.join(names[:n])
    return shown + (f', ... ({len(names)} in all)' if len(names) > n else '')


def load_checkpoint(path: PathLike, device: str | torch.device = 'cpu',
                    ) -> tuple[StereoModel, dict[str, Any]]:
    """Load a released checkpoint of either family.

    Args:
        path: the weights file (``model_best_bp2.pth``, ``model_best_bp2_serialize.pth`` or a
            converted ``.safetensors``) or its folder. FoundationStereo needs its
            ``cfg.yaml`` in the same folder; for Fast-FoundationStereo it is optional (it
            overrides ``max_disp``, as the official scripts do).
        device: where to put the model.

    Returns:
        ``(model, cfg)``: the network in eval mode on ``device`` and its config. Both
        networks have the same calls (``model(left, right, iters=, test_mode=,
        init_disp=)``, ``run_hierarchical``), and ``family``, ``default_iters`` and
        ``architecture_summary()``.
    """
    weights = _resolve_weights(Path(path))
    if _is_ffs(weights):
        try:
            return load_ffs_checkpoint(weights, device=device)
        except (UnsafeCheckpointError, ArchitectureError, ValueError) as err:
            raise CheckpointError(f'{weights}: {err}') from err
    cfg_path = _config_of(weights)
    raw_cfg = read_config(cfg_path)
    try:
        cfg = normalize_config(raw_cfg)
    except ConfigError as err:
        raise CheckpointError(f'{cfg_path}: {err}') from err

    state_dict = _state_dict_of(_torch_load(weights), weights)
    weights_vit = vit_size_of_state_dict(state_dict)
    if weights_vit is not None and weights_vit != cfg['vit_size']:
        said = (f"vit_size: {raw_cfg['vit_size']}" if raw_cfg.get('vit_size') is not None
                else f"no vit_size (which means {DEFAULT_VIT_SIZE}, as upstream)")
        raise CheckpointError(
            f'{weights} holds {_VIT_NAMES[weights_vit]} weights but {cfg_path} says {said}: '
            f'set "vit_size: {weights_vit}" in {CONFIG_NAME} (or use the cfg.yaml that came '
            f'with these weights)')

    model = build_model(cfg)
    expected = model.state_dict()
    mismatched = [f'{k} {tuple(v.shape)} (network: {tuple(expected[k].shape)})'
                  for k, v in state_dict.items() if k in expected and v.shape != expected[k].shape]
    if mismatched:
        raise CheckpointError(f'{weights} does not fit the network described by {cfg_path} '
                              f'(vit_size {cfg["vit_size"]}); shape mismatches: '
                              f'{_few(mismatched, 3)}')
    result = model.load_state_dict(state_dict, strict=False)
    if result.missing_keys or result.unexpected_keys:
        parts = []
        if result.missing_keys:
            parts.append(f'missing keys: {_few(result.missing_keys)}')
        if result.unexpected_keys:
            parts.append(f'unexpected keys: {_few(result.unexpected_keys)}')
        hint = (f'weights look like {_VIT_NAMES[weights_vit]}; '
                if weights_vit in VIT_SIZES else '')
        raise CheckpointError(f'{weights} is not a FoundationStereo checkpoint for this '
                              f'network ({hint}{"; ".join(parts)}). Use an official '
                              f'release with its own {CONFIG_NAME}')
    del state_dict
    return model.to(torch.device(device)).eval(), cfg

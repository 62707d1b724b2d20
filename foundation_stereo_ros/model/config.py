"""FoundationStereo configuration: the official ``cfg.yaml`` fields, checked and completed.

Released checkpoints ship a ``cfg.yaml`` beside ``model_best_bp2.pth`` holding the training
arguments. The network reads only the fields in :data:`DEFAULT_CONFIG`; every other key
(training bookkeeping, demo arguments) is kept but ignored. ``vit_size`` defaults to
:data:`DEFAULT_VIT_SIZE` because the ViT-L release omits it; the other defaults are the
released values.
"""
from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any

from .cost_attention import ATTENTION_MODES

__all__ = ['DEFAULT_CONFIG', 'DEFAULT_VIT_SIZE', 'VIT_SIZES', 'ConfigError',
           'normalize_config']

VIT_SIZES = ('vits', 'vitb', 'vitl')
# What a cfg.yaml without vit_size means (the official demo's default: the ViT-L release has none).
DEFAULT_VIT_SIZE = 'vitl'

DEFAULT_CONFIG: dict[str, Any] = {
    'vit_size': DEFAULT_VIT_SIZE,
    'max_disp': 416,
    'hidden_dims': [128, 128, 128],
    'n_gru_layers': 3,
    'n_downsample': 2,
    'corr_levels': 2,
    'corr_radius': 4,
    'mixed_precision': True,
    # Not an official field: semantics of the cost-volume transformer's attention,
    # 'disparity' (as trained, flash-attention) or 'heads' (upstream code after June 2025).
    'cost_attention': 'disparity',
}


class ConfigError(ValueError):
    """A FoundationStereo configuration value the network cannot be built with."""


def _int(cfg: Mapping[str, Any], key: str, minimum: int) -> int:
    value = cfg[key]
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(f'cfg {key!r} must be an integer, got {value!r}')
    if value < minimum:
        raise ConfigError(f'cfg {key!r} must be >= {minimum}, got {value}')
    return int(value)


def normalize_config(cfg: Mapping[str, Any] | None) -> dict[str, Any]:
    """Return a plain dict with every field the network reads, validated.

    Missing fields take the defaults of :data:`DEFAULT_CONFIG`; unknown fields are kept.
    Raises :class:`ConfigError` naming the bad field and what it must be.
    """
    if cfg is None:
        cfg = {}
    if not isinstance(cfg, Mapping):
        raise ConfigError(f'cfg must be a mapping (the contents of cfg.yaml), got '
                          f'{type(cfg).__name__}')
    out = dict(DEFAULT_CONFIG)
    out.update({k: v for k, v in cfg.items() if v is not None or k not in DEFAULT_CONFIG})

    if out['vit_size'] not in VIT_SIZES:
        raise ConfigError(f"cfg 'vit_size' must be one of {', '.join(VIT_SIZES)}, "
                          f"got {out['vit_size']!r}")
    max_disp = _int(out, 'max_disp', 32)
    if max_disp % 32:
        raise ConfigError(f"cfg 'max_disp' must be a multiple of 32 (the cost volume has "
                          f"max_disp/4 bins, halved three times in the hourglass), got {max_disp}")
    hidden = out['hidden_dims']
    if (not isinstance(hidden, (list, tuple)) or len(hidden) != 3
            or any(isinstance(h, bool) or h != 128 for h in hidden)):
        raise ConfigError(f"cfg 'hidden_dims' must be [128, 128, 128] (the update block's "
                          f"motion encoder and mask head are built for 128 channels), "
                          f"got {hidden!r}")
    out['hidden_dims'] = [128, 128, 128]
    n_gru = _int(out, 'n_gru_layers', 1)
    if n_gru > 3:
        raise ConfigError(f"cfg 'n_gru_layers' must be 1, 2 or 3, got {n_gru}")
    if _int(out, 'n_downsample', 0) != 2:
        raise ConfigError(f"cfg 'n_downsample' must be 2 (the network works at 1/4 "
                          f"resolution), got {out['n_downsample']}")
    _int(out, 'corr_levels', 1)
    _int(out, 'corr_radius', 0)
    if not isinstance(out['mixed_precision'], (bool, int)):
        raise ConfigError(f"cfg 'mixed_precision' must be true or false, "
                          f"got {out['mixed_precision']!r}")
    out['mixed_precision'] = bool(out['mixed_precision'])
    if out['cost_attention'] not in ATTENTION_MODES:
        raise ConfigError(f"cfg 'cost_attention' must be one of {ATTENTION_MODES}, "
                          f"got {out['cost_attention']!r}")
    return out

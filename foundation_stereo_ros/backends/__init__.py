"""Disparity backends and a registry that builds one by name.

The registry imports a backend's module when that backend is built (:func:`make_backend`), so
building SGBM or onnx loads neither the network code (``model/``) nor weights. The names are
:data:`.choices.BACKENDS`; :mod:`.startup` builds one from the settings.
"""
from __future__ import annotations

import importlib
from typing import Any

from foundation_stereo_ros.backends.base import DisparityBackend
from foundation_stereo_ros.choices import BACKENDS

__all__ = ['BACKENDS', 'DisparityBackend', 'make_backend']


def make_backend(name: str, **options: Any) -> DisparityBackend:
    """Build the backend registered as ``name`` with keyword ``options`` for its constructor.

    Raises ValueError for an unknown name, listing the valid ones.
    """
    try:
        module_name, class_name = BACKENDS[name]
    except (KeyError, TypeError):
        raise ValueError(f'unknown disparity backend {name!r}; valid names: '
                         f'{", ".join(sorted(BACKENDS))}') from None
    backend_class = getattr(importlib.import_module(module_name), class_name)
    return backend_class(**options)

"""Build the disparity backend the settings ask for: the one place the node and the tools use.

:func:`build_backend` checks a network checkpoint with the model loader first (reading only
file headers), then builds the backend. Whatever fails is the user's to fix, so it becomes a
:class:`BackendStartError` that says what went wrong and which settings to check, named as
its reader sets them: ROS parameters (``checkpoint:=X``) for the node, command-line options
(``--checkpoint X``) for the offline tools.
"""
from __future__ import annotations

from foundation_stereo_ros import settings
from foundation_stereo_ros.backends import DisparityBackend, make_backend

__all__ = ['BackendStartError', 'build_backend', 'startup_advice']

# The setting that names each backend's model file.
_MODEL_FILE = {'foundation_stereo': 'checkpoint', 'onnx': 'model'}


class BackendStartError(RuntimeError):
    """The backend cannot start; the message says why and what to check."""


def _accepted(backend: str) -> str:
    """Say what the model file of ``backend`` may be, in its loader's words."""
    if backend == 'foundation_stereo':
        from foundation_stereo_ros.model.checkpoint import ACCEPTED
        return ACCEPTED
    from foundation_stereo_ros.backends.onnx import FORMATS
    return 'an exported .onnx: ' + ' or '.join(f.producers for f in FORMATS)


def startup_advice(chosen: settings.Settings, phrasing: str = settings.ROS_PARAMETERS) -> str:
    """Say which settings to check when ``chosen.backend`` cannot start."""
    backend = chosen.backend
    model_file = _MODEL_FILE.get(backend)
    parts = [settings.mention(name, phrasing=phrasing)
             for name in settings.startup_settings(backend) if name != model_file]
    if model_file:
        parts.insert(0, f'{settings.mention(model_file, chosen[model_file], phrasing)} '
                        f'({_accepted(backend)})')
    text = 'check ' + ', '.join(parts)
    if backend != 'sgbm':
        text += f', or use {settings.mention("backend", "sgbm", phrasing)} (no network)'
    return text


def build_backend(chosen: settings.Settings,
                  phrasing: str = settings.ROS_PARAMETERS) -> DisparityBackend:
    """Build the backend ``chosen`` names with its options.

    Raises :class:`BackendStartError` for anything that stops it (a checkpoint the loader
    refuses, a missing model, a device torch cannot see...), with :func:`startup_advice`.
    """
    try:
        if chosen.backend == 'foundation_stereo':
            from foundation_stereo_ros.model.checkpoint import check_checkpoint
            check_checkpoint(chosen.checkpoint)   # before the device and the weights
        return make_backend(chosen.backend, **chosen.backend_options())
    except Exception as exc:  # the checkpoint, model or device: the user's to fix
        raise BackendStartError(
            f'cannot start the {chosen.backend} backend: {type(exc).__name__}: {exc}. '
            f'What to do: {startup_advice(chosen, phrasing)}') from exc

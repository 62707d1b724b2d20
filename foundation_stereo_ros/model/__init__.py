"""FoundationStereo and Fast-FoundationStereo networks in plain PyTorch (no ROS imports).

Public API (either family: ``model_best_bp2.pth``, ``model_best_bp2_serialize.pth`` or a
converted ``.safetensors``)::

    model, cfg = load_checkpoint('pretrained_models/11-33-40/model_best_bp2.pth', device='cuda')
    model.family, model.default_iters, model.architecture_summary()
    padder = InputPadder(left.shape, divis_by=32)
    disp = padder.unpad(model(*padder.pad(left, right), iters=32, test_mode=True))

``left`` / ``right`` are (B, 3, H, W) RGB float tensors with values 0..255.
"""
from .checkpoint import CheckpointError, build_model, load_checkpoint
from .config import ConfigError
from .ffs.network import FastFoundationStereo
from .foundation_stereo import FoundationStereo
from .padder import InputPadder

__all__ = ['CheckpointError', 'ConfigError', 'FastFoundationStereo', 'FoundationStereo',
           'InputPadder', 'build_model', 'load_checkpoint']

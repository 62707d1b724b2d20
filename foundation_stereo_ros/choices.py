"""The names users choose from (backends, devices, precisions, providers, SGBM modes).

Pure Python, imported by the settings table and by the backends alike: the table lists what a
setting accepts without loading torch or OpenCV, and each backend maps these names to what
they mean for it (a torch dtype, an OpenCV mode, an ONNX Runtime provider).
"""
from __future__ import annotations

import re

# Disparity backend name -> (module, class); the module is imported only when asked for.
BACKENDS: dict[str, tuple[str, str]] = {
    'sgbm': ('foundation_stereo_ros.backends.sgbm', 'SgbmBackend'),
    'foundation_stereo': ('foundation_stereo_ros.backends.foundation_stereo',
                          'FoundationStereoBackend'),
    'onnx': ('foundation_stereo_ros.backends.onnx', 'OnnxBackend'),
}

DEVICES = ('auto', 'cuda', 'cpu')
CUDA_INDEX = r'cuda:\d+'  # also accepted: a GPU by index

# Network precisions besides 'auto' (fp16 on CUDA, fp32 on CPU).
PRECISIONS = ('fp32', 'fp16', 'bf16')
PRECISION_CHOICES = ('auto', *PRECISIONS)

# onnx backend option value -> ONNX Runtime provider name, best first.
ONNX_PROVIDERS: dict[str, str] = {
    'tensorrt': 'TensorrtExecutionProvider',
    'cuda': 'CUDAExecutionProvider',
    'cpu': 'CPUExecutionProvider',
}
PROVIDER_CHOICES = ('auto', *ONNX_PROVIDERS)

# OpenCV StereoSGBM path modes: name -> cv2.STEREO_SGBM_MODE_<NAME>.
SGBM_MODES = ('sgbm', 'sgbm_3way', 'hh', 'hh4')


def device_index(device: str) -> int | None:
    """GPU index a device name asks for: None for 'auto', 'cpu'; 0 for 'cuda'; N for 'cuda:N'.

    Raises ValueError (the one message for a malformed device name) for anything else.
    """
    if device in ('auto', 'cpu'):
        return None
    if device == 'cuda':
        return 0
    if not isinstance(device, str) or not re.fullmatch(CUDA_INDEX, device):
        raise ValueError(f"device must be 'auto', 'cuda', 'cuda:N' or 'cpu', got {device!r}")
    return int(device.partition(':')[2])

"""Where and at what precision a torch backend runs: the names users give and what they mean."""
from __future__ import annotations

import torch

from foundation_stereo_ros.choices import PRECISION_CHOICES, device_index
from foundation_stereo_ros.choices import PRECISIONS as PRECISION_NAMES

__all__ = ['AUTO_PRECISION', 'PRECISIONS', 'PRECISION_CHOICES',
           'resolve_device', 'resolve_precision']

# What each precision name means here: the autocast dtype (None: plain fp32).
_DTYPES: dict[str, torch.dtype | None] = {
    'fp32': None, 'fp16': torch.float16, 'bf16': torch.bfloat16}
PRECISIONS: dict[str, torch.dtype | None] = {name: _DTYPES[name] for name in PRECISION_NAMES}
# 'auto': the official default, fp16 autocast on CUDA (the released cfg.yaml says
# mixed_precision: true); fp32 on CPU, where half precision is emulated on most CPUs.
AUTO_PRECISION = {'cuda': 'fp16', 'cpu': 'fp32'}


def resolve_device(device: str) -> torch.device:
    """'auto' picks CUDA when available; a CUDA device torch cannot see is an error saying so."""
    index = device_index(device)  # ValueError for a malformed name
    if device == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    if device == 'cpu':
        return torch.device('cpu')
    if not torch.cuda.is_available():
        raise ValueError(
            f"device '{device}' requested but torch sees no CUDA GPU (torch "
            f"{torch.__version__}); install a CUDA build of torch or use device 'cpu'")
    count = torch.cuda.device_count()
    if index >= count:
        raise ValueError(f"device '{device}' requested but torch sees {count} CUDA GPU(s) "
                         f"(cuda:0 to cuda:{count - 1}); pick one of those or 'cuda'")
    return torch.device(device)


def resolve_precision(precision: str, device: torch.device) -> str:
    """Return the concrete precision (fp32, fp16 or bf16) ``precision`` means on ``device``."""
    if precision == 'auto':
        return AUTO_PRECISION.get(device.type, 'fp32')
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISION_CHOICES)}, got "
                         f"'{precision}'")
    return precision

"""The iterative refinement both networks share (RAFT-Stereo's core loop).

Each step looks the current disparity up in the geometry encoding volume (float32), lets the
update block predict a correction (in the autocast region when mixed precision is on) and adds
it; the disparity is upsampled after the last step (after every step when training).
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TypeVar

import torch

__all__ = ['amp_region', 'no_autocast', 'refine']

Upsampled = TypeVar('Upsampled')


def no_autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """Float32 region (autocast off) on any device type."""
    if torch.amp.is_autocast_available(device.type):
        return torch.autocast(device.type, enabled=False)
    return contextlib.nullcontext()


def amp_region(mixed_precision: bool, amp_dtype: torch.dtype,
               device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast region as upstream's ``autocast('cuda', enabled=mixed_precision)``.

    Off on CPU unless the caller opened an autocast around the model (the backend does for
    fp16/bf16 on CPU); an autocast already open is kept.
    """
    if not mixed_precision:
        return no_autocast(device)
    if (not torch.amp.is_autocast_available(device.type)
            or torch.is_autocast_enabled(device.type) or device.type != 'cuda'):
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=amp_dtype)


def refine(geometry: Callable[[torch.Tensor], torch.Tensor], update_block: torch.nn.Module,
           upsample: Callable[[torch.Tensor, torch.Tensor], Upsampled],
           amp: Callable[[], contextlib.AbstractContextManager], net_list: list[torch.Tensor],
           inp_list: list[torch.Tensor], att_list: list[torch.Tensor], init_disp: torch.Tensor,
           iters: int, test_mode: bool) -> list[Upsampled]:
    """Run ``iters`` refinement steps from ``init_disp`` (1/4 resolution).

    ``upsample(disp, mask_feat)`` is called with the 1/4-resolution disparity and the update
    block's mask feature of a step, right after it (the update block's outputs may live in
    CUDA-graph memory that the next step overwrites). Returns its results: of the last step
    only (``test_mode``), else of every step.
    """
    device = init_disp.device
    disp = init_disp.float()
    outputs: list[Upsampled] = []
    # No host synchronisation in this loop: every step is a fixed sequence of kernels.
    for itr in range(iters):
        disp = disp.detach()
        with no_autocast(device):
            geo_feat = geometry(disp)
        with amp():
            net_list, mask_feat_4, delta_disp = update_block(
                net_list, inp_list, geo_feat, disp, att_list)
        disp = disp + delta_disp.float()
        if test_mode and itr < iters - 1:
            continue
        outputs.append(upsample(disp, mask_feat_4.float()))
    return outputs

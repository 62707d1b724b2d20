"""The iterative refinement both networks share (RAFT-Stereo's core loop).

Each step looks the current disparity up in the geometry encoding volume (float32), lets the
update block predict a correction (in the autocast region when mixed precision is on) and adds
it; the disparity is upsampled after the last step (after every step when training).
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch

ForwardOutput = torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]


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
           upsample: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
           amp: Callable[[], contextlib.AbstractContextManager], net_list: list[torch.Tensor],
           inp_list: list[torch.Tensor], att_list: list[torch.Tensor], init_disp: torch.Tensor,
           iters: int, test_mode: bool) -> ForwardOutput:
    """Run ``iters`` refinement steps from ``init_disp`` (1/4 resolution).

    Returns the full-resolution disparity after the last step (``test_mode``), else
    ``(init_disp, [full-resolution disparity after each step])``.
    """
    device = init_disp.device
    disp = init_disp.float()
    disp_preds: list[torch.Tensor] = []
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
        disp_preds.append(upsample(disp, mask_feat_4.float()))
    if test_mode:
        return disp_preds[-1]
    return init_disp, disp_preds

"""torch.compile for the FoundationStereo family: which parts, in which mode, per device.

The network is compiled part by part, in place (``nn.Module.compile``: the state-dict keys do
not change), rather than as one forward: the forward loops over ``valid_iters`` refinement
steps in Python, so a whole-model graph would be unrolled and recompiled for every iteration
count. Compiling the update step instead gives one small graph that every iteration of any
count reuses, so ``valid_iters`` can change at runtime without a recompilation.

On CUDA the update step is compiled with ``mode='reduce-overhead'``: torch records it as CUDA
graphs, so a refinement iteration is one graph launch instead of about a hundred small
kernel launches whose CPU-side cost adds up over 32 iterations. (The geometry lookup between
two steps stays eager: a handful of gather kernels.) The feature extractor, context network and
cost aggregation are compiled in the default mode (fused kernels, no graphs: they run once
per pair). On CPU only the update step is compiled: inductor's gains there are small and its
compilation (C++ code generation) is slow.

Every part is compiled with ``dynamic=False``: a camera has one size, and shape-specialised
kernels are the fast ones. A new input size therefore recompiles; the backend warms up at
start on the configured size and logs each new size (see ``FoundationStereoBackend``).
Parts a model does not have are skipped, so one function serves both families (the
Fast-FoundationStereo networks use the same submodule names where they have the part).
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ['compile_model', 'compile_parts', 'mark_step', 'uses_cuda_graphs']

# Submodules called once per refinement iteration: CUDA graphs pay off there.
CUDA_GRAPH_PARTS = ('update_block',)
# Submodules called once per pair: fused kernels, no graphs.
ONCE_PER_PAIR_PARTS = ('feature', 'cnet', 'cost_agg')


def compile_parts(device: torch.device) -> dict[str, str | None]:
    """Return the parts compiled on ``device``: submodule name -> torch.compile mode."""
    if device.type == 'cuda':
        parts: dict[str, str | None] = {name: None for name in ONCE_PER_PAIR_PARTS}
        parts.update({name: 'reduce-overhead' for name in CUDA_GRAPH_PARTS})
        return parts
    return {name: None for name in CUDA_GRAPH_PARTS}


def compile_model(model: nn.Module, device: torch.device) -> list[str]:
    """Compile the parts of ``model`` for ``device`` in place; return their names.

    Compilation itself happens lazily, on the first call of each part at each input size.
    """
    compiled = []
    for name, mode in compile_parts(device).items():
        part = getattr(model, name, None)
        if isinstance(part, nn.Module):
            part.compile(mode=mode, dynamic=False, fullgraph=False)
            compiled.append(name if mode is None else f'{name} ({mode})')
    return compiled


def uses_cuda_graphs(device: torch.device) -> bool:
    """Whether compiled parts run as CUDA graphs on ``device``."""
    return any(mode == 'reduce-overhead' for mode in compile_parts(device).values())


def mark_step(device: torch.device) -> None:
    """Start a new CUDA-graph step before a pair (no-op off CUDA).

    CUDA graphs reuse their output memory: telling torch that a new pair begins lets it
    reuse the previous pair's graph outputs instead of checking they are still alive.
    """
    if uses_cuda_graphs(device):
        torch.compiler.cudagraph_mark_step_begin()

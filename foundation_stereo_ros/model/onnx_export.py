r"""Export a FoundationStereo-family network to ONNX at a fixed image size and iteration count.

The graph takes ``left`` and ``right`` (B, 3, H, W) RGB float images with values 0..255
(normalisation is inside) and returns ``disp`` (B, 1, H, W), the final disparity of
``forward(iters=N, test_mode=True)``, and ``confidence`` (B, 1, H, W), the network's confidence in
[0, 1] (:mod:`.confidence`; an output the official exports do not have); only the batch axis is
dynamic, as in upstream's ``scripts/make_onnx.py``. There is no padding inside: resize (or pad)
inputs to the exported size. The graph is float32 even when the checkpoint's cfg asks for mixed
precision (a TensorRT build can still use fp16, e.g. ``trtexec --fp16``). The file's metadata
records ``producer: foundation_stereo_ros``, ``max_disp``, ``valid_iters``, ``family`` (the network
class) and, for FoundationStereo, ``vit_size``, which the ``onnx`` backend reports. Usage::

    python -m foundation_stereo_ros.model.onnx_export --checkpoint run/model_best_bp2.pth \
        --height 448 --width 672 --iters 16 --out foundation_stereo.onnx
"""
from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import onnx
import torch
from torch import nn

from .checkpoint import StereoModel, load_checkpoint
from .hierarchical import SIZE_DIVISOR

__all__ = ['StereoExportWrapper', 'export_onnx', 'main']

DEFAULT_OPSET = 17


# Graph outputs, in order.
OUTPUT_NAMES = ('disp', 'confidence')


class StereoExportWrapper(nn.Module):
    """``forward(left, right) -> (disp, confidence)`` with the iteration count baked in."""

    def __init__(self, model: StereoModel, iters: int) -> None:
        super().__init__()
        self.model = model
        self.iters = int(iters)

    def forward(self, left: torch.Tensor, right: torch.Tensor,
                ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model(left, right, iters=self.iters, test_mode=True, confidence=True)


def _check_export_args(height: int, width: int, iters: int) -> None:
    if height % SIZE_DIVISOR or width % SIZE_DIVISOR or height <= 0 or width <= 0:
        raise ValueError(f'height and width must be positive multiples of {SIZE_DIVISOR}, '
                         f'got {height}x{width}; resize images to the exported size at run time')
    if iters < 1:
        raise ValueError(f'iters must be >= 1, got {iters}')


def export_onnx(model: StereoModel, path: str | Path, height: int, width: int,
                iters: int, opset: int = DEFAULT_OPSET, dynamic_batch: bool = True) -> Path:
    """Trace ``model`` at (height, width) with ``iters`` refinement steps into ``path``.

    The model is exported on its current device, in float32 (autocast is disabled).
    """
    _check_export_args(height, width, iters)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    device = next(model.parameters()).device
    wrapper = StereoExportWrapper(model.eval(), iters).eval()
    # Any image gives the same graph (no data-dependent control flow); mid-grey is enough.
    left = torch.full((1, 3, height, width), 127.0, device=device)
    right = torch.full((1, 3, height, width), 127.0, device=device)
    axes = {name: {0: 'batch'} for name in ('left', 'right', *OUTPUT_NAMES)}
    mixed = model.mixed_precision
    model.mixed_precision = False
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # The TorchScript-based exporter is the one that needs no extra packages.
            warnings.simplefilter('ignore', category=DeprecationWarning)
            warnings.simplefilter('ignore', category=torch.jit.TracerWarning)
            # Benign: slices with steps are left to the runtime instead of being folded.
            warnings.filterwarnings('ignore', message='Constant folding - Only steps=1')
            torch.onnx.export(wrapper, (left, right), str(path), dynamo=False,
                              opset_version=opset, input_names=['left', 'right'],
                              output_names=list(OUTPUT_NAMES),
                              dynamic_axes=axes if dynamic_batch else None)
    finally:
        model.mixed_precision = mixed
    metadata = {'producer': 'foundation_stereo_ros', 'max_disp': model.max_disp,
                'valid_iters': iters, 'family': getattr(model, 'family', type(model).__name__)}
    vit_size = getattr(model, 'cfg', {}).get('vit_size')   # FoundationStereo only
    if vit_size:
        metadata['vit_size'] = vit_size
    _write_metadata(path, metadata)
    return path


def _write_metadata(path: Path, values: dict[str, object]) -> None:
    """Add ``values`` as the model's metadata_props (what the onnx backend reads back)."""
    graph = onnx.load(str(path))
    for key, value in values.items():
        entry = graph.metadata_props.add()
        entry.key, entry.value = key, str(value)
    onnx.save(graph, str(path))


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(
        prog='python -m foundation_stereo_ros.model.onnx_export',
        description='Export a FoundationStereo-family checkpoint to ONNX (inputs left/right RGB '
                    '0..255 of a fixed size, outputs disp and confidence).')
    parser.add_argument('--checkpoint', required=True,
                        help='model_best_bp2.pth (with its cfg.yaml in the same folder), or '
                             'a Fast-FoundationStereo model_best_bp2_serialize.pth / '
                             'converted .safetensors')
    parser.add_argument('--height', type=int, default=448, help='multiple of 32')
    parser.add_argument('--width', type=int, default=672, help='multiple of 32')
    parser.add_argument('--iters', type=int, default=16, help='refinement iterations')
    parser.add_argument('--out', required=True, help='output .onnx file')
    parser.add_argument('--opset', type=int, default=DEFAULT_OPSET)
    parser.add_argument('--device', default='cpu', help="device to trace on ('cpu', 'cuda')")
    parser.add_argument('--static-batch', action='store_true',
                        help='fix the batch size to 1 instead of a dynamic batch axis')
    args = parser.parse_args(argv)
    try:
        _check_export_args(args.height, args.width, args.iters)
        model, _ = load_checkpoint(args.checkpoint, device=args.device)
        out = export_onnx(model, args.out, args.height, args.width, args.iters,
                          opset=args.opset, dynamic_batch=not args.static_batch)
    except (ValueError, RuntimeError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    print(f'wrote {out} ({out.stat().st_size / 1e6:.1f} MB): inputs left/right '
          f'(B,3,{args.height},{args.width}) RGB 0..255, outputs disp and confidence '
          f'(B,1,{args.height},{args.width}), {args.iters} iterations')
    return 0


if __name__ == '__main__':
    sys.exit(main())

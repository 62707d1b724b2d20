r"""Convert a Fast-FoundationStereo checkpoint to the pickle-free format.

``model_best_bp2_serialize.pth`` is a pickle; it is read here by the restricted unpickler
(nothing from it runs), the network is rebuilt and its weights loaded, then written as one
``.safetensors`` file: the weights, with the JSON architecture description (and the
``cfg.yaml`` overrides found next to the input) in its header metadata. Loading the result
involves no unpickling at all; deploy that file. Usage::

    python -m foundation_stereo_ros.model.convert \
        weights/c-ffs/model_best_bp2_serialize.pth c_ffs.safetensors
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .ffs.builder import ArchitectureError
from .ffs.loader import CONVERTED_SUFFIX, is_ffs_checkpoint, save_converted
from .ffs.safe_pickle import UnsafeCheckpointError

__all__ = ['main']


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(
        prog='python -m foundation_stereo_ros.model.convert',
        description='Convert a Fast-FoundationStereo checkpoint (model_best_bp2_serialize.pth) '
                    'to safetensors weights + JSON architecture, loadable without pickle.')
    parser.add_argument('checkpoint', type=Path, help='model_best_bp2_serialize.pth')
    parser.add_argument('out', type=Path, help=f'output file ({CONVERTED_SUFFIX})')
    args = parser.parse_args(argv)
    if not args.checkpoint.is_file():
        print(f'error: checkpoint not found: {args.checkpoint}', file=sys.stderr)
        return 1
    if not is_ffs_checkpoint(args.checkpoint) or args.checkpoint.suffix == CONVERTED_SUFFIX:
        print(f'error: {args.checkpoint} is not a serialized Fast-FoundationStereo checkpoint '
              f'(torch.save of the model, like model_best_bp2_serialize.pth). '
              f'FoundationStereo checkpoints need no conversion (they load with '
              f'weights_only=True)', file=sys.stderr)
        return 1
    try:
        out, summary = save_converted(args.checkpoint, args.out)
    except (UnsafeCheckpointError, ArchitectureError, ValueError, OSError) as err:
        print(f'error: {args.checkpoint}: {err}', file=sys.stderr)
        return 1
    print(f'wrote {out} ({out.stat().st_size / 1e6:.1f} MB): {summary}')
    return 0


if __name__ == '__main__':
    sys.exit(main())

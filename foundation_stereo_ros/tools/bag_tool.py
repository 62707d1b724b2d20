r"""Offline: a rosbag2 of a stereo camera in; the same bag plus disparity, depth and points out.

    python -m foundation_stereo_ros.bag_tool IN_BAG OUT_BAG \
        [--topics LEFT LEFT_INFO RIGHT RIGHT_INFO] [--backend foundation_stereo|onnx|sgbm] \
        [--checkpoint CHECKPOINT] [--model EXPORT.onnx] [--storage mcap|sqlite3]

``--checkpoint``: a FoundationStereo ``model_best_bp2.pth`` or a Fast-FoundationStereo
``model_best_bp2_serialize.pth`` (``cfg.yaml`` beside either), or a converted
``.safetensors``; ``--backend onnx --model``: an exported network on ONNX Runtime / TensorRT.

Reads .mcap and .db3 bags (a bag folder or the file itself) with ``rosbags``, synchronises the
four stereo topics with the node's synchroniser (image topics of sensor_msgs/Image or
CompressedImage, told by their type; raw images with --rectify), runs the node's stereo-set
step on every set and writes every input message (copied byte for byte) plus the outputs to
OUT_BAG. Ctrl-C (SIGINT, SIGTERM) or a damaged input stops the run but keeps the work done:
the output bag is closed properly (readable, with its metadata.yaml) and the summary says why
it stopped. A message that does not decode is skipped and counted. Outputs are stamped like
their input and written at the log time of the message that completed the set, on
``<ns>/disparity``, ``<ns>/depth/image_rect``, ``<ns>/depth/camera_info`` and
``<ns>/points`` (``--outputs`` chooses, ``confidence`` among them), where ``<ns>`` is the
namespace of the left camera (``/stereo`` for ``/stereo/left/image_rect``) unless
--output-namespace says otherwise. When a set yields (almost) no valid depth, the log says once
which stage removed the pixels and what to check.
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from foundation_stereo_ros.interrupts import INTERRUPTED, exit_on_interrupt, quiet_main

with exit_on_interrupt(INTERRUPTED):  # Ctrl-C during the seconds of importing torch
    from tqdm import tqdm

    from foundation_stereo_ros.tools.bags import (
        BAG_SETTINGS,
        NO_PAIR,
        BagError,
        BagOptions,
        BagProgress,
        BagStep,
        add_arguments,
        bag_path,
        output_namespace,
        settings_from_args,
    )

__all__ = ['BAG_SETTINGS', 'build_parser', 'main', 'output_namespace', 'run']


def build_parser() -> argparse.ArgumentParser:
    """Command-line interface."""
    p = argparse.ArgumentParser(
        prog='python -m foundation_stereo_ros.bag_tool',
        description='Add disparity, depth and point clouds to a rosbag2 of a stereo camera.')
    p.add_argument('in_bag', type=Path, help='input bag: folder, .mcap or .db3 file')
    p.add_argument('out_bag', type=Path, help='output bag folder (must not exist)')
    add_arguments(p)
    p.add_argument('--quiet', action='store_true', help='no progress bar')
    return p


class _Bar(BagProgress):
    """A tqdm bar over the bag's messages, with the sets written so far."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bar: Any = None

    def start(self, messages: int, frames: int) -> None:
        """Open the bar over the bag's messages."""
        self.bar = tqdm(total=messages, unit='msg', disable=self.quiet, desc='stereo',
                        dynamic_ncols=True)

    def message(self, frame: bool) -> None:
        """Advance by one message."""
        self.bar.update()

    def pairs(self, written: int) -> None:
        """Show the sets written."""
        self.bar.set_postfix(pairs=written, refresh=False)

    def close(self) -> None:
        """Close the bar."""
        if self.bar is not None:
            self.bar.close()


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Process the bag; returns the summary (also printed).

    Stops early, keeping what was done, on Ctrl-C or a damaged input: the summary's
    ``interrupted`` then says why.
    """
    chosen = settings_from_args(args)
    in_bag = bag_path(args.in_bag)  # the bags are checked before the model loads
    if args.out_bag.exists():
        raise BagError(f'output bag {args.out_bag} exists: remove it or choose another name')
    step = BagStep(chosen, BagOptions.from_args(args))
    summary = step.run(in_bag, args.out_bag, _Bar(args.quiet))
    print('bag_tool: ' + ', '.join(f'{k}={v}' for k, v in summary.items()))
    if 'interrupted' in summary:
        print(f'bag_tool: {summary["interrupted"]}; {args.out_bag} holds the work done until '
              'then', file=sys.stderr)
    return summary


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM stops the run like Ctrl-C: the output bag is closed


@quiet_main(INTERRUPTED)
def main(argv: list[str] | None = None) -> int:
    """Console entry point; returns the exit code.

    0 when pairs were processed, 1 when none (or the input was damaged part way), 2 on bad
    input, 130 when interrupted (the output bag keeps the work done).
    """
    logging.basicConfig(level=logging.INFO, format='bag_tool: %(levelname)s: %(message)s')
    args = build_parser().parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        summary = run(args)
    except BagError as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # before the output bag was opened: nothing to keep
        print('bag_tool: interrupted', file=sys.stderr)
        return INTERRUPTED
    finally:
        signal.signal(signal.SIGTERM, previous)
    if summary.get('interrupted', '').startswith('interrupted'):
        return INTERRUPTED
    if summary['pairs_processed'] == 0:
        print(f'error: {NO_PAIR}', file=sys.stderr)
        return 1
    return 1 if summary.get('interrupted') else 0


if __name__ == '__main__':
    sys.exit(main())

r"""The valid_iters x scale x hierarchical experiment: latency against accuracy, per setting.

    python -m foundation_stereo_ros.sweep --backend foundation_stereo --checkpoint CKPT \
        --valid-iters 4 8 16 32 --scale 0.5 1.0 --hierarchical off on          # generated scene
    python -m foundation_stereo_ros.sweep --left L.png --right R.png --intrinsics K.txt \
        --checkpoint CKPT --ground-truth disparity_gt.npy ...                  # your own pair

Each setting runs the pipeline on the pair (one warm-up, then the fastest of ``--repeat``
timed runs). The table gives the time per pair, the difference to the most expensive setting
(most iterations, largest scale, hierarchical if swept) as median and 95th percentile of
|delta d| over pixels both estimate, and, where the ground truth is known (the generated
scene, or ``--ground-truth``: disparities in camera pixels, NaN or <= 0 = unknown), the mean
absolute error and the share of pixels more than 1 px off. ``OUT/sweep.png`` plots latency
against error (the ground truth's if known, else p95 |delta d|); ``OUT/sweep.csv`` has the
numbers. ``--valid-iters 0`` runs the checkpoint's own count (its family's default, or a
Fast-FoundationStereo cfg.yaml's ``valid_iters``); each row shows the count in force. Backends
other than foundation_stereo have no iterations: only scale is swept (iteration counts or
hierarchical modes given for them are reported as having no effect).
"""
from __future__ import annotations

import argparse
import csv
import itertools
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from foundation_stereo_ros import settings
from foundation_stereo_ros.camera import StereoCamera
from foundation_stereo_ros.interrupts import INTERRUPTED, quiet_main
from foundation_stereo_ros.tools.common import (
    ToolError,
    add_camera_options,
    load_camera,
    load_pair,
    pipeline_from_args,
    run_command,
)

if TYPE_CHECKING:
    from foundation_stereo_ros.pipeline import StereoPipeline

HIERARCHICAL = {'off': False, 'on': True}
DEFAULT_ITERS = [4, 8, 16, 32]   # --valid-iters when not given


@dataclass
class Row:
    """One setting and its figures."""

    valid_iters: int | None     # as asked (0: the checkpoint's count); None: no iterations
    scale: float
    hierarchical: bool
    iterations: int | None = None   # the count in force (0 resolved), once the model is known
    seconds: float = float('nan')
    median_delta: float = float('nan')      # |d - d_reference| over pixels both estimate
    p95_delta: float = float('nan')
    mae: float = float('nan')               # against ground truth, when known
    bad1: float = float('nan')
    coverage: float = float('nan')
    disparity: np.ndarray | None = None

    @property
    def label(self) -> str:
        """Short name of the setting for the table and the plot."""
        iters = f'iters={self.iters_text} ' if self.valid_iters is not None else ''
        return f'{iters}scale={self.scale:g} hier={"on" if self.hierarchical else "off"}'

    @property
    def iters_text(self) -> str:
        """Show the count in force: '0 (8)' when 0 asked for the checkpoint's 8, '-': none."""
        if self.valid_iters is None:
            return '-'
        if self.valid_iters == 0:
            return f'0 ({self.iterations})'
        return str(self.valid_iters)


def build_parser() -> argparse.ArgumentParser:
    """Command line: the demo's options, with the swept ones taking lists."""
    p = argparse.ArgumentParser(
        prog='python -m foundation_stereo_ros.sweep', conflict_handler='resolve',
        description='Time and accuracy of valid_iters x scale x hierarchical on one pair.',
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--left', type=Path, help='left rectified image (default: a generated scene)')
    p.add_argument('--right', type=Path, help='right rectified image')
    add_camera_options(p, 'K.txt of the pair')
    p.add_argument('--ground-truth', type=Path,
                   help='disparity_gt.npy of the pair (camera pixels; NaN or <= 0: unknown)')
    p.add_argument('--scene-size', default='640x480', help='WxH of the generated scene')
    p.add_argument('--scene-seed', type=int, default=0, help='seed of the generated scene')
    settings.add_arguments(p)
    # The swept settings replace the single-valued options of the same names.
    p.add_argument('--valid-iters', type=int, nargs='+', default=None,
                   help='iteration counts to try; 0: the checkpoint\'s own count (default: '
                        + ' '.join(map(str, DEFAULT_ITERS)) + ')')
    p.add_argument('--scale', type=float, nargs='+', default=[0.5, 1.0],
                   help='image scales to try (each within the scale setting\'s range)')
    p.add_argument('--hierarchical', nargs='+', choices=tuple(HIERARCHICAL), default=None,
                   help='coarse-to-fine off, on, or both (off on); default: off')
    p.add_argument('--no-hierarchical', dest='hierarchical', action='store_const',
                   const=['off'], help=argparse.SUPPRESS)
    p.add_argument('--repeat', type=int, default=2, help='timed runs per setting (fastest kept)')
    p.add_argument('--out', type=Path, default=Path('out/sweep'), help='output folder')
    return p


def load_input(args: argparse.Namespace
               ) -> tuple[np.ndarray, np.ndarray, StereoCamera, np.ndarray | None, np.ndarray]:
    """Return left, right, camera, ground-truth disparity (or None), and the mask it counts on.

    The mask is the scene's visible (non-occluded) pixels, or the pixels the given ground
    truth knows.
    """
    if args.left is None and args.right is None:
        from foundation_stereo_ros.synthetic.scenes import make_scene
        try:
            width, height = (int(v) for v in args.scene_size.lower().split('x'))
            scene = make_scene(width, height, seed=args.scene_seed)
        except ValueError as exc:
            raise ToolError(f'--scene-size must be WxH, e.g. 640x480 ({exc})') from exc
        return scene.left, scene.right, scene.camera, scene.disparity, ~scene.occluded
    if args.left is None or args.right is None:
        raise ToolError('give both --left and --right (or neither, for a generated scene)')
    if args.intrinsics is None and args.camera_info is None:
        raise ToolError('give the camera: --intrinsics K.txt or --camera-info L.yaml R.yaml')
    left, right = load_pair(args.left, args.right)
    camera = load_camera(args, left.shape[1], left.shape[0])
    truth = None
    known = np.ones(left.shape[:2], bool)
    if args.ground_truth is not None:
        try:
            truth = np.load(args.ground_truth).astype(np.float32)
        except (OSError, ValueError) as exc:
            raise ToolError(f'cannot read --ground-truth {args.ground_truth}: {exc}') from exc
        if truth.shape != left.shape[:2]:
            raise ToolError(f'--ground-truth is {truth.shape[1]}x{truth.shape[0]} but the '
                            f'images are {left.shape[1]}x{left.shape[0]}')
        known = np.isfinite(truth) & (truth > 0)
    return left, right, camera, truth, known


def settings_grid(args: argparse.Namespace) -> list[Row]:
    """Every combination to run; a single iteration count and no hierarchy without a network."""
    # Each value must be one the node accepts (the settings table's ranges).
    problems = [settings.check_value(name, value) for name in ('scale', 'valid_iters')
                for value in getattr(args, name) or ()]
    problems = [p.replace('valid_iters', '--valid-iters').replace('scale', '--scale')
                for p in problems if p]
    if problems:
        raise ToolError('; '.join(problems))
    if args.repeat < 1:
        raise ToolError(f'--repeat must be at least 1, got {args.repeat}')
    iters: list[int | None] = sorted(set(args.valid_iters or DEFAULT_ITERS))
    modes = sorted({HIERARCHICAL[m] for m in args.hierarchical or ['off']})
    if args.backend != 'foundation_stereo':
        iters, modes = [None], [False]     # the backend has no iterations
    return [Row(i, s, h) for h, s, i in itertools.product(modes, sorted(set(args.scale)), iters)]


def resolve_iterations(rows: list[Row], default_iters: int | None) -> None:
    """Fill in each row's count in force: 0 asks for the model's ``default_iters``."""
    for row in rows:
        if row.valid_iters is not None:
            row.iterations = row.valid_iters or default_iters


def apply_setting(pipeline: StereoPipeline, row: Row) -> None:
    """Make the next pair run with ``row``'s settings."""
    if row.iterations is not None:
        pipeline.update_config(scale=row.scale, valid_iters=row.iterations,
                               hierarchical=row.hierarchical)
    else:
        pipeline.update_config(scale=row.scale)


def measure(pipeline: StereoPipeline, rows: list[Row], left: np.ndarray, right: np.ndarray,
            camera: StereoCamera, repeat: int) -> None:
    """Fill in each row's time (fastest of ``repeat`` after a warm-up) and disparity."""
    for row in rows:
        apply_setting(pipeline, row)
        result = pipeline.process(left, right, camera, want_depth=False, want_points=False)
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            result = pipeline.process(left, right, camera, want_depth=False, want_points=False)
            times.append(time.perf_counter() - start)
        row.seconds, row.disparity = min(times), result.disparity


def compare(rows: list[Row], truth: np.ndarray | None, known: np.ndarray) -> Row:
    """Fill in the differences to the most expensive setting and the errors; return it."""
    reference = max(rows, key=lambda r: (r.iterations or 0, r.scale, r.hierarchical))
    for row in rows:
        both = np.isfinite(row.disparity) & np.isfinite(reference.disparity)
        if both.any():
            delta = np.abs(row.disparity[both] - reference.disparity[both])
            row.median_delta = float(np.median(delta))
            row.p95_delta = float(np.percentile(delta, 95))
        if truth is not None:
            estimated = np.isfinite(row.disparity) & known
            row.coverage = float(estimated.sum() / max(known.sum(), 1))
            if estimated.any():
                error = np.abs(row.disparity[estimated] - truth[estimated])
                row.mae, row.bad1 = float(error.mean()), float((error > 1.0).mean())
    return reference


def table(rows: list[Row], reference: Row, with_truth: bool) -> str:
    """Format the terminal table."""
    head = ['valid_iters', 'scale', 'hier', 's/pair', 'med|dd|', 'p95|dd|']
    if with_truth:
        head += ['MAE px', '>1px', 'coverage']
    lines = [head]
    for r in rows:
        line = [r.iters_text, f'{r.scale:g}', 'on' if r.hierarchical else 'off',
                f'{r.seconds:.3f}', f'{r.median_delta:.3f}', f'{r.p95_delta:.3f}']
        if with_truth:
            line += [f'{r.mae:.3f}', f'{r.bad1:.1%}', f'{r.coverage:.1%}']
        lines.append(line)
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    text = ['  '.join(c.rjust(w) for c, w in zip(line, widths)) for line in lines]
    if any(r.valid_iters == 0 for r in rows):
        text.append('valid_iters 0 (N): the checkpoint\'s own count, N iterations')
    text.append(f'|dd|: |disparity - disparity of the reference ({reference.label})| in px, '
                'over pixels both estimate')
    return '\n'.join(text)


def plot(rows: list[Row], path: Path, with_truth: bool, title: str) -> None:
    """Latency against error, one line per (scale, hierarchical) through the iteration counts."""
    import matplotlib
    matplotlib.use('Agg')  # files only: no display needed
    import matplotlib.pyplot as plt

    error_name = 'mean absolute error vs ground truth (px)' if with_truth else \
        'p95 |delta d| vs the most expensive setting (px)'
    fig, ax = plt.subplots(figsize=(7.5, 5), dpi=120)
    series = sorted({(r.scale, r.hierarchical) for r in rows})
    for scale, hierarchical in series:
        points = sorted((r for r in rows if (r.scale, r.hierarchical) == (scale, hierarchical)),
                        key=lambda r: r.iterations or 0)
        x = [r.seconds * 1000.0 for r in points]
        y = [r.mae if with_truth else r.p95_delta for r in points]
        ax.plot(x, y, marker='s' if hierarchical else 'o', linestyle='--' if hierarchical else '-',
                label=f'scale {scale:g}' + (', hierarchical' if hierarchical else ''))
        for r, xi, yi in zip(points, x, y):
            if r.iterations is not None:
                ax.annotate(str(r.iterations), (xi, yi), textcoords='offset points',
                            xytext=(4, 4), fontsize=8)
    ax.set_xlabel('latency per pair (ms)')
    ax.set_ylabel(error_name)
    ax.set_title(title + '\n(numbers: valid_iters; lower left is better)', fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def write_csv(path: Path, rows: list[Row]) -> None:
    """One row per setting: valid_iters is the count in force (empty: no iterations)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    names = ['valid_iters', 'valid_iters_requested', 'scale', 'hierarchical', 'seconds',
             'median_delta', 'p95_delta', 'mae', 'bad1', 'coverage']
    fields = {'valid_iters': 'iterations', 'valid_iters_requested': 'valid_iters'}
    with open(path, 'w', newline='', encoding='utf-8') as stream:
        writer = csv.writer(stream)
        writer.writerow(names)
        for r in rows:
            values = [getattr(r, fields.get(n, n)) for n in names]
            writer.writerow(['' if v is None else v for v in values])


def run(args: argparse.Namespace) -> list[Row]:
    """Run the sweep, print the table, write the plot and the CSV; returns the rows."""
    left, right, camera, truth, known = load_input(args)
    rows = settings_grid(args)
    # The pipeline is built once, with single values (valid_iters 0: the model's own count);
    # apply_setting changes them per row.
    pipeline, _ = pipeline_from_args(
        args, swept={'valid_iters': args.valid_iters, 'hierarchical': args.hierarchical and [
            HIERARCHICAL[m] for m in args.hierarchical]},
        valid_iters=0, scale=1.0, hierarchical=False)
    resolve_iterations(rows, getattr(pipeline.backend, 'valid_iters', None))
    print(f'sweep: {len(rows)} settings on a {camera.width}x{camera.height} pair, '
          f'backend {args.backend} on {pipeline.backend.device}', file=sys.stderr)
    measure(pipeline, rows, left, right, camera, args.repeat)
    reference = compare(rows, truth, known)
    print(table(rows, reference, truth is not None))
    title = f'{args.backend}, {camera.width}x{camera.height}'
    plot(rows, args.out / 'sweep.png', truth is not None, title)
    write_csv(args.out / 'sweep.csv', rows)
    print(f'wrote {args.out / "sweep.png"} and {args.out / "sweep.csv"}')
    return rows


@quiet_main(INTERRUPTED)
def main(argv: list[str] | None = None) -> int:
    """Console entry point."""
    return 0 if run_command(build_parser(), run, argv) is not None else 2


if __name__ == '__main__':
    sys.exit(main())

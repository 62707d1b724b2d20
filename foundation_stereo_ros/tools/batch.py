r"""Batch inference: many rectified pairs through one loaded model, the demo's outputs for each.

    python -m foundation_stereo_ros.batch --left-dir cam/left --right-dir cam/right \
        --intrinsics K.txt --backend foundation_stereo --checkpoint .../model_best_bp2.pth
    python -m foundation_stereo_ros.batch --glob 'scenes/*/left.png'      # right: .../right.png
    python -m foundation_stereo_ros.batch --pairs pairs.txt               # "LEFT RIGHT" lines

Pairs come from a left/right folder pair (matched by file name), a glob of left images (the
right image is the same path with the last ``left`` replaced by ``right``; ``--replace`` for
other names, e.g. ``im0 im1``) or a list file (one ``LEFT RIGHT`` pair per line, relative to
the file's folder, ``#`` comments). The camera is ``--intrinsics``/``--camera-info``, else a
``K.txt`` beside each left image.

For each pair, ``OUT/<name>/`` gets the demo's files (disparity.npy, depth.npy, disparity.png,
cloud.ply, confidence.npy when there is one). Pairs that cannot be used (missing or unreadable
image, left and right of different sizes, no camera) are skipped and listed with the reason, in
the table and in ``OUT/summary.csv``; nothing is dropped silently. ``--batch-size N`` runs up to
N consecutive pairs of one size through the network at once.
"""
from __future__ import annotations

import argparse
import csv
import glob
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from foundation_stereo_ros import settings
from foundation_stereo_ros.camera import StereoCamera
from foundation_stereo_ros.interrupts import INTERRUPTED, quiet_main
from foundation_stereo_ros.tools.common import (
    Notices,
    ToolError,
    add_camera_options,
    load_camera,
    load_pair,
    pipeline_from_args,
    run_command,
    write_outputs,
)

if TYPE_CHECKING:
    from foundation_stereo_ros.pipeline import StereoPipeline

IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.ppm', '.pgm')


@dataclass
class PairJob:
    """One pair to process, and what became of it."""

    name: str
    left: Path
    right: Path
    status: str = 'pending'      # 'ok' or 'skipped'
    reason: str = ''
    size: str = ''
    seconds: float = float('nan')     # pipeline time per pair (a batch's time / its size)
    valid_share: float = float('nan')


def build_parser() -> argparse.ArgumentParser:
    """Command-line interface of the batch tool."""
    p = argparse.ArgumentParser(
        prog='python -m foundation_stereo_ros.batch',
        description='Disparity, depth and point clouds for many rectified stereo pairs.',
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split('\n\n')[2])
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument('--left-dir', type=Path,
                        help='folder of left images (with --right-dir; matched by file name)')
    source.add_argument('--glob', help="glob of left images, e.g. 'scenes/*/left.png'")
    source.add_argument('--pairs', type=Path, help='text file, one "LEFT RIGHT" pair a line')
    p.add_argument('--right-dir', type=Path, help='folder of right images (with --left-dir)')
    p.add_argument('--replace', nargs=2, metavar=('LEFT', 'RIGHT'), default=('left', 'right'),
                   help='with --glob: the right path is the left one with the last LEFT '
                        'replaced by RIGHT (default: left right)')
    add_camera_options(p, 'K.txt for every pair (default: a K.txt beside each left image)')
    settings.add_arguments(p)
    p.add_argument('--batch-size', type=int, default=1,
                   help='pairs of one size run through the backend at once (default 1; see '
                        'benchmarks/bench_batch.py for whether more is faster on your machine)')
    p.add_argument('--out', type=Path, default=Path('out/batch'), help='output folder')
    return p


# -- finding the pairs ---------------------------------------------------------------------

def find_pairs(args: argparse.Namespace) -> list[PairJob]:
    """Return the pairs the command line names (ToolError when it names none at all)."""
    if args.left_dir is not None:
        jobs = _folder_pairs(args.left_dir, args.right_dir)
    elif args.glob is not None:
        jobs = _glob_pairs(args.glob, *args.replace)
    else:
        jobs = _list_pairs(args.pairs)
    if not jobs:
        raise ToolError('no left images found: check the folder, glob or list file')
    return jobs


def _folder_pairs(left_dir: Path, right_dir: Path | None) -> list[PairJob]:
    if right_dir is None:
        raise ToolError('--left-dir needs --right-dir')
    for folder in (left_dir, right_dir):
        if not folder.is_dir():
            raise ToolError(f'folder not found: {folder}')
    lefts = sorted(f for f in left_dir.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
    return [PairJob(left.stem, left, right_dir / left.name) for left in lefts]


def _glob_pairs(pattern: str, left_token: str, right_token: str) -> list[PairJob]:
    lefts = sorted(Path(p) for p in _expand(pattern))
    jobs = []
    for left in lefts:
        text = str(left)
        at = text.rfind(left_token)
        right = Path(text[:at] + right_token + text[at + len(left_token):]) if at >= 0 else None
        jobs.append(PairJob('', left, right if right is not None else left))
        if right is None:
            jobs[-1].status, jobs[-1].reason = 'skipped', (
                f'no {left_token!r} in the path to turn into the right image')
    _name_by_path(jobs)
    return jobs


def _expand(pattern: str) -> list[str]:
    return glob.glob(os.path.expanduser(pattern), recursive=True)


def _list_pairs(list_file: Path) -> list[PairJob]:
    if not list_file.is_file():
        raise ToolError(f'pair list not found: {list_file}')
    jobs = []
    for number, line in enumerate(list_file.read_text(encoding='utf-8').splitlines(), 1):
        line = line.split('#', 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        if len(fields) != 2:
            job = PairJob(f'line{number}', Path(fields[0]), Path(fields[-1]), 'skipped',
                          f'{list_file.name} line {number}: expected "LEFT RIGHT", got '
                          f'{len(fields)} fields')
        else:
            job = PairJob('', *(list_file.parent / f for f in fields))
        jobs.append(job)
    _name_by_path([j for j in jobs if not j.name])
    return jobs


def _name_by_path(jobs: list[PairJob]) -> None:
    """Name each job by its left path below the common folder ('scene3', 'a-left0'...)."""
    if not jobs:
        return
    parts = [j.left.resolve().with_suffix('').parts for j in jobs]
    common = len(os.path.commonpath([j.left.resolve() for j in jobs]).split(os.sep))
    if len(jobs) == 1:
        common = len(parts[0]) - 1
    names = [list(p[min(common, len(p) - 1):]) for p in parts]
    # left.png in every folder: the folder says which pair it is.
    if all(len(n) > 1 for n in names) and len({n[-1] for n in names}) == 1:
        names = [n[:-1] for n in names]
    for job, name in zip(jobs, names):
        job.name = '-'.join(name)


# -- running ---------------------------------------------------------------------------------

def _load(job: PairJob, args: argparse.Namespace
          ) -> tuple[np.ndarray, np.ndarray, StereoCamera] | None:
    """Read the pair and its camera; mark the job skipped (and return None) if unusable."""
    try:
        left, right = load_pair(job.left, job.right)
        height, width = left.shape[:2]
        if args.intrinsics is None and args.camera_info is None:
            k_file = job.left.parent / 'K.txt'
            if not k_file.is_file():
                raise ToolError(f'no camera: no K.txt beside {job.left.name}; give '
                                '--intrinsics or --camera-info')
            camera = load_camera(argparse.Namespace(intrinsics=k_file, camera_info=None),
                                 width, height)
        else:
            camera = load_camera(args, width, height)
        if (camera.width, camera.height) != (width, height):
            raise ToolError(f'images are {width}x{height} but the camera is '
                            f'{camera.width}x{camera.height}')
    except ToolError as exc:
        job.status, job.reason = 'skipped', str(exc)
        return None
    job.size = f'{width}x{height}'
    return left, right, camera


def run_batches(pipeline: StereoPipeline, jobs: list[PairJob], args: argparse.Namespace,
                batch_size: int) -> None:
    """Process every pending job, ``batch_size`` same-size pairs at a time; write outputs."""
    pending = [j for j in jobs if j.status == 'pending']
    group: list[tuple[PairJob, np.ndarray, np.ndarray, StereoCamera]] = []
    notices = Notices('batch')

    def flush() -> None:
        if not group:
            return
        camera = group[0][3]
        start = time.perf_counter()
        results = pipeline.process_batch([(left, right) for _, left, right, _ in group], camera,
                                         want_confidence=True)
        per_pair = (time.perf_counter() - start) / len(group)
        for (job, left, _, _), result in zip(group, results):
            notices.tell(result, job.name)
            write_outputs(args.out / job.name, result, left)
            job.status, job.seconds = 'ok', per_pair
            job.valid_share = float(np.isfinite(result.disparity).mean())
        progress.update(len(group))
        group.clear()

    with tqdm(total=len(pending), unit='pair', desc='batch', file=sys.stderr) as progress:
        for job in pending:
            loaded = _load(job, args)
            if loaded is None:
                progress.update(1)
                continue
            if group and (loaded[2] != group[0][3] or len(group) >= batch_size):
                flush()     # another camera (or size), or the batch is full
            group.append((job, *loaded))
        flush()


def summary_table(jobs: list[PairJob]) -> str:
    """Format the per-pair table printed at the end (skipped pairs with their reason)."""
    rows = [('pair', 'size', 'status', 's/pair', 'valid', 'reason')]
    for job in jobs:
        ok = job.status == 'ok'
        rows.append((job.name, job.size or '-', job.status,
                     f'{job.seconds:.3f}' if ok else '-',
                     f'{job.valid_share:.1%}' if ok else '-', job.reason))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = ['  '.join(cell.ljust(w) for cell, w in zip(row[:5], widths)).rstrip()
             + (f'  {row[5]}' if row[5] else '') for row in rows]
    done = [j for j in jobs if j.status == 'ok']
    skipped = len(jobs) - len(done)
    footer = f'{len(done)} of {len(jobs)} pairs processed, {skipped} skipped'
    if done:
        footer += (f'; {np.mean([j.seconds for j in done]):.3f} s per pair, valid share '
                   f'{np.mean([j.valid_share for j in done]):.1%} on average')
    return '\n'.join([*lines, footer])


def write_summary_csv(path: Path, jobs: list[PairJob]) -> None:
    """One CSV row per pair, processed or skipped."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, 'w', newline='', encoding='utf-8') as stream:
        writer = csv.writer(stream)
        writer.writerow(['pair', 'left', 'right', 'size', 'status', 'seconds_per_pair',
                         'valid_share', 'reason'])
        for j in jobs:
            writer.writerow([j.name, j.left, j.right, j.size, j.status,
                             f'{j.seconds:.4f}' if j.status == 'ok' else '',
                             f'{j.valid_share:.4f}' if j.status == 'ok' else '', j.reason])


def run(args: argparse.Namespace) -> list[PairJob]:
    """Find the pairs, load the model once, process them all; returns the jobs."""
    if args.batch_size < 1:
        raise ToolError(f'--batch-size must be at least 1, got {args.batch_size}')
    jobs = find_pairs(args)
    pipeline, _ = pipeline_from_args(args)
    run_batches(pipeline, jobs, args, args.batch_size)
    print(summary_table(jobs))
    write_summary_csv(args.out / 'summary.csv', jobs)
    return jobs


@quiet_main(INTERRUPTED)
def main(argv: list[str] | None = None) -> int:
    """Console entry point: 0 when at least one pair was processed, 1 when none, 2 on misuse."""
    jobs = run_command(build_parser(), run, argv)
    if jobs is None:
        return 2
    return 0 if any(j.status == 'ok' for j in jobs) else 1


if __name__ == '__main__':
    sys.exit(main())

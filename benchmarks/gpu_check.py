#!/usr/bin/env python3
r"""One prepared GPU check: parity, precision, latency and memory, the node end to end.

Run it once, whole, on a CUDA machine; it finishes within its time budget (440 s by
default, every step capped and the caps cut to what is left) and writes ``gpu_check.md`` (the
tables for the issue note) and ``gpu_check.json`` (every figure) into ``--out``:

1. parity: CUDA fp32 against CPU fp32 on a seeded ViT-S model and a generated scene
   (TF32 off), |delta d| max / median / p99 in pixels;
2. precision: fp16 and bf16 against fp32 on CUDA (ViT-S and ViT-L), same statistics;
3. latency and peak memory at 640x480 through the backend (what the node runs):
   FoundationStereo ViT-S and ViT-L (seeded weights), Fast-FoundationStereo ``cffs_like``
   (``../shared/reference/ffs``) when present and loadable; 4/8/16/32 iterations (FFS
   4/8/16); eager in fp32/fp16/bf16, compiled in fp16 then bf16 (the warm-up time is the
   compile time); the ``onnx`` backend with the CUDA and TensorRT providers when the package
   has that backend and onnxruntime those providers;
4. the node end to end with the synthetic camera at 640x480 (``bench_node.py --json``):
   latency p50/p99, camera, node input and output rates, dropped sets;
5. the trust filters at 640x480 and 1280x720 (``bench_trust.py``): confidence threshold,
   left-right check, edge filter and denoising, one frame each.
6. 1, 2 and 4 cameras through one node against as many separate nodes, FFS ``cffs_like``
   (``bench_cameras.py --json``): total sets/s, each camera's latency p50/p99, resident memory
   (last, in the time the other steps leave).

Each step runs in its own process group with a time limit, so a hung compilation or engine
build costs its cap and no more; its rows say ``timeout`` and the rest goes on. Steps run in
order of importance; one that no longer fits says ``skipped: time budget``.

``--dry-run`` does the same on the CPU at 96x64 with one iteration, in about a minute on two
free cores (the test suite runs it so the script cannot rot); compiled rows are skipped there (CPU
compilation is tested in test/test_speed_modes.py) and parity is CPU against CPU.

    PYTHONPATH=. python benchmarks/gpu_check.py --out gpu_check_out      # CUDA machine
    PYTHONPATH=. python benchmarks/gpu_check.py --dry-run --out /tmp/gc   # anywhere
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from common import json_rows, worker_command

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # the package from this checkout, as the step workers get it
    sys.path.insert(0, str(REPO_ROOT))
FFS_CHECKPOINT = (REPO_ROOT.parent / 'shared' / 'reference' / 'ffs' / 'cffs_like'
                  / 'model_best_bp2_serialize.pth')
BENCH_NODE = Path(__file__).resolve().parent / 'bench_node.py'
BENCH_CAMERAS = Path(__file__).resolve().parent / 'bench_cameras.py'
BENCHMARKS = Path(__file__).resolve().parent


@dataclass
class Plan:
    """What one run measures (the full CUDA plan or the CPU dry run)."""

    device: str
    budget_s: float
    size: tuple[int, int]                  # (height, width) of latency and precision rows
    parity_size: tuple[int, int]
    parity_iters: int
    iters: dict[str, list[int]]            # family -> iteration counts
    eager_precisions: list[str]
    compiled_precisions: list[str]
    repeat: int
    precision_vits: list[str]              # families of the precision step
    node: dict[str, Any] = field(default_factory=dict)
    cameras: dict[str, Any] = field(default_factory=dict)  # bench_cameras.py options
    dry_run: bool = False
    caps: dict[str, float] = field(default_factory=dict)
    trust_sizes: list[tuple[int, int]] = field(default_factory=list)   # (height, width)


FULL = Plan(
    device='cuda', budget_s=440.0, size=(480, 640), parity_size=(240, 320), parity_iters=8,
    iters={'vits': [4, 8, 16, 32], 'vitl': [4, 8, 16, 32], 'ffs': [4, 8, 16]},
    eager_precisions=['fp32', 'fp16', 'bf16'], compiled_precisions=['fp16', 'bf16'],
    repeat=5, precision_vits=['vits', 'vitl'],
    node={'width': 640, 'height': 480, 'rate': 30.0, 'duration': 20.0, 'window': 5.0,
          'family': 'vits', 'params': ['valid_iters:=16']},
    cameras={'counts': [1, 2, 4], 'width': 640, 'height': 480, 'rate': 30.0,
             'duration': 5.0, 'params': ['valid_iters:=8']},
    caps={'checkpoints': 60, 'parity': 60, 'precision': 60, 'eager': 60, 'node': 75,
          'cameras': 150, 'compiled': 100, 'onnx': 120, 'trust': 40},
    trust_sizes=[(480, 640), (720, 1280)])
DRY = Plan(
    device='cpu', budget_s=600.0, size=(64, 96), parity_size=(64, 96), parity_iters=1,
    iters={'vits': [1], 'ffs': [1]}, eager_precisions=['fp32', 'bf16'],
    compiled_precisions=['fp16'], repeat=1, precision_vits=['vits'],
    node={'width': 96, 'height': 64, 'rate': 4.0, 'duration': 4.0, 'window': 2.0,
          'family': 'vits', 'params': ['valid_iters:=1', 'device:=cpu']},
    cameras={'counts': [2], 'width': 96, 'height': 64, 'rate': 4.0, 'duration': 2.0,
             'params': ['valid_iters:=1']},
    dry_run=True,
    # About a minute in all on two free cores; the caps leave room for a loaded CI machine.
    caps={'checkpoints': 90, 'parity': 150, 'precision': 150, 'eager': 200, 'node': 200,
          'cameras': 200, 'compiled': 0, 'onnx': 0, 'trust': 120},
    trust_sizes=[(64, 96)])


# ----------------------------------------------------------------------------- workers
# Each runs in a child process (``--worker``) and prints one JSON object per line: rows as
# they are measured, so a step cut short by its time limit still reports what it finished.

def _emit(row: dict[str, Any]) -> None:
    print(json.dumps(row), flush=True)


def _scene_pair(height: int, width: int, device: Any) -> tuple[Any, Any]:
    import torch

    from foundation_stereo_ros.synthetic.scenes import make_scene
    scene = make_scene(width, height, seed=3)
    return tuple(torch.from_numpy(img).permute(2, 0, 1).contiguous().float().to(device)
                 for img in (scene.left, scene.right))


def _difference(a: Any, b: Any) -> dict[str, float]:
    import torch
    diff = (a.float().cpu() - b.float().cpu()).abs().flatten()
    finite = diff[torch.isfinite(diff)]
    if finite.numel() == 0:
        return {'max': math.nan, 'median': math.nan, 'p99': math.nan, 'finite': 0.0}
    return {'max': float(finite.max()), 'median': float(finite.median()),
            'p99': float(torch.quantile(finite[:1_000_000], 0.99)),
            'finite': finite.numel() / diff.numel()}


def _backend(checkpoint: str, device: str, **options: Any) -> Any:
    from foundation_stereo_ros.backends import make_backend
    return make_backend('foundation_stereo', checkpoint=checkpoint, device=device, **options)


def worker_checkpoints(spec: dict[str, Any]) -> None:
    """Write seeded checkpoints (``torch.manual_seed(0)`` initialisation) in the official form."""
    import torch
    import yaml

    from foundation_stereo_ros.model import build_model
    for vit in spec['vits']:
        folder = Path(spec['dir']) / vit
        folder.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(0)
        model = build_model({'vit_size': vit, 'mixed_precision': False})
        torch.save({'model': model.state_dict()}, folder / 'model_best_bp2.pth')
        (folder / 'cfg.yaml').write_text(yaml.safe_dump(dict(model.cfg)))
        _emit({'vit': vit, 'path': str(folder / 'model_best_bp2.pth')})


def worker_parity(spec: dict[str, Any]) -> None:
    """Compare ``spec['device']`` fp32 with CPU fp32: same seeded model, same pair."""
    import torch
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    h, w = spec['size']
    out = {}
    for device in ('cpu', spec['device']):
        backend = _backend(spec['checkpoint'], device, precision='fp32',
                           valid_iters=spec['iters'])
        left, right = _scene_pair(h, w, backend.device)
        out[device if device not in out else device + ' (again)'] = backend.compute(left, right)
    (first, a), (second, b) = out.items()
    _emit({'compare': f'{second} fp32 vs {first} fp32', 'vit': 'vits', 'size': f'{w}x{h}',
           'iters': spec['iters'], **_difference(b, a), 'mean_disp': float(a.abs().mean())})


def worker_precision(spec: dict[str, Any]) -> None:
    """fp16 and bf16 against fp32 on ``spec['device']``, per family."""
    h, w = spec['size']
    for vit, checkpoint in spec['checkpoints'].items():
        reference = None
        for precision in ['fp32', *spec['precisions']]:
            try:
                backend = _backend(checkpoint, spec['device'], precision=precision,
                                   valid_iters=spec['iters'])
                left, right = _scene_pair(h, w, backend.device)
                disp = backend.compute(left, right)
            except Exception as exc:  # noqa: BLE001 - the row reports it
                _emit({'compare': f'{precision} vs fp32', 'vit': vit, 'error': repr(exc)})
                continue
            if reference is None:
                reference = disp
                continue
            _emit({'compare': f'{precision} vs fp32', 'vit': vit, 'size': f'{w}x{h}',
                   'iters': spec['iters'], **_difference(disp, reference),
                   'mean_disp': float(reference.abs().mean())})


def worker_latency(spec: dict[str, Any]) -> None:
    """Latency and peak memory through the backend, one row per (precision, iterations)."""
    import torch
    h, w = spec['size']
    cuda = spec['device'].startswith('cuda')
    for precision in spec['precisions']:
        base = {'family': spec['family'], 'mode': spec['mode'], 'precision': precision,
                'size': f'{w}x{h}'}
        try:
            start = time.perf_counter()
            backend = _backend(spec['checkpoint'], spec['device'], precision=precision,
                               compile=spec['mode'] == 'compile',
                               valid_iters=max(spec['iters']), warmup_width=w,
                               warmup_height=h)
            setup_s = time.perf_counter() - start
            left, right = _scene_pair(h, w, backend.device)
        except Exception as exc:  # noqa: BLE001 - the row reports it
            _emit({**base, 'error': f'{type(exc).__name__}: {exc}'[:300]})
            continue
        for iters in spec['iters']:
            backend.compute(left, right, valid_iters=iters)   # a new count: new graph nodes
            if cuda:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            times = []
            for _ in range(spec['repeat']):
                begin = time.perf_counter()
                backend.compute(left, right, valid_iters=iters)
                if cuda:
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - begin)
            _emit({**base, 'iters': iters, 'median_ms': 1e3 * statistics.median(times),
                   'min_ms': 1e3 * min(times), 'setup_s': setup_s,
                   'peak_mb': torch.cuda.max_memory_allocated() / 2 ** 20 if cuda else None})


def worker_onnx(spec: dict[str, Any]) -> None:
    """Time the package's ``onnx`` backend on an export of the seeded ViT-S, per provider."""
    import onnxruntime
    import torch

    from foundation_stereo_ros import settings
    from foundation_stereo_ros.model import load_checkpoint
    from foundation_stereo_ros.model.onnx_export import export_onnx
    h, w = spec['size']
    path = Path(spec['dir']) / f'vits_{w}x{h}_{spec["iters"]}.onnx'
    available = onnxruntime.get_available_providers()
    onnx_settings = [s for s in settings.SETTINGS if 'onnx' in s.backends]
    model_setting = next((s.name for s in onnx_settings if s.name in ('model', 'onnx_model')),
                         None)
    if model_setting is None:
        _emit({'family': 'vits', 'mode': 'onnx', 'error': 'the onnx backend takes no model '
               f'setting (its settings: {", ".join(s.name for s in onnx_settings)})'})
        return
    provider_setting = next((s for s in onnx_settings
                             if any('tensorrt' in c.lower() for c in s.choices)), None)
    for provider in ('TensorrtExecutionProvider', 'CUDAExecutionProvider'):
        base = {'family': 'vits', 'mode': f'onnx {provider[:-len("ExecutionProvider")]}',
                'precision': 'fp16' if provider.startswith('Tensorrt') else 'fp32',
                'size': f'{w}x{h}', 'iters': spec['iters']}
        if provider not in available:
            _emit({**base, 'error': f'skipped: onnxruntime has no {provider} '
                                    f'(available: {", ".join(available)})'})
            continue
        choice = next((c for c in provider_setting.choices
                       if c.lower() in provider.lower()), None) if provider_setting else None
        options = {model_setting: str(path)}
        if provider_setting is not None and choice is not None:
            options[provider_setting.name] = choice
        try:
            from foundation_stereo_ros.backends import make_backend
            if not path.exists():   # exported once, for the first provider present
                model, _ = load_checkpoint(spec['checkpoint'], device=spec['device'])
                export_onnx(model, path, h, w, spec['iters'], dynamic_batch=False)
                del model
            start = time.perf_counter()
            backend = make_backend('onnx', **options)
            left, right = _scene_pair(h, w, backend.device)
            backend.compute(left, right)
            setup_s = time.perf_counter() - start
            times = []
            for _ in range(spec['repeat']):
                begin = time.perf_counter()
                backend.compute(left, right)
                if backend.device.type == 'cuda':
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - begin)
            _emit({**base, 'median_ms': 1e3 * statistics.median(times),
                   'min_ms': 1e3 * min(times), 'setup_s': setup_s, 'peak_mb': None,
                   'options': {k: str(v) for k, v in options.items()}})
        except Exception as exc:  # noqa: BLE001 - the row reports it
            _emit({**base, 'error': f'{type(exc).__name__}: {exc}'[:300]})


def worker_trust(spec: dict[str, Any]) -> None:
    """Time each trust stage (bench_trust.py) on ``spec['device']``, one row per stage."""
    sys.path.insert(0, str(BENCHMARKS))
    import bench_trust
    for height, width in spec['sizes']:
        try:
            rows = bench_trust.measure(width, height, spec['device'], spec['repeat'])
        except Exception as exc:  # noqa: BLE001 - the row reports it
            _emit({'stage': 'all', 'size': f'{width}x{height}', 'device': spec['device'],
                   'error': f'{type(exc).__name__}: {exc}'[:300]})
            continue
        for row in rows:
            _emit(row)


WORKERS = {'checkpoints': worker_checkpoints, 'parity': worker_parity,
           'precision': worker_precision, 'latency': worker_latency, 'onnx': worker_onnx,
           'trust': worker_trust}


# ----------------------------------------------------------------------------- driver
@dataclass
class Step:
    """One budgeted step and what came of it."""

    name: str
    kind: str
    status: str = 'pending'
    seconds: float = 0.0
    detail: str = ''
    rows: list[dict[str, Any]] = field(default_factory=list)


class Runner:
    """Runs steps as child process groups within one overall deadline."""

    def __init__(self, plan: Plan, workdir: Path) -> None:
        self.plan = plan
        self.workdir = workdir
        self.start = time.monotonic()
        self.deadline = self.start + plan.budget_s
        self.steps: list[Step] = []
        self.env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [str(REPO_ROOT)] + [p for p in os.environ.get('PYTHONPATH', '').split(os.pathsep)
                                if p]))

    def left_s(self) -> float:
        """Seconds left in the budget."""
        return self.deadline - time.monotonic()

    def run(self, name: str, kind: str, command: list[str], cap: float,
            minimum: float = 10.0) -> Step:
        """Run ``command`` for at most ``cap`` seconds (less when the budget is short)."""
        step = Step(name, kind)
        self.steps.append(step)
        limit = min(cap, self.left_s())
        if cap <= 0:
            step.status, step.detail = 'skipped', 'not in this plan (dry run)'
            return step
        if limit < minimum:
            step.status, step.detail = 'skipped', f'time budget ({max(limit, 0):.0f} s left)'
            return step
        begin = time.monotonic()
        with tempfile.TemporaryFile('w+') as out, tempfile.TemporaryFile('w+') as err:
            proc = subprocess.Popen(command, stdout=out, stderr=err, env=self.env, text=True,
                                    start_new_session=True)   # its own group: killable whole
            try:
                proc.wait(timeout=limit)
                step.status = 'ok' if proc.returncode == 0 else 'failed'
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                step.status = 'timeout'
            step.seconds = time.monotonic() - begin
            out.seek(0)
            err.seek(0)
            step.rows.extend(json_rows(out.read()))
            tail = err.read().strip().splitlines()
        if step.status == 'timeout':
            step.detail = f'stopped at its limit of {limit:.0f} s'
        elif step.status == 'failed':
            step.detail = (tail[-1] if tail else f'exit code {proc.returncode}')[:300]
        print(f'gpu_check: {name}: {step.status} in {step.seconds:.0f} s '
              f'({self.left_s():.0f} s left) {step.detail}', flush=True)
        return step

    def worker(self, name: str, kind: str, cap: float, minimum: float = 10.0,
               **spec: Any) -> Step:
        """Run one of :data:`WORKERS` with ``spec``."""
        return self.run(name, kind, worker_command(__file__, kind, json.dumps(spec)), cap,
                        minimum)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGINT)    # bench_node stops its camera and node on SIGINT
        proc.wait(timeout=10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def run_plan(plan: Plan, out_dir: Path) -> dict[str, Any]:
    """Run every step of ``plan``; write and return the report."""
    import torch
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix='gpu_check_') as tmp:
        workdir = Path(tmp)
        runner = Runner(plan, workdir)
        vits = sorted({*plan.iters} - {'ffs'})
        step = runner.worker('seeded checkpoints', 'checkpoints', plan.caps['checkpoints'],
                             vits=vits, dir=str(workdir))
        checkpoints = {row['vit']: row['path'] for row in step.rows}
        families = dict(checkpoints)
        if 'ffs' in plan.iters:
            families['ffs'] = str(FFS_CHECKPOINT)
        size = list(plan.size)
        if 'vits' in checkpoints:
            runner.worker('parity', 'parity', plan.caps['parity'], device=plan.device,
                          checkpoint=checkpoints['vits'], size=list(plan.parity_size),
                          iters=plan.parity_iters)
        runner.worker('precision', 'precision', plan.caps['precision'], device=plan.device,
                      checkpoints={v: checkpoints[v] for v in plan.precision_vits
                                   if v in checkpoints},
                      precisions=[p for p in plan.eager_precisions if p != 'fp32'],
                      size=size, iters=plan.iters['vits'][-1] if plan.dry_run else 16)

        def latency(family: str, mode: str, precisions: list[str], cap: float) -> None:
            name = f'latency {family} {mode} {"/".join(precisions)}'
            if family == 'ffs' and not FFS_CHECKPOINT.exists():
                runner.steps.append(Step(name, 'latency', 'skipped',
                                         detail=f'{FFS_CHECKPOINT} not present'))
                return
            # A compilation needs time to be worth starting; an eager row does not.
            minimum = 45.0 if mode == 'compile' else 10.0
            runner.worker(name, 'latency', cap, minimum, family=family, mode=mode,
                          checkpoint=families[family], device=plan.device, size=size,
                          precisions=precisions, iters=plan.iters[family],
                          repeat=plan.repeat)

        for family in plan.iters:
            if family in families:
                latency(family, 'eager', plan.eager_precisions, plan.caps['eager'])
        if plan.node.get('family') in checkpoints:
            _node_step(runner, plan, checkpoints[plan.node['family']], workdir)
        runner.worker('trust filters', 'trust', plan.caps['trust'], device=plan.device,
                      sizes=[list(size) for size in plan.trust_sizes],
                      repeat=max(plan.repeat, 10))
        for precision in plan.compiled_precisions:
            for family in plan.iters:
                if family in families:
                    latency(family, 'compile', [precision], plan.caps['compiled'])
            if precision == plan.compiled_precisions[0]:
                _onnx_step(runner, plan, checkpoints.get('vits'), workdir)
        # Last: it gets the time the earlier steps leave (it needs the FFS reference).
        _cameras_step(runner, plan, workdir)
        report = {
            'meta': {'dry_run': plan.dry_run, 'device': plan.device,
                     'device_name': (torch.cuda.get_device_name(0) if plan.device == 'cuda'
                                     else f'CPU, {os.cpu_count()} cores'),
                     'torch': torch.__version__, 'budget_s': plan.budget_s,
                     'elapsed_s': time.monotonic() - runner.start,
                     'plan': asdict(plan)},
            'steps': [asdict(s) for s in runner.steps],
        }
    report = _json_safe(report)
    (out_dir / 'gpu_check.json').write_text(json.dumps(report, indent=1) + '\n')
    (out_dir / 'gpu_check.md').write_text(markdown(report))
    return report


def _node_step(runner: Runner, plan: Plan, checkpoint: str, workdir: Path) -> None:
    node = plan.node
    summary = workdir / 'node.json'
    command = [sys.executable, str(BENCH_NODE), '--backend', 'foundation_stereo',
               '--checkpoint', checkpoint, '--width', str(node['width']),
               '--height', str(node['height']), '--rate', str(node['rate']),
               '--duration', str(node['duration']), '--window', str(node['window']),
               '--first-output-timeout', str(plan.caps['node'] / 2), '--json', str(summary)]
    for param in node['params']:
        command += ['-p', param]
    step = runner.run(f'node end to end ({node["family"]}, {" ".join(node["params"])})',
                      'node', command, plan.caps['node'])
    if summary.exists():
        step.rows.append(json.loads(summary.read_text()))


def _cameras_step(runner: Runner, plan: Plan, workdir: Path) -> None:
    cams = plan.cameras
    name = f'cameras: one node against separate nodes ({" ".join(cams["params"])})'
    if not FFS_CHECKPOINT.exists():
        runner.steps.append(Step(name, 'cameras', 'skipped',
                                 detail=f'{FFS_CHECKPOINT} not present'))
        return
    summary = workdir / 'cameras.json'
    command = [sys.executable, str(BENCH_CAMERAS), '--checkpoint', str(FFS_CHECKPOINT),
               '--device', plan.device, '--width', str(cams['width']),
               '--height', str(cams['height']), '--rate', str(cams['rate']),
               '--duration', str(cams['duration']), '--counts', *map(str, cams['counts']),
               '--first-output-timeout', str(plan.caps['cameras'] / 3), '--json', str(summary)]
    for param in cams['params']:
        command += ['-p', param]
    step = runner.run(name, 'cameras', command, plan.caps['cameras'])
    if summary.exists():  # the whole run; else the rows it printed before its limit
        step.rows = json.loads(summary.read_text())


def _onnx_step(runner: Runner, plan: Plan, checkpoint: str | None, workdir: Path) -> None:
    from foundation_stereo_ros.backends import BACKENDS
    name = 'onnx backend (TensorRT, CUDA providers)'
    if 'onnx' not in BACKENDS:
        runner.steps.append(Step(name, 'onnx', 'skipped',
                                 detail='foundation_stereo_ros.backends has no onnx backend'))
        return
    if checkpoint is None:
        runner.steps.append(Step(name, 'onnx', 'skipped', detail='no seeded checkpoint'))
        return
    runner.worker(name, 'onnx', plan.caps['onnx'], 45.0, checkpoint=checkpoint,
                  device=plan.device,
                  size=list(plan.size), iters=16, repeat=plan.repeat, dir=str(workdir))


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


# ----------------------------------------------------------------------------- report
def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return ''
    if isinstance(value, float):
        return f'{value:.{digits}f}' if abs(value) >= 10 ** -digits or value == 0 else \
            f'{value:.2e}'
    return str(value)


def markdown(report: dict[str, Any]) -> str:
    """Return the report as markdown tables (what goes into the issue note)."""
    meta = report['meta']
    steps = report['steps']
    lines = [f'## gpu_check{" (dry run, CPU)" if meta["dry_run"] else ""}', '',
             (f'{meta["device_name"]}, torch {meta["torch"]}; {meta["elapsed_s"]:.0f} s of a '
              f'{meta["budget_s"]:.0f} s budget. Seeded weights (not a trained model): latency '
              'and memory are those of the real architectures, disparities are meaningless.'),
             '']
    lines += _table('Parity and precision (|delta d| in pixels)', (
        'comparison', 'model', 'size', 'iters', 'max', 'median', 'p99', 'finite', 'mean d'))[1:]
    for step in steps:
        if step['kind'] in ('parity', 'precision'):
            for row in step['rows']:
                if 'error' in row:
                    lines.append(f'| {row["compare"]} | {row["vit"]} | error: {row["error"]} '
                                 '| | | | | | |')
                    continue
                lines.append(f'| {row["compare"]} | {row["vit"]} | {row["size"]} | '
                             f'{row["iters"]} | {_fmt(row["max"], 3)} | '
                             f'{_fmt(row["median"], 3)} | {_fmt(row["p99"], 3)} | '
                             f'{_fmt(row["finite"], 3)} | {_fmt(row["mean_disp"])} |')
    lines += _table('Latency and peak memory (backend.compute, one pair)', (
        'model', 'mode', 'precision', 'size', 'iters', 'median ms', 'min ms', 'peak MB',
        'setup s', 'note'))
    for step in steps:
        if step['kind'] not in ('latency', 'onnx'):
            continue
        for row in step['rows']:
            lines.append(f'| {row.get("family", "")} | {row.get("mode", "")} | '
                         f'{row.get("precision", "")} | {row.get("size", "")} | '
                         f'{row.get("iters", "")} | {_fmt(row.get("median_ms"))} | '
                         f'{_fmt(row.get("min_ms"))} | {_fmt(row.get("peak_mb"), 0)} | '
                         f'{_fmt(row.get("setup_s"))} | {row.get("error", "")} |')
        if step['status'] != 'ok':
            lines.append(f'| {step["name"]} | | | | | | | | | {step["status"]}: '
                         f'{step["detail"]} |')
    lines += _table('The node end to end (synthetic camera)', (
        'size', 'camera Hz', 'node input Hz', 'output Hz', 'latency p50 ms', 'p99 ms',
        'max ms', 'dropped (busy)', 'dropped (unmatched)', 'first output s', 'params'))
    for step in steps:
        if step['kind'] != 'node':
            continue
        for row in step['rows']:
            lines.append(f'| {row["width"]}x{row["height"]} | {_fmt(row["camera_hz"])} | '
                         f'{_fmt(row["node_input_hz"])} | {_fmt(row["output_hz"], 2)} | '
                         f'{_fmt(row["latency_p50_ms"], 0)} | {_fmt(row["latency_p99_ms"], 0)} '
                         f'| {_fmt(row["latency_max_ms"], 0)} | {row["dropped_busy"]} | '
                         f'{row["dropped_unmatched"]} | {_fmt(row["first_output_s"])} | '
                         f'{" ".join(row["params"])} |')
        if not step['rows']:
            lines.append(f'| {step["status"]}: {step["detail"]} | | | | | | | | | | |')
    lines += _table('Trust filters (one frame, mask and drop)', (
        'stage', 'size', 'device', 'median ms', 'min ms', 'note'))
    for step in steps:
        if step['kind'] != 'trust':
            continue
        for row in step['rows']:
            lines.append(f'| {row["stage"]} | {row["size"]} | {row["device"]} | '
                         f'{_fmt(row.get("median_ms"), 2)} | {_fmt(row.get("min_ms"), 2)} | '
                         f'{row.get("error", "")} |')
        if step['status'] != 'ok':
            lines.append(f'| {step["status"]}: {step["detail"]} | | | | | |')
    lines += _table('Several cameras: one node against separate nodes (FFS cffs_like)',
                    ('cameras', 'mode', 'size', 'total sets/s', 'per camera Hz',
                     'latency p50 ms', 'p99 ms', 'resident MiB'))
    for step in steps:
        if step['kind'] != 'cameras':
            continue
        for row in step['rows']:
            if 'error' in row:
                lines.append(f'| {row["cameras"]} | {row["mode"]} | | error: '
                             f'{row["error"][:100]} | | | | |')
                continue
            cams = row['per_camera']
            lines.append(
                f'| {row["cameras"]} | {row["mode"]} | {row["width"]}x{row["height"]} | '
                f'{_fmt(row["total_sets_per_s"], 2)} | '
                + ' / '.join(_fmt(c['hz'], 2) for c in cams) + ' | '
                + ' / '.join(_fmt(c['p50_ms'], 0) for c in cams) + ' | '
                + ' / '.join(_fmt(c['p99_ms'], 0) for c in cams)
                + f' | {_fmt(row["rss_mib"], 0)} |')
        if not step['rows']:
            lines.append(f'| {step["status"]}: {step["detail"]} | | | | | | | |')
    lines += _table('Steps', ('step', 'status', 'seconds', 'detail'))
    lines += [f'| {s["name"]} | {s["status"]} | {s["seconds"]:.0f} | {s["detail"]} |'
              for s in steps]
    return '\n'.join(lines) + '\n'


def _table(title: str, columns: tuple[str, ...]) -> list[str]:
    """Return the markdown lines that open a table: a blank line, its title, its header."""
    return ['', f'### {title}', '', '| ' + ' | '.join(columns) + ' |',
            '|' + ' --- |' * len(columns)]


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--out', default='gpu_check_out', help='folder for the .md and .json')
    parser.add_argument('--dry-run', action='store_true',
                        help='CPU, tiny sizes, one iteration (what CI runs)')
    parser.add_argument('--budget', type=float, default=0.0,
                        help='overall seconds (default: 440 on CUDA, 600 for the dry run)')
    parser.add_argument('--worker', nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        kind, spec = args.worker
        WORKERS[kind](json.loads(spec))
        return 0

    import torch
    plan = DRY if args.dry_run else FULL
    if not args.dry_run and not torch.cuda.is_available():
        parser.error('no CUDA device visible to torch; run with --dry-run to check the '
                     'script on the CPU')
    if args.budget > 0:
        plan = dataclasses.replace(plan, budget_s=args.budget)
    report = run_plan(plan, Path(args.out))
    failed = [s['name'] for s in report['steps'] if s['status'] in ('failed', 'timeout')]
    print(f'gpu_check: wrote {Path(args.out) / "gpu_check.md"} and gpu_check.json'
          + (f'; not ok: {", ".join(failed)}' if failed else ''))
    return 0


if __name__ == '__main__':
    sys.exit(main())

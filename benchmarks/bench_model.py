#!/usr/bin/env python3
r"""Latency and peak memory of the FoundationStereo family's networks on the present device.

One row per (implementation, vit size, resolution, iterations, precision, eager/compile).
Latency: min and median over ``--repeat`` calls after warm-up, in a fresh subprocess per
configuration; with ``--official`` both implementations run in that process and are called
alternately, so that load from other processes affects both alike (on a shared machine the
min is the steadier figure). Peak memory: the first call of each implementation in its own
fresh process, CUDA peak allocated memory or on CPU the peak resident set size (the kernel's
high-water mark is reset after setup) and its increase over the resident size after setup
(``+MB``). Weights are a seeded random initialisation (identical in every process) unless
``--checkpoint`` is given.

``--official /path/to/FoundationStereo`` also times the official code on the same inputs and
weights and prints our/official latency ratios. It runs from the project's own environment
(``scripts/setup.sh``), nothing more to install: the official code imports timm, torchvision,
huggingface_hub and demo-only packages, and where one is absent or fails to import (PyPI's
torchvision does not load beside the CPU torch wheel) a stand-in is injected at run time
(EdgeNeXt from this package, a Normalize transform, an empty hub mixin class, empty modules for
point-cloud and I/O libraries); DINOv2 is built from the repository's vendored copy instead of
torch.hub, and timm, when usable, is kept from downloading ImageNet weights. The note column
names the stand-ins used. Its cost-volume attention is the HEAD variant; the printed
max |difference| compares it with ours in that mode.
``ratio`` = our min latency / official min latency (below 1: ours is faster).

``--checkpoint`` may also be a Fast-FoundationStereo checkpoint (``model_best_bp2_serialize.pth``
or its converted ``.safetensors``); ``--vit`` is then ignored. With ``--official
/path/to/Fast-FoundationStereo`` (and the serialized ``.pth``) the official side loads that file
as ``scripts/run_demo.py`` does (``torch.load(weights_only=False)``, ``max_disp`` from our
config), with stand-ins injected at run time: timm's EdgeNeXt classes from this package,
OmegaConf containers as attribute dicts, empty ``imageio`` / ``open3d``, and ``torch.compile``
as the identity (the official helpers then run eagerly, as ``make_onnx.py`` runs them).

    PYTHONPATH=. python benchmarks/bench_model.py                     # CPU defaults
    PYTHONPATH=. python benchmarks/bench_model.py --official /path/to/FoundationStereo
    PYTHONPATH=. python benchmarks/bench_model.py --vit vits vitl --size 480x640 --iters 16 \
        --precision fp32 fp16 --mode eager compile --device cuda
    PYTHONPATH=. python benchmarks/bench_model.py --checkpoint ffs/model_best_bp2_serialize.pth \
        --official ~/Fast-FoundationStereo --size 64x96 224x320 --iters 8 --threads 2
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

from common import json_rows, worker_command

REPO_ROOT = Path(__file__).resolve().parent.parent
CPU_DEFAULT_SIZES = ['96x128', '128x160']
GPU_DEFAULT_SIZES = ['480x640']


# ----------------------------------------------------------------------------- worker side
def _rss_kib(field: str) -> int:
    with open('/proc/self/status') as status:
        for line in status:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    return 0


def _reset_peak_rss() -> bool:
    try:
        with open('/proc/self/clear_refs', 'w') as refs:
            refs.write('5')          # resets VmHWM to the current RSS
        return True
    except OSError:
        return False


class _AttrDict(dict):
    """Config readable as attributes and as a dict (what the official code expects)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError as err:
            raise AttributeError(name) from err


def _imports_cleanly(name: str, attribute: str = '') -> bool:
    """Whether ``name`` (and its lazily imported ``attribute``) imports.

    A package that is installed but fails to import counts as absent.

    PyPI's torchvision does not load beside the CPU torch wheel ("operator torchvision::nms
    does not exist"), and timm imports torchvision, so both can be installed yet unusable.
    The half-imported modules are dropped so that stand-ins can take their place.
    """
    import importlib
    try:
        module = importlib.import_module(name)
        if attribute:
            getattr(module, attribute)
        return True
    except Exception:  # noqa: BLE001 - any import-time failure means "use the stand-in"
        for key in [k for k in sys.modules if k == name or k.startswith(name + '.')]:
            del sys.modules[key]
        return False


def _import_official(repo: Path) -> tuple[Any, list[str]]:
    """Import the official FoundationStereo class, with stand-ins for unusable packages.

    Returns the class and the names of the packages replaced by stand-ins.
    """
    import importlib
    import importlib.util

    import torch

    os.environ.setdefault('XFORMERS_DISABLED', '1')
    replaced: list[str] = []

    def missing(name: str) -> bool:
        try:
            return importlib.util.find_spec(name) is None
        except (ImportError, ValueError):
            return True

    def stub(name: str, **attrs: Any) -> types.ModuleType:
        module = types.ModuleType(name)
        module.__dict__.update(attrs)
        sys.modules[name] = module
        return module

    # torchvision first: timm imports it, so timm is only usable when torchvision is.
    if not _imports_cleanly('torchvision'):
        class Normalize:
            def __init__(self, mean: Any, std: Any, inplace: bool = False) -> None:
                self.mean, self.std = mean, std

            def __call__(self, x: Any) -> Any:
                mean = torch.as_tensor(self.mean, dtype=x.dtype, device=x.device)
                std = torch.as_tensor(self.std, dtype=x.dtype, device=x.device)
                return (x - mean.view(-1, 1, 1)) / std.view(-1, 1, 1)
        tv = stub('torchvision')
        tv.transforms = stub('torchvision.transforms', Normalize=Normalize)
        replaced.append('torchvision')
    if _imports_cleanly('timm'):
        # The official feature network asks for ImageNet weights (a download); the benchmark
        # loads its own weights over them, so build the network without.
        timm = sys.modules['timm']
        timm_create = timm.create_model

        def create_model(name: str, pretrained: bool = False, **kwargs: Any) -> Any:
            return timm_create(name, pretrained=False, **kwargs)
        timm.create_model = create_model
    else:
        from foundation_stereo_ros.model.edgenext import edgenext_small

        def create_model(name: str, pretrained: bool = False, **kwargs: Any) -> Any:
            if name != 'edgenext_small':
                raise ValueError(f'timm stand-in only provides edgenext_small, not {name}')
            return edgenext_small()
        stub('timm', create_model=create_model)
        replaced.append('timm (EdgeNeXt from this package)')
    if not _imports_cleanly('huggingface_hub', 'PyTorchModelHubMixin'):
        # Only a base class of the official model (hub upload/download helpers).
        stub('huggingface_hub', PyTorchModelHubMixin=type('PyTorchModelHubMixin', (), {}))
        replaced.append('huggingface_hub')
    for name in ('einops', 'scipy', 'trimesh', 'imageio', 'joblib', 'pandas', 'open3d'):
        if missing(name):
            stub(name, rearrange=None)
    if 'scipy' in sys.modules and not hasattr(sys.modules['scipy'], 'interpolate'):
        sys.modules['scipy'].interpolate = stub('scipy.interpolate')

    hub_load = torch.hub.load

    def local_hub_load(repo_or_dir: str, model: str, *args: Any, **kwargs: Any) -> Any:
        if repo_or_dir == 'facebookresearch/dinov2':
            from dinov2.hub import backbones
            return getattr(backbones, model)(pretrained=False)
        return hub_load(repo_or_dir, model, *args, **kwargs)
    torch.hub.load = local_hub_load

    sys.path[:0] = [str(repo), str(repo / 'dinov2')]
    return importlib.import_module('core.foundation_stereo').FoundationStereo, replaced


class _OmegaConfStandIn:
    """Unpickling target for OmegaConf classes (the official FFS ``args``): keeps the state."""

    def __setstate__(self, state: Any) -> None:
        self.__dict__['state'] = state


def _omegaconf_plain(value: Any) -> Any:
    """Turn an unpickled OmegaConf container into plain data (mappings: :class:`_AttrDict`)."""
    if not isinstance(value, _OmegaConfStandIn):
        return value
    state = value.state if isinstance(value.state, dict) else {}
    content = state.get('_content')
    if isinstance(content, dict):
        return _AttrDict({k: _omegaconf_plain(v) for k, v in content.items()})
    if isinstance(content, list):
        return [_omegaconf_plain(v) for v in content]
    return _omegaconf_plain(state.get('_val'))


def _load_official_ffs(repo: Path, checkpoint: str, max_disp: int, amp_dtype: Any,
                       ) -> tuple[Any, list[str]]:
    """Load a serialized FFS checkpoint with the official classes (see the module docstring).

    Returns the model and the names of the packages replaced by stand-ins.
    """
    import importlib.util
    import pickle

    import torch

    from foundation_stereo_ros.model import edgenext, layers
    from foundation_stereo_ros.model.ffs.blocks import EdgeNeXtConvBlock

    def stub(name: str, **attrs: Any) -> types.ModuleType:
        module = sys.modules.get(name) or types.ModuleType(name)
        module.__dict__.update(attrs)
        sys.modules[name] = module
        return module

    def identity_compile(fn: Any = None, **_kwargs: Any) -> Any:
        return fn if fn is not None else (lambda f: f)
    torch.compile = identity_compile
    replaced = ['omegaconf (attribute dicts)', 'torch.compile (eager)']
    if importlib.util.find_spec('timm') is None:
        replaced.append('timm (EdgeNeXt from this package)')
        stub('timm', models=stub('timm.models', edgenext=stub(
            'timm.models.edgenext', EdgeNeXtStage=edgenext.EdgeNeXtStage,
            ConvBlock=EdgeNeXtConvBlock, SplitTransposeBlock=edgenext.SplitTransposeBlock,
            CrossCovarianceAttn=edgenext.CrossCovarianceAttention,
            PositionalEncodingFourier=edgenext.FourierPositionalEncoding)),
            layers=stub('timm.layers', mlp=stub('timm.layers.mlp', Mlp=layers.Mlp),
                        norm=stub('timm.layers.norm', LayerNorm2d=layers.LayerNorm2d)))
    for name in ('imageio', 'open3d'):
        if importlib.util.find_spec(name) is None:
            stub(name)
            replaced.append(name)
    sys.path[:0] = [str(repo)]

    stand_ins: dict[str, type] = {}

    class Unpickler(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            if module.startswith('omegaconf.'):
                return stand_ins.setdefault(name, type(name, (_OmegaConfStandIn,), {}))
            return super().find_class(module, name)
    pickle_module = types.SimpleNamespace(Unpickler=Unpickler, load=pickle.load,
                                          __name__='pickle')
    model = torch.load(checkpoint, map_location='cpu', weights_only=False,
                       pickle_module=pickle_module)
    plain: dict[int, Any] = {}
    for module in model.modules():
        for attr in ('args', 'cfg'):
            value = getattr(module, attr, None)
            if isinstance(value, _OmegaConfStandIn):
                setattr(module, attr, plain.setdefault(id(value), _omegaconf_plain(value)))
    model.args['max_disp'] = max_disp          # as run_demo.py overrides it
    model.args['mixed_precision'] = amp_dtype is not None
    if amp_dtype is not None:
        sys.modules['Utils'].AMP_DTYPE = amp_dtype
    return model, replaced


def _setup(spec: dict[str, Any], impls: list[str]
           ) -> tuple[dict[str, Any], Any, Any, Any, list[str]]:
    """Models (by implementation name), inputs, autocast dtype and the official stand-ins."""
    import torch

    from foundation_stereo_ros.model import build_model, load_checkpoint

    if spec['threads']:
        torch.set_num_threads(spec['threads'])
    device = torch.device(spec['device'])
    if device.type == 'cuda':
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    dtype = {'fp16': torch.float16, 'bf16': torch.bfloat16}.get(spec['precision'])
    torch.manual_seed(0)
    if spec['checkpoint']:
        ours, _ = load_checkpoint(spec['checkpoint'])
    else:
        ours = build_model({'vit_size': spec['vit']})
    ours.mixed_precision = dtype is not None
    if dtype is not None:
        ours.amp_dtype = dtype
    models = {}
    stand_ins: list[str] = []
    if 'official' in impls and getattr(ours, 'family', '') == 'fast_foundation_stereo':
        official, stand_ins = _load_official_ffs(Path(spec['official']), spec['checkpoint'],
                                                 ours.max_disp, dtype)
        models['official'] = official.to(device).eval()
    elif 'official' in impls:
        official_cls, stand_ins = _import_official(Path(spec['official']))
        official = official_cls(_AttrDict(dict(ours.cfg, mixed_precision=dtype is not None)))
        official.load_state_dict(ours.state_dict(), strict=True)
        models['official'] = official.to(device).eval()
    if 'ours' in impls:
        models['ours'] = ours.to(device).eval()
    else:
        del ours
    if spec['mode'] == 'compile':
        # Ours as the backend compiles it (per part, CUDA graphs for the update step on CUDA);
        # the official model as a whole.
        from foundation_stereo_ros.backends.compiled import compile_model
        for name, model in models.items():
            if name == 'ours':
                compile_model(model, device)
            else:
                models[name] = torch.compile(model)

    h, w = spec['size']
    gen = torch.Generator().manual_seed(1)
    left = (torch.rand(1, 3, h, w, generator=gen) * 255).round().to(device)
    right = torch.roll(left, shifts=-8, dims=-1)   # an 8-pixel shift plus a wrapped border
    return models, left, right, dtype, stand_ins


def _autocast(device: Any, dtype: Any) -> Any:
    import torch
    if dtype is None:
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(device.type, dtype=dtype)


def _time_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Measure the latency of ours and, if asked, of the official model.

    The official model is called alternately with ours so that load from other processes
    affects both alike.
    """
    import torch

    impls = ['ours'] + (['official'] if spec['official'] else [])
    models, left, right, dtype, stand_ins = _setup(spec, impls)
    device = left.device

    from foundation_stereo_ros.backends.compiled import mark_step

    def call(name: str) -> tuple[float, Any]:
        start = time.perf_counter()
        if spec['mode'] == 'compile' and name == 'ours':
            mark_step(device)
        out = models[name](left, right, iters=spec['iters'], test_mode=True)
        if device.type == 'cuda':
            torch.cuda.synchronize(device)
        return time.perf_counter() - start, out

    results: dict[str, Any] = {name: {} for name in impls}
    outputs = {}
    times: dict[str, list[float]] = {name: [] for name in impls}
    with torch.inference_mode(), _autocast(device, dtype):
        for name in impls:
            results[name]['first_ms'] = 1e3 * call(name)[0]
            for _ in range(spec['warmup']):
                call(name)
        for _ in range(spec['repeat']):
            for name in impls:
                elapsed, outputs[name] = call(name)
                times[name].append(elapsed)
        for name in impls:
            results[name]['median_ms'] = 1e3 * statistics.median(times[name])
            results[name]['min_ms'] = 1e3 * min(times[name])
            results[name]['finite'] = bool(torch.isfinite(outputs[name]).all())
        if 'official' in models:
            # The official cost-volume attention is the HEAD variant: compare in that mode.
            from foundation_stereo_ros.model.cost_attention import (
                ATTEND_HEADS,
                DisparityMultiheadAttention,
            )
            for module in models['ours'].modules():
                if isinstance(module, DisparityMultiheadAttention):
                    module.attention = ATTEND_HEADS
            heads = models['ours'](left, right, iters=spec['iters'], test_mode=True)
            results['official']['max_abs_diff'] = float(
                (heads.float() - outputs['official'].float()).abs().max())
            results['official']['stand_ins'] = stand_ins
    return results


def _memory_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Measure the peak memory of the first call of one implementation in a fresh process.

    On CUDA the peak allocated memory, on CPU the peak resident set size (high-water mark
    reset after setup).
    """
    import torch

    models, left, right, dtype, _ = _setup(spec, [spec['impl']])
    model = models[spec['impl']]
    device = left.device
    result: dict[str, Any] = {}
    with torch.inference_mode(), _autocast(device, dtype):
        if device.type == 'cuda':
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
            base = torch.cuda.memory_allocated(device)
            model(left, right, iters=spec['iters'], test_mode=True)
            peak = torch.cuda.max_memory_allocated(device)
            result = {'peak_mb': peak / 2 ** 20, 'extra_mb': (peak - base) / 2 ** 20}
        else:
            base = _rss_kib('VmRSS')
            if _reset_peak_rss():
                model(left, right, iters=spec['iters'], test_mode=True)
                peak = _rss_kib('VmHWM')
                result = {'peak_mb': peak / 1024, 'extra_mb': (peak - base) / 1024}
    return result


# ----------------------------------------------------------------------------- driver side
def _parse_size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split('x'))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f'size must be HxW, e.g. 96x128, got {text!r}') from err
    if h % 32 or w % 32:
        raise argparse.ArgumentTypeError(f'size {text} must have sides multiple of 32')
    return h, w


def _supported_precisions(device: str) -> list[str]:
    import torch
    if device.startswith('cuda'):
        return ['fp32', 'fp16'] + (['bf16'] if torch.cuda.is_bf16_supported() else [])
    # Autocast accepts bf16 on any CPU, but without native support (AVX512-BF16/AMX) oneDNN
    # emulates it and it is many times slower than fp32: only offered where it is native.
    return ['fp32'] + (['bf16'] if torch.ops.mkldnn._is_mkldnn_bf16_supported() else [])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--device', default='auto', help="'auto', 'cpu', 'cuda', 'cuda:N'")
    parser.add_argument('--vit', nargs='+', default=['vits'], choices=['vits', 'vitb', 'vitl'])
    parser.add_argument('--size', nargs='+', type=_parse_size, default=None,
                        help=f'HxW (default CPU {CPU_DEFAULT_SIZES}, GPU {GPU_DEFAULT_SIZES})')
    parser.add_argument('--iters', nargs='+', type=int, default=[4])
    parser.add_argument('--precision', nargs='+', default=['fp32'],
                        choices=['fp32', 'fp16', 'bf16', 'all'],
                        help="'all' = every precision the device supports")
    parser.add_argument('--mode', nargs='+', default=['eager'], choices=['eager', 'compile'])
    parser.add_argument('--repeat', type=int, default=3, help='timed calls per row')
    parser.add_argument('--warmup', type=int, default=1, help='untimed calls after the first')
    parser.add_argument('--threads', type=int, default=0, help='torch threads (0 = default)')
    parser.add_argument('--checkpoint', default='', help='real weights instead of seeded ones')
    parser.add_argument('--official', default='', help='official repository to compare with')
    parser.add_argument('--timeout', type=float, default=1800, help='seconds per row')
    parser.add_argument('--worker', default='', help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        spec = json.loads(args.worker)
        worker = _memory_worker if spec.get('impl') else _time_worker
        print(json.dumps(worker(spec)))
        return

    import torch
    device = args.device
    if device == 'auto':
        device = 'cuda' if torch.cuda.is_available() else 'cpu'
    sizes = args.size or [_parse_size(s) for s in (GPU_DEFAULT_SIZES if device != 'cpu'
                                                   else CPU_DEFAULT_SIZES)]
    supported = _supported_precisions(device)
    precisions = supported if 'all' in args.precision else args.precision
    for p in precisions:
        if p not in supported:
            parser.error(f'precision {p} is not supported on {device} (supported: {supported})')
    name = torch.cuda.get_device_name(device) if device.startswith('cuda') else (
        f'CPU, {torch.get_num_threads() if not args.threads else args.threads} threads')
    print(f'# torch {torch.__version__}, device {device} ({name}); latency over '
          f'{args.repeat} calls after {args.warmup + 1} warm-up; seeded weights'
          f'{"" if not args.checkpoint else " replaced by " + args.checkpoint}')
    header = (f'{"impl":8} {"vit":4} {"size":>9} {"it":>3} {"prec":4} {"mode":7} '
              f'{"median ms":>10} {"min ms":>9} {"1st call ms":>11} {"peak MB":>8} '
              f'{"+MB":>7} {"ratio":>6}  note')
    print(header)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(REPO_ROOT)] + [p for p in os.environ.get('PYTHONPATH', '').split(os.pathsep) if p]))
    for vit in args.vit:
        for size in sizes:
            for iters in args.iters:
                for precision in precisions:
                    for mode in args.mode:
                        spec = {'vit': vit, 'size': size, 'iters': iters,
                                'precision': precision, 'mode': mode, 'device': device,
                                'repeat': args.repeat, 'warmup': args.warmup,
                                'threads': args.threads, 'checkpoint': args.checkpoint,
                                'official': args.official}
                        label = 'ffs' if _is_ffs(args.checkpoint) else vit
                        row = f'{label:4} {size[0]:>4}x{size[1]:<4} {iters:>3} {precision:4} ' \
                              f'{mode:7}'
                        results = _run_worker(spec, env, args.timeout)
                        if 'error' in results:
                            print(f'{"ours":8} {row} {results["error"]}', flush=True)
                            continue
                        for impl, res in results.items():
                            memory = _run_worker(dict(spec, impl=impl), env, args.timeout)
                            ratio = ''
                            if impl == 'official':
                                ratio = f'{results["ours"]["min_ms"] / res["min_ms"]:.2f}'
                            note = '' if res['finite'] else 'NON-FINITE OUTPUT '
                            if 'max_abs_diff' in res:
                                note += f'max|ours(heads)-official| {res["max_abs_diff"]:.2e}'
                            if res.get('stand_ins'):
                                note += f'; stand-ins: {", ".join(res["stand_ins"])}'
                            if 'error' in memory:
                                note += f' memory: {memory["error"]}'
                            print(f'{impl:8} {row} {res["median_ms"]:>10.1f} '
                                  f'{res["min_ms"]:>9.1f} {res["first_ms"]:>11.1f} '
                                  f'{memory.get("peak_mb", 0):>8.0f} '
                                  f'{memory.get("extra_mb", 0):>7.0f} {ratio:>6}  {note}',
                                  flush=True)


def _is_ffs(checkpoint: str) -> bool:
    if not checkpoint:
        return False
    from foundation_stereo_ros.model.ffs.loader import is_ffs_checkpoint
    return is_ffs_checkpoint(checkpoint)


def _run_worker(spec: dict[str, Any], env: dict[str, str], timeout: float) -> dict[str, Any]:
    """Run one worker subprocess; its last stdout line is JSON (or an 'error' entry)."""
    try:
        proc = subprocess.run(worker_command(__file__, json.dumps(spec)), capture_output=True,
                              text=True, env=env, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {'error': f'timed out after {timeout:.0f} s'}
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ['?']
        return {'error': f'failed: {tail[0]}'}
    rows = json_rows(proc.stdout)
    return rows[-1] if rows else {'error': 'the worker printed no result'}


if __name__ == '__main__':
    main()

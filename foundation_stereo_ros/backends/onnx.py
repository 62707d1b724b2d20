"""An exported stereo network run by ONNX Runtime (TensorRT, CUDA or CPU underneath).

Accepted exports, recognised by their input and output names:

========================  ==============================  =====================================
inputs -> output          pixel values                    produced by
========================  ==============================  =====================================
``left, right -> disp``   RGB 0..255 (normalised inside)  this package's
                                                          ``python -m foundation_stereo_ros.
                                                          model.onnx_export``, or the official
                                                          FoundationStereo
                                                          ``scripts/make_onnx.py``
``left_image,             RGB, ImageNet-normalised:       the official Fast-FoundationStereo
right_image ->            ``(x / 255 - mean) / std``      ``scripts/make_single_onnx.py`` (the
disparity``                                               names Isaac ROS uses)
========================  ==============================  =====================================

All take (B, 3, H, W) float32 (or float16) images and return (B, 1, H, W) disparities in pixels of
the input they were given. This package's exports also output ``confidence`` (B, 1, H, W), the
network's confidence in [0, 1] (``model/confidence.py``); the backend reads it when the model has
it (:attr:`OnnxBackend.provides_confidence`). Exports have a fixed H and W:
:attr:`OnnxBackend.input_size` tells the pipeline, which resizes each pair to it and scales the
disparities back to camera pixels. Fast-FoundationStereo's two-file export
(``scripts/make_onnx.py``: a feature network and a post network with a Triton kernel between them)
cannot run as one ONNX model and is refused with what to do.

Execution providers, best first: TensorRT (fp16, engines cached on disk so they are built
once), CUDA, CPU. ``provider='auto'`` takes the best one this onnxruntime build offers; naming
one forces it.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml

from foundation_stereo_ros.backends.base import DisparityBackend
from foundation_stereo_ros.choices import ONNX_PROVIDERS as PROVIDERS
from foundation_stereo_ros.choices import PROVIDER_CHOICES, device_index
from foundation_stereo_ros.model.feature import normalize_image
from foundation_stereo_ros.model.stereo_network import DISPARITY_STEP

__all__ = ['FORMATS', 'PROVIDERS', 'OnnxBackend', 'OnnxFormat', 'default_trt_cache_dir']

LOG = logging.getLogger(__name__)

# Optional output of this package's export: the network's confidence (model/confidence.py).
CONFIDENCE_OUTPUT = 'confidence'


@dataclass(frozen=True)
class OnnxFormat:
    """One known export: its tensor names, the pixel values it expects and who produces it."""

    inputs: tuple[str, str]
    output: str
    imagenet: bool   # True: ImageNet-normalised input; False: RGB 0..255
    producers: str


FORMATS: tuple[OnnxFormat, ...] = (
    OnnxFormat(('left', 'right'), 'disp', False,
               'foundation_stereo_ros model/onnx_export.py or FoundationStereo '
               'scripts/make_onnx.py'),
    OnnxFormat(('left_image', 'right_image'), 'disparity', True,
               'Fast-FoundationStereo scripts/make_single_onnx.py'),
)

# Sidecar files the official exporters write next to the model (the model's settings).
_SIDECARS = ('{stem}.yaml', 'onnx.yaml', 'config.yaml', 'cfg.yaml')


def default_trt_cache_dir() -> Path:
    """Where TensorRT engines are cached unless told otherwise (XDG cache directory)."""
    base = os.environ.get('XDG_CACHE_HOME') or Path.home() / '.cache'
    return Path(base) / 'foundation_stereo_ros' / 'tensorrt'


class OnnxBackend(DisparityBackend):
    """Runs an exported FoundationStereo / Fast-FoundationStereo ONNX model.

    Options:

    - ``model``: path of the ``.onnx`` file.
    - ``provider``: ``'auto'`` (TensorRT, then CUDA, then CPU: the best available) or one of
      ``'tensorrt'``, ``'cuda'``, ``'cpu'`` to force it.
    - ``trt_cache_dir``: where TensorRT keeps built engines (``''``:
      :func:`default_trt_cache_dir`). The first start with a model builds its engine, which can
      take minutes; later starts load it in seconds.
    - ``trt_fp16``: let TensorRT run layers in fp16 (the official deployment's setting).
    - ``device``: ``'auto'``, ``'cuda'`` or ``'cuda:N'`` (GPU N for the TensorRT and CUDA
      providers), or ``'cpu'`` (the CPU provider), as for the PyTorch backend.
    """

    name = 'onnx'
    # Continuous output, as the PyTorch network it was exported from.
    delta_d = DISPARITY_STEP

    def __init__(
        self,
        model: str,
        provider: str = 'auto',
        trt_cache_dir: str = '',
        trt_fp16: bool = True,
        device: str = 'auto',
    ) -> None:
        import onnxruntime as ort  # heavy; only when this backend is asked for

        path = Path(model)
        if not str(model):
            raise ValueError("the onnx backend needs a model: model:=/path/to/model.onnx")
        if not path.is_file():
            raise FileNotFoundError(f'ONNX model not found: {path}')
        if provider not in PROVIDER_CHOICES:
            raise ValueError(f'provider must be one of {", ".join(PROVIDER_CHOICES)}, got '
                             f'{provider!r}')
        device_id = device_index(device) or 0  # GPU 0 unless cuda:N names another
        if device == 'cpu':
            if provider not in ('auto', 'cpu'):
                raise ValueError(f"device 'cpu' contradicts provider {provider!r}: use device "
                                 "'auto' or 'cuda:N' with a GPU provider, or provider 'cpu'")
            provider = 'cpu'
        self.model_path = path
        self.device = torch.device('cpu')   # inputs and outputs travel through host memory
        cache_dir = Path(trt_cache_dir) if trt_cache_dir else default_trt_cache_dir()
        providers = _provider_list(ort, provider, cache_dir, bool(trt_fp16), device_id)

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if providers[0][0] == PROVIDERS['tensorrt']:
            cache_dir.mkdir(parents=True, exist_ok=True)
            LOG.warning('onnx: TensorRT builds an engine for %s on first use; this can take '
                        'minutes (ONNX Runtime reports no progress). It is cached in %s and '
                        'loads in seconds afterwards.', path.name, cache_dir)
        try:
            self.session = ort.InferenceSession(str(path), sess_options=options,
                                                providers=providers)
        except Exception as exc:  # onnxruntime raises its own, unexported exception types
            raise ValueError(f'ONNX Runtime could not load {path}: {exc}') from exc
        self.provider = self.session.get_providers()[0]
        if provider != 'auto' and self.provider != PROVIDERS[provider]:
            raise ValueError(f'provider {provider!r} could not be started for {path.name} (ONNX '
                             f'Runtime fell back to {self.provider}); check the CUDA/TensorRT '
                             "libraries it logged about, or use provider 'auto'")

        self.format = _recognise(self.session, path)
        # Exports of this package carry a confidence output; the official ones do not.
        self.provides_confidence = CONFIDENCE_OUTPUT in {
            o.name for o in self.session.get_outputs()}
        self._told_no_confidence = False
        self._input_types = [_NUMPY_TYPES[i.type] for i in self.session.get_inputs()]
        batch, _, height, width = self.session.get_inputs()[0].shape
        self.input_size = ((height, width) if isinstance(height, int) and isinstance(width, int)
                           else None)
        self.max_batch = batch if isinstance(batch, int) else None
        # The file's own metadata (this package's export) wins over a YAML beside it.
        self.metadata = _sidecar_settings(path)
        self.metadata.update(self.session.get_modelmeta().custom_metadata_map)
        max_disp = self.metadata.get('max_disp')
        self.max_disparity = float(max_disp) if max_disp not in (None, '') else None
        self._check_output()
        LOG.info('onnx: %s (%s) on %s, input %s', path.name, self.format.producers,
                 self.provider, 'any size' if self.input_size is None
                 else f'{self.input_size[1]}x{self.input_size[0]}')
        if self.provider == PROVIDERS['tensorrt']:
            self._build_engine()

    def compute(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        """(3, H, W) RGB 0..255 CPU tensors -> (H, W) float32 disparity in pixels.

        The iteration count and the rest were fixed at export: nothing to set per pair.
        """
        self.check_pair(left, right)
        return self.compute_batch(left[None], right[None])[0]

    def compute_batch(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) RGB 0..255 -> (B, H, W); split to the model's batch size if fixed."""
        return self._compute(left, right, confidence=False)[0]

    def compute_batch_with_confidence(self, left: torch.Tensor, right: torch.Tensor,
                                      ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Disparities as :meth:`compute_batch` and the model's (B, H, W) confidence.

        None for a model without a ``confidence`` output (the official exports); that is
        logged once.
        """
        if not self.provides_confidence and not self._told_no_confidence:
            LOG.warning('onnx: %s has no %r output (only exports of this package have one): '
                        'this model publishes no confidence', self.model_path.name,
                        CONFIDENCE_OUTPUT)
            self._told_no_confidence = True
        return self._compute(left, right, confidence=self.provides_confidence)

    def _compute(self, left: torch.Tensor, right: torch.Tensor, confidence: bool,
                 ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.input_size is not None and tuple(left.shape[-2:]) != self.input_size:
            raise ValueError(f'onnx: {self.model_path.name} was exported for '
                             f'{self.input_size[1]}x{self.input_size[0]} images, got '
                             f'{left.shape[-1]}x{left.shape[-2]}; run it through the pipeline, '
                             'which resizes pairs to the model size')
        step = self.max_batch or left.shape[0]
        parts = [self._run(left[i:i + step], right[i:i + step], confidence)
                 for i in range(0, left.shape[0], step)]
        disparity = torch.cat([p[0] for p in parts])
        return disparity, torch.cat([p[1] for p in parts]) if confidence else None

    def describe(self) -> dict[str, str]:
        """Model identity and the provider it runs on, for diagnostics."""
        info = super().describe()
        info.update({
            'model': str(self.model_path),
            'format': self.format.producers,
            'provider': self.provider,
            'input_size': ('any' if self.input_size is None
                           else f'{self.input_size[1]}x{self.input_size[0]}'),
        })
        for key in ('producer', 'family', 'valid_iters', 'vit_size'):
            if key in self.metadata:
                info[key] = str(self.metadata[key])
        return info

    def _run(self, left: torch.Tensor, right: torch.Tensor, confidence: bool = False,
             ) -> tuple[torch.Tensor, torch.Tensor | None]:
        feeds = {}
        for name, image, dtype in zip(self.format.inputs, (left, right), self._input_types):
            image = image.float()
            if self.format.imagenet:
                image = normalize_image(image)
            feeds[name] = np.ascontiguousarray(image.cpu().numpy(), dtype=dtype)
        names = [self.format.output] + ([CONFIDENCE_OUTPUT] if confidence else [])
        outputs = [torch.from_numpy(np.asarray(out, dtype=np.float32))
                   for out in self.session.run(names, feeds)]
        expected = (left.shape[0], *left.shape[-2:])
        if outputs[0].shape not in (expected, (expected[0], 1, *expected[1:])):
            raise ValueError(self._output_problem(tuple(outputs[0].shape), expected))
        outputs = [out.reshape(expected) for out in outputs]
        return outputs[0], (outputs[1].clamp(0.0, 1.0) if confidence else None)

    def _output_problem(self, shape: tuple, expected: tuple) -> str:
        batch, height, width = expected
        return (f'{self.model_path.name}: output {self.format.output} has shape {shape} for '
                f'inputs of shape ({batch}, 3, {height}, {width}); expected one disparity per '
                f'pixel, ({batch}, 1, {height}, {width}) or ({batch}, {height}, {width}): '
                'export the network with its full-resolution disparity as that output')

    def _check_output(self) -> None:
        """Refuse at start an output that is not one disparity per input pixel.

        From the declared shape where it says enough, else from one inference on a dummy
        pair when the input size is fixed (a (B, 2, H, W) or half-size output would
        otherwise fail every pair).
        """
        (output,) = [o for o in self.session.get_outputs() if o.name == self.format.output]
        batch, _, height, width = self.session.get_inputs()[0].shape
        shape = list(output.shape)
        rank_ok = len(shape) == 3 or (
            len(shape) == 4 and not (isinstance(shape[1], int) and shape[1] != 1))
        dims = shape[-2:] if rank_ok else []
        known = [isinstance(d, int) for d in (height, width, *dims)]
        size = (batch if isinstance(batch, int) else 1, height, width)
        if not rank_ok or (all(known) and dims != [height, width]):
            raise ValueError(self._output_problem(
                tuple(d if d not in (None, '') else '?' for d in shape), size))
        # The TensorRT engine build runs one dummy pair anyway (_build_engine).
        if not all(known) and self.input_size is not None and \
                self.provider != PROVIDERS['tensorrt']:
            dummy = torch.full((size[0], 3, *self.input_size), 127.0)
            self._run(dummy, dummy)  # raises the same message for a wrong shape

    def _build_engine(self) -> None:
        """Run once on a dummy pair so TensorRT builds (or loads) its engine now, not mid-run."""
        if self.input_size is None:
            return  # the engine depends on the first real size; it is built then
        start = time.monotonic()
        LOG.warning('onnx: preparing the TensorRT engine for %s ...', self.model_path.name)
        dummy = torch.full((1, 3, *self.input_size), 127.0)
        self._run(dummy, dummy)
        LOG.warning('onnx: TensorRT engine ready after %.0f s', time.monotonic() - start)


_NUMPY_TYPES = {'tensor(float)': np.float32, 'tensor(float16)': np.float16}


def _provider_list(ort, provider: str, cache_dir: Path, fp16: bool,
                   device_id: int) -> list[tuple[str, dict]]:
    """List providers with their options, best first, for ``InferenceSession``."""
    available = ort.get_available_providers()
    if provider == 'auto':
        wanted = [name for name in PROVIDERS.values() if name in available]
    else:
        if PROVIDERS[provider] not in available:
            raise ValueError(
                f'provider {provider!r} is not available in this onnxruntime '
                f'{ort.__version__} (it offers {", ".join(available)}); install '
                "onnxruntime-gpu (TensorRT also needs its libraries) or use provider 'cpu'")
        # CPU stays last: ONNX Runtime gives it the few operators a GPU provider lacks.
        wanted = list(dict.fromkeys([PROVIDERS[provider], PROVIDERS['cpu']]))
    options = {
        PROVIDERS['tensorrt']: {
            'device_id': device_id, 'trt_fp16_enable': fp16,
            'trt_engine_cache_enable': True, 'trt_engine_cache_path': str(cache_dir),
            'trt_timing_cache_enable': True, 'trt_timing_cache_path': str(cache_dir)},
        PROVIDERS['cuda']: {'device_id': device_id},
        PROVIDERS['cpu']: {},
    }
    return [(name, options[name]) for name in wanted]


def _recognise(session, path: Path) -> OnnxFormat:
    """Return the known format with the model's tensor names; ValueError if none fits."""
    inputs = [i.name for i in session.get_inputs()]
    outputs = [o.name for o in session.get_outputs()]
    expected = '; '.join(f'{", ".join(f.inputs)} -> {f.output} ({f.producers})'
                         for f in FORMATS)
    found = f'inputs {", ".join(inputs) or "none"} -> outputs {", ".join(outputs) or "none"}'
    if any(name.startswith('features_left') for name in outputs) or 'gwc_volume' in inputs:
        raise ValueError(
            f'{path.name} is one half of Fast-FoundationStereo\'s two-file export '
            '(scripts/make_onnx.py: feature_runner.onnx and post_runner.onnx with a Triton '
            'kernel between them), which cannot run as one ONNX model; export a single file '
            'with scripts/make_single_onnx.py, or with python -m '
            'foundation_stereo_ros.model.onnx_export')
    for fmt in FORMATS:
        if sorted(inputs) == sorted(fmt.inputs) and fmt.output in outputs:
            _check_image_inputs(session, path, found)
            return fmt
    raise ValueError(f'{path.name} is not a stereo export this backend knows: it has {found}; '
                     f'expected {expected}')


def _check_image_inputs(session, path: Path, found: str) -> None:
    for tensor in session.get_inputs():
        shape = tensor.shape
        if len(shape) != 4 or shape[1] != 3 or tensor.type not in _NUMPY_TYPES:
            raise ValueError(
                f'{path.name}: input {tensor.name} is {tensor.type} of shape {shape}; expected '
                f'float images of shape (batch, 3, height, width) ({found})')


def _sidecar_settings(path: Path) -> dict[str, object]:
    """Read max_disp / valid_iters from the YAML the official exporters write beside it."""
    for pattern in _SIDECARS:
        sidecar = path.parent / pattern.format(stem=path.stem)
        if sidecar.is_file():
            try:
                settings = yaml.safe_load(sidecar.read_text(encoding='utf-8'))
            except (OSError, yaml.YAMLError):
                continue
            if isinstance(settings, dict):
                return {key: settings[key] for key in ('max_disp', 'valid_iters')
                        if key in settings}
    return {}

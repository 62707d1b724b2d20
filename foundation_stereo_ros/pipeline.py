"""The stereo pipeline: a rectified pair and its camera in, disparity, depth and points out.

One object used by the node, the offline tools and the benchmarks, so every path runs the same
code. Tensors stay on the backend's device from upload to the very end; the only host copies
are the final outputs someone asked for.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from foundation_stereo_ros import geometry, settings
from foundation_stereo_ros.backends.base import DisparityBackend
from foundation_stereo_ros.camera import StereoCamera
from foundation_stereo_ros.settings import DEFAULTS

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class PipelineConfig:
    """Settings that may change between pairs (the node applies them from the next pair).

    scale: run the backend on the pair resized by this factor; outputs are still at camera
        resolution, with disparity values rescaled to camera pixels. A backend with a fixed
        input size (an exported network) is always run at that size instead.
    z_near, z_far: depth and points outside [z_near, z_far] metres are NaN (no return).
    remove_invisible: disparities whose match falls left of the right image are invalid.
    backend_options: the backend's per-pair settings (``valid_iters``...), passed to
        ``backend.compute_batch``.
    Defaults and ranges are those of :mod:`foundation_stereo_ros.settings`.
    """

    scale: float = DEFAULTS['scale']
    z_near: float = DEFAULTS['z_near']
    z_far: float = DEFAULTS['z_far']
    remove_invisible: bool = DEFAULTS['remove_invisible']
    backend_options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                  if f.name != 'backend_options'}
        values.update(self.backend_options)
        errors = [r for r in (settings.check_value(k, v) for k, v in values.items()) if r]
        errors.extend(settings.check_together(values))
        if errors:
            raise ValueError('; '.join(errors))
        # An immutable snapshot: the worker reads it while the node replaces it.
        object.__setattr__(self, 'backend_options', MappingProxyType(dict(self.backend_options)))


class PipelineOutOfMemory(RuntimeError):
    """The device ran out of memory on one pair; the pipeline is usable for the next."""


@dataclass
class StereoResult:
    """Outputs for one pair, at camera resolution, on the host.

    disparity: (H, W) float32 in camera pixels, DisparityImage convention
        d = x_l - x_r - (cx_l - cx_r); NaN where invalid.
    depth: (H, W) float32 metres, NaN = no return (REP 118); None when not requested.
    points: (H, W, 3) float32 x, y, z in the left optical frame, NaN where invalid; None when
        not requested.
    min_disparity, max_disparity, delta_d: the search range and resolution in camera pixels,
        for stereo_msgs/DisparityImage.
    timings: seconds per stage ('upload', 'inference', 'postprocess', 'download').
    """

    disparity: np.ndarray
    depth: np.ndarray | None
    points: np.ndarray | None
    min_disparity: float
    max_disparity: float
    delta_d: float
    timings: dict[str, float] = field(default_factory=dict)


class StereoPipeline:
    """Runs a disparity backend and turns its output into metric geometry."""

    def __init__(self, backend: DisparityBackend, config: PipelineConfig | None = None) -> None:
        self.backend = backend
        self._config = config or PipelineConfig()
        self._lock = threading.Lock()
        self._size_warned: set[tuple[int, int]] = set()  # camera sizes warned about
        self._upload = _Uploader(backend.device)

    @property
    def config(self) -> PipelineConfig:
        """Return the settings the next pair will use."""
        return self._config

    def update_config(self, **changes: Any) -> PipelineConfig:
        """Validate and apply changed settings atomically; raises ValueError with the reason.

        Takes pipeline settings (``scale``...) and the backend's per-pair settings
        (``valid_iters``...) by name; the next :meth:`process` call uses them all.
        """
        with self._lock:
            fields = {f.name for f in dataclasses.fields(PipelineConfig)}
            backend = {k: v for k, v in changes.items() if k not in fields}
            own = {k: v for k, v in changes.items() if k in fields}
            if backend:
                own['backend_options'] = {**self._config.backend_options, **backend}
            self._config = dataclasses.replace(self._config, **own)
            return self._config

    def process(
        self,
        left: np.ndarray,
        right: np.ndarray,
        camera: StereoCamera,
        *,
        want_depth: bool = True,
        want_points: bool = True,
    ) -> StereoResult:
        """Compute disparity (and depth, points when wanted) for one rectified RGB pair.

        left, right: (H, W, 3) uint8 RGB images matching ``camera.width`` x ``camera.height``,
        numpy arrays or torch tensors (e.g. rectified on the device by
        :class:`~foundation_stereo_ros.rectification.StereoRectifier`).
        """
        return self.process_batch([(left, right)], camera, want_depth=want_depth,
                                  want_points=want_points)[0]

    def process_batch(
        self,
        pairs: Sequence[tuple[np.ndarray, np.ndarray]],
        camera: StereoCamera,
        *,
        want_depth: bool = True,
        want_points: bool = True,
    ) -> list[StereoResult]:
        """:meth:`process` for several pairs of one camera, run through the backend at once.

        The backend sees one (B, 3, h, w) batch (see ``DisparityBackend.compute_batch``);
        each result's timings are the batch's stage times divided by B.
        """
        config = self._config  # one consistent snapshot for the whole batch
        if not pairs:
            return []
        for left, right in pairs:
            _check_pair(left, right, camera)
        device = self.backend.device
        timings: dict[str, float] = {}
        clock = _StageClock(device, timings)

        height, width = camera.height, camera.width
        run_h, run_w = self._run_size(height, width, config)
        uploaded = [(self._upload(f'left{i}', left), self._upload(f'right{i}', right))
                    for i, (left, right) in enumerate(pairs)]
        for left_t, right_t in uploaded:
            self.backend.check_pair(left_t, right_t)
        lefts = torch.stack([left_t for left_t, _ in uploaded])
        rights = torch.stack([right_t for _, right_t in uploaded])
        if (run_h, run_w) != (height, width):
            lefts = _resize_images(lefts, run_h, run_w)
            rights = _resize_images(rights, run_h, run_w)
        clock.lap('upload')

        try:
            raws = self.backend.compute_batch(lefts, rights, **config.backend_options)
        except torch.cuda.OutOfMemoryError as exc:
            if device.type == 'cuda':
                torch.cuda.empty_cache()
            raise PipelineOutOfMemory(
                f'{device} out of memory on {len(pairs)} {width}x{height} pair(s) ({exc}); '
                'lower scale, use precision fp16/bf16 or hierarchical') from exc
        clock.lap('inference')

        # Back to camera pixels: disparity is a horizontal length, so it scales with width.
        x_scale = width / run_w
        outputs = [self._geometry(raw, camera, config, x_scale, want_depth, want_points)
                   for raw in raws]
        clock.lap('postprocess')

        results = [
            StereoResult(
                disparity=disparity.cpu().numpy(),
                depth=depth.cpu().numpy() if (want_depth and depth is not None) else None,
                points=points.cpu().numpy() if points is not None else None,
                min_disparity=float(self.backend.min_disparity) * x_scale,
                max_disparity=(
                    float(self.backend.max_disparity) * x_scale
                    if self.backend.max_disparity is not None else math.inf),
                delta_d=float(self.backend.delta_d) * x_scale,
                timings=timings,
            )
            for disparity, depth, points in outputs]
        clock.lap('download')
        share = {stage: seconds / len(results) for stage, seconds in timings.items()}
        for result in results:
            result.timings = dict(share)
        return results

    def _run_size(self, height: int, width: int, config: PipelineConfig) -> tuple[int, int]:
        """(h, w) the backend runs at: its fixed input size, else the camera size x scale."""
        fixed = self.backend.input_size
        if fixed is None:
            if config.scale == 1.0:
                return height, width
            return max(1, round(height * config.scale)), max(1, round(width * config.scale))
        run_h, run_w = fixed
        if (height, width) not in self._size_warned and (run_h, run_w) != (height, width):
            self._size_warned.add((height, width))
            # Resizing to another aspect ratio stretches the scene: disparities are rescaled
            # with the width, which is exact, but the network sees distorted shapes.
            if abs((run_w / width) / (run_h / height) - 1.0) > 0.01:
                LOG.warning(
                    'the %s model runs at %dx%d but the camera is %dx%d (another aspect '
                    'ratio): images are stretched to fit, which can cost accuracy; export the '
                    'model at a size with the camera\'s aspect ratio', self.backend.name,
                    run_w, run_h, width, height)
            if config.scale != 1.0:
                LOG.warning('scale %g is ignored: the %s model has a fixed input size %dx%d',
                            config.scale, self.backend.name, run_w, run_h)
        return run_h, run_w

    def _geometry(self, raw: torch.Tensor, camera: StereoCamera, config: PipelineConfig,
                  x_scale: float, want_depth: bool, want_points: bool,
                  ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Backend disparity at run size -> (disparity, depth, points) at camera size."""
        if tuple(raw.shape) != (camera.height, camera.width):
            raw = _resize_disparity(raw, camera.height, camera.width) * x_scale
        disparity = raw.float() - camera.doffs  # DisparityImage convention
        invalid = ~(disparity > 0)  # also catches NaN
        if config.remove_invisible:
            invalid |= geometry.invisible_mask(disparity, camera.doffs)
        disparity = torch.where(invalid, torch.nan, disparity)

        depth = points = None
        if want_depth or want_points:
            depth = geometry.disparity_to_depth(disparity, camera)
            depth = geometry.apply_z_range(depth, config.z_near, config.z_far)
            if want_points:
                points = geometry.depth_to_points(depth, camera)
        return disparity, depth, points


class _StageClock:
    """Wall time per stage; synchronises CUDA at stage ends so each stage is charged its own."""

    def __init__(self, device: torch.device, timings: dict[str, float]) -> None:
        self._cuda = device.type == 'cuda'
        self._timings = timings
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        if self._cuda:
            torch.cuda.synchronize()
        now = time.perf_counter()
        self._timings[stage] = now - self._last
        self._last = now


def _check_pair(left: np.ndarray | torch.Tensor, right: np.ndarray | torch.Tensor,
                camera: StereoCamera) -> None:
    # The backend checks the pair itself (backend.check_pair); here: the input contract
    # (numpy arrays or tensors) and the camera, which the backend does not know.
    for name, image in (('left', left), ('right', right)):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype not in (np.uint8, torch.uint8):
            raise ValueError(
                f'{name} image must be (H, W, 3) uint8 RGB, got shape {image.shape} '
                f'dtype {image.dtype}; convert it with conversions.image_to_rgb8')
    if (left.shape[1], left.shape[0]) != (camera.width, camera.height):
        raise ValueError(
            f'images are {left.shape[1]}x{left.shape[0]} but the camera is '
            f'{camera.width}x{camera.height}; publish CameraInfo that matches the images')


class _Uploader:
    """(H, W, 3) uint8 images -> (3, H, W) float32 tensors on the device, in reused buffers.

    The uint8 bytes travel (4x less traffic than float) and are converted on the device. On
    CUDA they go through a page-locked host buffer per slot, so the copy is a real
    asynchronous DMA (pinning memory per pair would cost more than the copy). Every buffer is
    kept while the size stays, so a steady camera allocates nothing per pair. A slot's tensor
    is valid until that slot's next upload: one pipeline processes one pair at a time.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._buffers: dict[tuple[str, str], torch.Tensor] = {}
        self._copied: dict[str, torch.cuda.Event] = {}

    def __call__(self, slot: str, image: np.ndarray | torch.Tensor) -> torch.Tensor:
        # A tensor may already be on the device (a pair the rectifier resampled there).
        host = (image if isinstance(image, torch.Tensor)
                else torch.from_numpy(np.ascontiguousarray(image)))
        if self.device.type == 'cuda' and host.device.type == 'cpu':
            host = self._to_cuda(slot, host)
        elif host.device != self.device:
            host = host.to(self.device)
        chw = host.permute(2, 0, 1)
        out = self._buffer(slot, 'float', chw.shape, torch.float32, self.device)
        out.copy_(chw)
        return out

    def _to_cuda(self, slot: str, host: torch.Tensor) -> torch.Tensor:
        if slot in self._copied:
            self._copied[slot].synchronize()   # the previous pair's DMA has left the buffer
        pinned = self._buffer(slot, 'pinned', host.shape, torch.uint8, torch.device('cpu'),
                              pin_memory=True)
        pinned.copy_(host)
        on_device = self._buffer(slot, 'uint8', host.shape, torch.uint8, self.device)
        on_device.copy_(pinned, non_blocking=True)
        self._copied.setdefault(slot, torch.cuda.Event()).record()
        return on_device

    def _buffer(self, slot: str, kind: str, shape: torch.Size, dtype: torch.dtype,
                device: torch.device, pin_memory: bool = False) -> torch.Tensor:
        buffer = self._buffers.get((slot, kind))
        if buffer is None or buffer.shape != shape:
            buffer = torch.empty(shape, dtype=dtype, device=device, pin_memory=pin_memory)
            self._buffers[(slot, kind)] = buffer
        return buffer


def _resize_images(images: torch.Tensor, height: int, width: int) -> torch.Tensor:
    # Bilinear like the official demo's cv2.resize(INTER_LINEAR) downscale.
    return F.interpolate(images, size=(height, width), mode='bilinear', align_corners=False)


def _resize_disparity(disparity: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bilinear upsampling that never blends a valid disparity with an invalid (NaN) one."""
    valid = torch.isfinite(disparity)
    filled = torch.where(valid, disparity, 0.0)[None, None]
    up = F.interpolate(filled, size=(height, width), mode='bilinear', align_corners=False)[0, 0]
    weight = F.interpolate(valid.float()[None, None], size=(height, width), mode='bilinear',
                           align_corners=False)[0, 0]
    # Pixels whose neighbourhood was entirely valid keep their value; mixed ones are invalid.
    return torch.where(weight > 0.999, up, torch.nan)

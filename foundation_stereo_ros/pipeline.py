"""The stereo pipeline: a rectified pair and its camera in, disparity, depth and points out.

One object used by the node, the offline tools and the benchmarks, so every path runs the same
code. Tensors stay on the backend's device from upload to the very end; the only host copies
are the final outputs someone asked for.

After the disparity come the stages that decide what to trust (:mod:`.trust`), each run only
when its setting is on (or, for the confidence map, when someone asks for it): the left-right
check (the mirrored pair as a second batch half), the confidence threshold, the flying-pixel
filter on depth and the denoising of the organized cloud. Dropped pixels are NaN in every
output; the share each stage removed comes with the result (:mod:`.empty_output`).
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

from foundation_stereo_ros import empty_output, geometry, settings, trust
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
    left_right_check, left_right_max_diff: drop pixels whose left and right disparities (the
        mirror trick) differ by more than this many pixels at the run size.
    confidence_threshold: drop pixels whose confidence is below it (0: off).
    edge_rtol: drop flying pixels, where the relative depth spread in a 3x3 window exceeds it
        (0: off).
    denoise_radius, denoise_min_neighbors: drop points with fewer neighbours within the
        radius (metres; 0: off).
    backend_options: the backend's per-pair settings (``valid_iters``...), passed to
        ``backend.compute_batch``.
    Defaults and ranges are those of :mod:`foundation_stereo_ros.settings`.
    """

    scale: float = DEFAULTS['scale']
    z_near: float = DEFAULTS['z_near']
    z_far: float = DEFAULTS['z_far']
    remove_invisible: bool = DEFAULTS['remove_invisible']
    left_right_check: bool = DEFAULTS['left_right_check']
    left_right_max_diff: float = DEFAULTS['left_right_max_diff']
    confidence_threshold: float = DEFAULTS['confidence_threshold']
    edge_rtol: float = DEFAULTS['edge_rtol']
    denoise_radius: float = DEFAULTS['denoise_radius']
    denoise_min_neighbors: int = DEFAULTS['denoise_min_neighbors']
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
    confidence: (H, W) float32 in [0, 1]: the backend's confidence times the left-right
        agreement where the check runs, or either alone (README, Depth you can trust); 0
        where the disparity is invalid; None when not requested or when neither the backend
        nor the left-right check gives one (``notices`` then says why).
    removed: share of all pixels each stage removed (:data:`.empty_output.STAGES`, a pixel
        counted under the first stage that drops it; 'z_range' drops depth and points only).
    valid_share: share of pixels left with a valid depth.
    notices: (kind, message) for the user, to be shown once per kind: no confidence to be had,
        or why the output is (almost) empty.
    """

    disparity: np.ndarray
    depth: np.ndarray | None
    points: np.ndarray | None
    min_disparity: float
    max_disparity: float
    delta_d: float
    timings: dict[str, float] = field(default_factory=dict)
    confidence: np.ndarray | None = None
    removed: dict[str, float] = field(default_factory=dict)
    valid_share: float = math.nan
    notices: list[tuple[str, str]] = field(default_factory=list)


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
        want_confidence: bool = False,
    ) -> StereoResult:
        """Compute disparity (and depth, points, confidence when wanted) for one RGB pair.

        left, right: (H, W, 3) uint8 RGB images matching ``camera.width`` x ``camera.height``,
        numpy arrays or torch tensors (e.g. rectified on the device by
        :class:`~foundation_stereo_ros.rectification.StereoRectifier`).
        """
        return self.process_batch([(left, right)], camera, want_depth=want_depth,
                                  want_points=want_points, want_confidence=want_confidence)[0]

    def process_batch(
        self,
        pairs: Sequence[tuple[np.ndarray, np.ndarray]],
        camera: StereoCamera | Sequence[StereoCamera],
        *,
        want_depth: bool = True,
        want_points: bool = True,
        want_confidence: bool = False,
    ) -> list[StereoResult]:
        """:meth:`process` for several pairs, run through the backend at once.

        ``camera``: one camera for every pair, or one per pair (several stereo cameras of
        the same image size: each result has its own camera's geometry). The backend sees one
        (B, 3, h, w) batch (see ``DisparityBackend.compute_batch``), or (2B, 3, h, w) with the
        left-right check (the mirrored pairs as the second half), and the whole batch uses one
        config snapshot; each result's timings are the batch's stage times divided by B.
        """
        config = self._config  # one consistent snapshot for the whole batch
        if not pairs:
            return []
        cameras = ([camera] * len(pairs) if isinstance(camera, StereoCamera)
                   else list(camera))
        if len(cameras) != len(pairs):
            raise ValueError(f'{len(pairs)} pairs but {len(cameras)} cameras: give one camera, '
                             'or one per pair')
        sizes = {(c.width, c.height) for c in cameras}
        if len(sizes) > 1:
            raise ValueError(
                'a batch runs pairs of one size, got cameras of '
                + ', '.join(f'{w}x{h}' for w, h in sorted(sizes))
                + '; process each size in its own batch')
        for (left, right), pair_camera in zip(pairs, cameras):
            _check_pair(left, right, pair_camera)
        device = self.backend.device
        timings: dict[str, float] = {}
        clock = _StageClock(device, timings)

        height, width = cameras[0].height, cameras[0].width
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

        need_confidence = want_confidence or config.confidence_threshold > 0.0
        notices = self._confidence_notices(config, want_confidence)
        try:
            raws, confidences = self._disparities(lefts, rights, config, need_confidence)
        except torch.cuda.OutOfMemoryError as exc:
            if device.type == 'cuda':
                torch.cuda.empty_cache()
            raise PipelineOutOfMemory(
                f'{device} out of memory on {len(pairs)} {width}x{height} pair(s) ({exc}); '
                'lower scale, use precision fp16/bf16 or hierarchical'
                + ('; left_right_check doubles the batch: turn it off' if
                   config.left_right_check else '')) from exc
        clock.lap('inference')

        raws, confidences, keeps = self._left_right(raws, confidences, len(pairs), config,
                                                    need_confidence)

        # Back to camera pixels: disparity is a horizontal length, so it scales with width.
        x_scale = width / run_w
        outputs = [self._geometry(raw, confidence, keep, pair_camera, config, x_scale,
                                  want_depth, want_points)
                   for raw, confidence, keep, pair_camera in zip(raws, confidences, keeps,
                                                                 cameras)]
        clock.lap('postprocess')

        results = []
        for out, pair_camera in zip(outputs, cameras):
            shares = out.shares.cpu().tolist()  # the one small host copy the figures need
            removed = dict(zip(empty_output.STAGES, shares[:-1]))
            result = StereoResult(
                disparity=out.disparity.cpu().numpy(),
                depth=out.depth.cpu().numpy() if want_depth else None,
                points=out.points.cpu().numpy() if want_points else None,
                min_disparity=float(self.backend.min_disparity) * x_scale,
                max_disparity=(
                    float(self.backend.max_disparity) * x_scale
                    if self.backend.max_disparity is not None else math.inf),
                delta_d=float(self.backend.delta_d) * x_scale,
                confidence=(out.confidence.cpu().numpy()
                            if want_confidence and out.confidence is not None else None),
                removed=removed, valid_share=shares[-1], notices=list(notices))
            if shares[-1] < empty_output.EMPTY_SHARE:  # the figures cost syncs: only then
                kind, message = empty_output.explain(removed, shares[-1], out.facts(pair_camera),
                                                     self.backend.name, config)
                result.notices.append((f'empty_{kind}', message))
            results.append(result)
        clock.lap('download')
        share = {stage: seconds / len(results) for stage, seconds in timings.items()}
        for result in results:
            result.timings = dict(share)
        return results

    def confidence_unavailable(self, config: PipelineConfig | None = None) -> str | None:
        """Why no confidence map can be had with these settings, or None when one can."""
        config = config or self._config
        if self.backend.provides_confidence or config.left_right_check:
            return None
        why = {
            'sgbm': 'SGBM has no confidence of its own',
            'onnx': 'this exported model has no confidence output (the official exports have '
                    'none; this package\'s export has one)',
        }.get(self.backend.name, f'the {self.backend.name} backend gives no confidence')
        return (f'no confidence map: {why}; set left_right_check to true for the left-right '
                'agreement as confidence')

    def _confidence_notices(self, config: PipelineConfig,
                            want_confidence: bool) -> list[tuple[str, str]]:
        why = self.confidence_unavailable(config)
        if why is None:
            return []
        notices = []
        if want_confidence:
            notices.append(('no_confidence', why))
        if config.confidence_threshold > 0.0:
            notices.append(('no_confidence_threshold', (
                f'{why}, so confidence_threshold={config.confidence_threshold:g} has no '
                'effect')))
        return notices

    def _disparities(self, lefts: torch.Tensor, rights: torch.Tensor, config: PipelineConfig,
                     need_confidence: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Backend disparities at run size, and its confidences when needed and given.

        With the left-right check the batch is (2B, ...): the mirror trick's pairs (flipped
        and swapped, the right view's disparity is an ordinary left-view problem) as the
        second half, so a batching backend runs both in one call.
        """
        if config.left_right_check:
            mirrored = trust.right_view_pair(lefts, rights)
            lefts, rights = torch.cat([lefts, mirrored[0]]), torch.cat([rights, mirrored[1]])
        options = config.backend_options
        if need_confidence and self.backend.provides_confidence:
            return self.backend.compute_batch_with_confidence(lefts, rights, **options)
        return self.backend.compute_batch(lefts, rights, **options), None

    @staticmethod
    def _left_right(raws: torch.Tensor, confidences: torch.Tensor | None, count: int,
                    config: PipelineConfig, need_confidence: bool
                    ) -> tuple[torch.Tensor, list, list]:
        """Split off the left views' disparities; per pair their confidence and left-right keep.

        Where the check runs, its agreement multiplies the backend's confidence (both must be
        sure), or is the confidence of a backend without one.
        """
        conf = ([c.float() for c in confidences[:count]] if confidences is not None
                else [None] * count)
        if not config.left_right_check:
            return raws, conf, [None] * count
        keep, agreement = trust.left_right_check(
            raws[:count], trust.unmirror(raws[count:]), config.left_right_max_diff)
        if need_confidence:
            conf = [a if c is None else c * a for c, a in zip(conf, agreement)]
        return raws[:count], conf, list(keep)

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

    def _geometry(self, raw: torch.Tensor, confidence: torch.Tensor | None,
                  keep: torch.Tensor | None, camera: StereoCamera, config: PipelineConfig,
                  x_scale: float, want_depth: bool, want_points: bool) -> _Staged:
        """Backend disparity at run size -> disparity, depth, points at camera size, filtered.

        Every stage is counted on the device; the shares come back in one small copy.
        """
        size = (camera.height, camera.width)
        if tuple(raw.shape) != size:
            raw = _resize_disparity(raw, *size) * x_scale
            if keep is not None:
                keep = _resize_mask(keep, *size)
            if confidence is not None:
                confidence = _resize_values(confidence, *size)
        disparity = raw.float() - camera.doffs  # DisparityImage convention
        nan = ~torch.isfinite(disparity)
        nonpositive = ~nan & ~(disparity > 0)
        invisible = (geometry.invisible_mask(disparity, camera.doffs) & ~nan & ~nonpositive
                     if config.remove_invisible else torch.zeros_like(nan))
        valid = ~(nan | nonpositive | invisible)
        disparity = trust.nan_where(~valid, disparity)
        if confidence is not None:
            confidence = torch.where(valid, confidence.clamp(0.0, 1.0), 0.0)

        # Depth is one division: always made, so the z range is counted (an empty output's
        # likeliest cause is a baseline in millimetres).
        unranged = geometry.disparity_to_depth(disparity, camera)
        depth = geometry.apply_z_range(unranged, config.z_near, config.z_far)
        in_range = torch.isfinite(depth)
        kept = [valid, in_range]  # cumulative: each stage's survivors, for the shares
        drop = torch.zeros_like(valid)  # what the filters drop from every output
        if keep is not None:
            drop |= ~keep
        kept.append(in_range & ~drop)
        if confidence is not None and config.confidence_threshold > 0.0:
            drop |= confidence < config.confidence_threshold
        kept.append(in_range & ~drop)
        if config.edge_rtol > 0.0:
            depth = trust.nan_where(drop, depth)
            drop |= trust.flying_pixel_mask(depth, config.edge_rtol)
        kept.append(in_range & ~drop)
        points = None
        if config.denoise_radius > 0.0:
            depth = trust.nan_where(drop, depth)
            points = geometry.depth_to_points(depth, camera)
            drop |= trust.radius_outlier_mask(points, config.denoise_radius,
                                              config.denoise_min_neighbors,
                                              camera.fx, camera.fy)
        kept.append(in_range & ~drop)

        disparity = trust.nan_where(drop, disparity)
        if want_depth or want_points:
            depth = trust.nan_where(drop, depth)
        if want_points:
            points = geometry.depth_to_points(depth, camera)
        survivors = torch.stack([k.float().mean() for k in kept])
        before = torch.cat([torch.ones(1, device=survivors.device), survivors[:-1]])
        shares = torch.cat([before - survivors, survivors[-1:]])
        return _Staged(disparity, depth, points, confidence, shares, nan, nonpositive,
                       invisible, unranged, config.z_far)


@dataclass
class _Staged:
    """One pair's outputs at camera size on the device, and what each stage removed."""

    disparity: torch.Tensor
    depth: torch.Tensor
    points: torch.Tensor | None
    confidence: torch.Tensor | None
    shares: torch.Tensor  # removed per stage (empty_output.STAGES), then the share kept
    nan: torch.Tensor
    nonpositive: torch.Tensor
    invisible: torch.Tensor
    unranged: torch.Tensor  # depth before the z range
    z_far: float

    def facts(self, camera: StereoCamera) -> empty_output.EmptyFacts:
        """Host figures for :func:`.empty_output.explain` (a few small copies; rare)."""
        far = self.unranged[self.unranged > self.z_far]
        return empty_output.EmptyFacts(
            nan_share=float(self.nan.float().mean()),
            nonpositive_share=float(self.nonpositive.float().mean()),
            invisible_share=float(self.invisible.float().mean()),
            far_depth=float(far.median()) if far.numel() else math.nan,
            baseline=camera.baseline)


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


def _resize_mask(mask: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Resize a keep mask with the rule of :func:`_resize_disparity`: mixed pixels drop."""
    weight = F.interpolate(mask.float()[None, None], size=(height, width), mode='bilinear',
                           align_corners=False)[0, 0]
    return weight > 0.999


def _resize_values(values: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bilinear resize of a finite (h, w) field (the confidence)."""
    return F.interpolate(torch.nan_to_num(values.float(), nan=0.0)[None, None],
                         size=(height, width), mode='bilinear', align_corners=False)[0, 0]

"""Generated rectified stereo pairs with exact ground-truth disparity, depth and occlusion.

A scene is a handful of textured planar patches (a background plane, a slanted panel, boxes and
fronto-parallel posters). Each camera of a rectified pair is rendered independently by casting
one ray per pixel centre and taking the nearest patch it hits; the texture is a function of the
patch's own (u, v) coordinates, so both views see the same surface pattern with sub-pixel
accuracy. Ground truth for the left image comes from the same ray casting, so it is exact: depth
of the hit, disparity ``fx * baseline / Z`` (the DisparityImage convention, which leaves out the
principal point offset ``doffs = cx - cx_right``) and a mask of left pixels whose 3D point the
right camera cannot see.

Coordinates follow the left camera's optical frame (x right, y down, z forward); the right
camera sits at ``(baseline, 0, 0)``. Pixel ``(x, y)`` has its centre at integer ``x, y``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from foundation_stereo_ros.camera import StereoCamera

__all__ = [
    'ProceduralTexture',
    'StereoScene',
    'Surface',
    'make_scene',
    'occlusion_mask',
    'render_depth',
    'render_image',
    'render_rays',
    'save_scene',
]

# Shortest texture period, in pixels, at the far end of a patch: keeps point sampling alias-free.
_MIN_PERIOD_PX = 3.0
_NOISE_TABLE = 64  # a power of two
# Direction the light comes from: gives each face of a box its own brightness.
_LIGHT = np.array([-0.35, -0.75, -0.55]) / np.linalg.norm([-0.35, -0.75, -0.55])


@dataclass(frozen=True, eq=False)
class ProceduralTexture:
    """Smooth but rich colour pattern over a patch's (u, v) plane coordinates, in metres.

    Sum of sinusoids of random direction and wavelength plus two octaves of value noise (random
    lattice values blended by smoothstep), on a base colour; every term is band-limited by
    ``min_wavelength`` so that rendering by point sampling does not alias.
    """

    base: np.ndarray            # (3,) RGB 0..255
    wave_vectors: np.ndarray    # (K, 2) radians per metre in (u, v)
    phases: np.ndarray          # (K,)
    amplitudes: np.ndarray      # (3, K) RGB amplitude of each sinusoid
    noise_cell: float           # metres per lattice cell of the coarse value-noise octave
    noise_amplitude: np.ndarray  # (3,)
    noise_table: np.ndarray     # (_NOISE_TABLE, _NOISE_TABLE) values in [-1, 1]
    shade: float                # constant brightness factor (Lambertian, view independent)

    @classmethod
    def random(cls, rng: np.random.Generator, min_wavelength: float,
               shade: float = 1.0) -> ProceduralTexture:
        """Draw a texture whose shortest wavelength is ``min_wavelength`` metres."""
        count = 6
        wavelengths = min_wavelength * np.exp(rng.uniform(0.0, math.log(10.0), count))
        angles = rng.uniform(0.0, math.pi, count)
        wave_vectors = (2 * math.pi / wavelengths)[:, None] * np.stack(
            [np.cos(angles), np.sin(angles)], axis=1)
        # Mostly luminance with some colour: a common amplitude per wave, tinted per channel.
        # Amplitude grows with wavelength (like natural images' spectra), so that the finest
        # waves never dominate and turn a patch into a repetitive grating.
        wave_amplitudes = rng.uniform(5.0, 10.0, count) * np.sqrt(wavelengths / min_wavelength)
        amplitudes = wave_amplitudes[None, :] * rng.uniform(0.6, 1.4, (3, count))
        return cls(
            base=rng.uniform(70.0, 185.0, 3),
            wave_vectors=wave_vectors,
            phases=rng.uniform(0.0, 2 * math.pi, count),
            amplitudes=amplitudes,
            noise_cell=3.0 * min_wavelength,
            noise_amplitude=rng.uniform(30.0, 55.0, 3),
            noise_table=rng.uniform(-1.0, 1.0, (_NOISE_TABLE, _NOISE_TABLE)),
            shade=shade,
        )

    def __call__(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Colour (N, 3) float32 RGB 0..255 (unclipped) at plane coordinates ``u``, ``v`` (N,)."""
        # float32 is plenty: phases stay below ~1e4 rad, where its rounding moves a colour by
        # less than 0.01 grey level, and it halves the cost of the transcendental functions.
        u = u.astype(np.float32)
        v = v.astype(np.float32)
        k = self.wave_vectors.astype(np.float32)
        # Channels and waves first: numpy's matmul is many times slower on (N, K) @ (K, 3).
        phase = np.outer(k[:, 0], u)
        phase += np.outer(k[:, 1], v)
        phase += self.phases.astype(np.float32)[:, None]
        rgb = self.amplitudes.astype(np.float32) @ np.cos(phase, out=phase)
        scale = np.float32(1.0 / self.noise_cell)
        noise = self._value_noise(u * scale, v * scale)
        noise += 0.5 * self._value_noise(u * (2.3 * scale) + 17.0, v * (2.3 * scale) + 29.0)
        rgb += self.noise_amplitude.astype(np.float32)[:, None] * noise
        rgb += self.base.astype(np.float32)[:, None]
        rgb *= np.float32(self.shade)
        return rgb.T

    def _value_noise(self, s: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Lattice noise: random values at integer (s, t), smoothstep-blended in between."""
        s0 = np.floor(s)
        t0 = np.floor(t)
        fs = s - s0
        ft = t - t0
        fs = fs * fs * (3.0 - 2.0 * fs)
        ft = ft * ft * (3.0 - 2.0 * ft)
        # Wrap to the table with a power-of-two mask (works for negative cells too).
        # Flat indices into the table (a 1-D take is the cheapest gather).
        i0 = (s0.astype(np.int32) & (_NOISE_TABLE - 1)) * _NOISE_TABLE
        j0 = t0.astype(np.int32) & (_NOISE_TABLE - 1)
        i1 = (i0 + _NOISE_TABLE) & (_NOISE_TABLE * _NOISE_TABLE - 1)
        j1 = (j0 + 1) & (_NOISE_TABLE - 1)
        table = self.noise_table.astype(np.float32).ravel()
        v00, v10 = np.take(table, i0 + j0), np.take(table, i1 + j0)
        v01, v11 = np.take(table, i0 + j1), np.take(table, i1 + j1)
        top = v00 + fs * (v10 - v00)
        bottom = v01 + fs * (v11 - v01)
        return top + ft * (bottom - top)


def _corners(origin: np.ndarray, axis_u: np.ndarray, axis_v: np.ndarray, half_u: float,
             half_v: float) -> np.ndarray:
    signs = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64)
    return origin + signs[:, :1] * half_u * axis_u + signs[:, 1:] * half_v * axis_v


@dataclass(frozen=True, eq=False)
class Surface:
    """A textured planar patch: ``origin + u * axis_u + v * axis_v``, |u| <= half_u, |v| <= half_v.

    ``half_u`` and ``half_v`` may be ``inf`` for an unbounded plane (the background). ``axis_u``
    and ``axis_v`` are orthonormal; the normal is their cross product.
    """

    origin: np.ndarray
    axis_u: np.ndarray
    axis_v: np.ndarray
    half_u: float
    half_v: float
    texture: ProceduralTexture
    normal: np.ndarray = field(init=False)
    offset: float = field(init=False)   # plane equation: normal . X = offset

    def __post_init__(self) -> None:
        normal = np.cross(self.axis_u, self.axis_v)
        object.__setattr__(self, 'normal', normal)
        object.__setattr__(self, 'offset', float(normal @ self.origin))

    @property
    def bounded(self) -> bool:
        """Tell whether the patch is a finite rectangle."""
        return math.isfinite(self.half_u) and math.isfinite(self.half_v)

    def corners(self) -> np.ndarray:
        """(4, 3) corner points of a bounded patch."""
        return _corners(self.origin, self.axis_u, self.axis_v, self.half_u, self.half_v)

    def intersect(self, origin_x: float, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Depth Z where rays from ``(origin_x, 0, 0)`` along ``(a, b, 1)`` hit the patch.

        ``a`` and ``b`` broadcast against each other; the result is ``inf`` where a ray misses
        the patch or would hit it behind the camera.
        """
        n = self.normal
        denom = n[0] * a + n[1] * b + n[2]
        with np.errstate(divide='ignore', invalid='ignore'):
            z = (self.offset - n[0] * origin_x) / denom
        hit = z > 0.0
        if self.bounded:
            # Plane coordinates of the hit, written as z * (axis . direction) + constant so that
            # the per-pixel work stays a few broadcast multiply-adds.
            rel = np.array([origin_x, 0.0, 0.0]) - self.origin
            for axis, half in ((self.axis_u, self.half_u), (self.axis_v, self.half_v)):
                coord = z * (axis[0] * a + axis[1] * b + axis[2]) + axis @ rel
                hit &= np.abs(coord) <= half
        return np.where(hit, z, np.inf)


@dataclass
class StereoScene:
    """A rectified stereo pair with exact ground truth for the left image.

    ``disparity`` is ``fx * baseline / depth`` (DisparityImage convention: the pixel shift
    between the views is ``disparity + camera.doffs``); ``occluded`` marks left pixels whose 3D
    point the right camera does not see (hidden behind another patch, or outside its image).
    ``right_depth`` is the right camera's own depth map and ``surfaces`` the scene description,
    so that views can be re-rendered.
    """

    left: np.ndarray            # (H, W, 3) uint8 RGB
    right: np.ndarray           # (H, W, 3) uint8 RGB
    disparity: np.ndarray       # (H, W) float32 pixels
    depth: np.ndarray           # (H, W) float32 metres
    occluded: np.ndarray        # (H, W) bool
    camera: StereoCamera
    right_depth: np.ndarray     # (H, W) float32 metres, ground truth of the right image
    surfaces: tuple[Surface, ...] = ()

    def score(self, disparity: np.ndarray) -> dict[str, float]:
        """Compare an estimated disparity (NaN = no estimate) with the ground truth.

        ``coverage``: share of visible (non-occluded) pixels with an estimate; ``bad1``,
        ``bad3``: shares of those estimates more than 1 / 3 px off; ``mae``: their mean absolute
        error (px); ``hidden_estimated``: share of occluded pixels that still got an estimate.
        """
        visible = ~self.occluded
        valid = np.isfinite(disparity)
        error = np.abs(disparity - self.disparity)[valid & visible]
        has_error = error.size > 0
        return {
            'coverage': float((valid & visible).sum() / max(visible.sum(), 1)),
            'bad1': float(np.mean(error > 1.0)) if has_error else 1.0,
            'bad3': float(np.mean(error > 3.0)) if has_error else 1.0,
            'mae': float(error.mean()) if has_error else math.nan,
            'hidden_estimated': float((valid & ~visible).sum() / max((~visible).sum(), 1)),
        }


def _eye(camera: StereoCamera, eye: str) -> tuple[float, float]:
    """Camera centre x and principal point x of ``eye`` ('left' or 'right')."""
    if eye == 'left':
        return 0.0, camera.cx
    if eye == 'right':
        cx_right = camera.cx if camera.cx_right is None else camera.cx_right
        return camera.baseline, cx_right
    raise ValueError(f"eye must be 'left' or 'right', got {eye!r}")


def _pixel_window(surface: Surface, camera: StereoCamera, origin_x: float,
                  cx: float) -> tuple[slice, slice] | None:
    """Rows and columns that can see a bounded patch; None if it is off-image.

    With every corner in front of the camera the patch projects into the convex hull of its
    projected corners, so their bounding box (plus a pixel) holds every pixel that can hit it.
    """
    full = (slice(0, camera.height), slice(0, camera.width))
    if not surface.bounded:
        return full
    corners = surface.corners()
    z = corners[:, 2]
    if np.any(z <= 1e-9):
        return full
    x = camera.fx * (corners[:, 0] - origin_x) / z + cx
    y = camera.fy * corners[:, 1] / z + camera.cy
    x0 = max(math.floor(x.min()), 0)
    x1 = min(math.ceil(x.max()) + 1, camera.width)
    y0 = max(math.floor(y.min()), 0)
    y1 = min(math.ceil(y.max()) + 1, camera.height)
    if x0 >= x1 or y0 >= y1:
        return None
    return slice(y0, y1), slice(x0, x1)


def _ray_grid(camera: StereoCamera, cx: float) -> tuple[np.ndarray, np.ndarray]:
    """Normalised ray directions (a (1, W), b (H, 1)) through the pixel centres."""
    a = ((np.arange(camera.width, dtype=np.float64) - cx) / camera.fx)[None, :]
    b = ((np.arange(camera.height, dtype=np.float64) - camera.cy) / camera.fy)[:, None]
    return a, b


def render_depth(surfaces: tuple[Surface, ...] | list[Surface], camera: StereoCamera,
                 eye: str = 'left') -> tuple[np.ndarray, np.ndarray]:
    """Ray-cast one view (``eye`` 'left' or 'right') through its pixel centres.

    Returns the depth (H, W) float64 of the nearest hit (``inf`` where nothing is hit) and the
    index (H, W) int32 into ``surfaces`` of the patch hit (-1 where nothing is hit).
    """
    origin_x, cx = _eye(camera, eye)
    a, b = _ray_grid(camera, cx)
    depth = np.full((camera.height, camera.width), np.inf)
    index = np.full((camera.height, camera.width), -1, dtype=np.int32)
    for i, surface in enumerate(surfaces):
        window = _pixel_window(surface, camera, origin_x, cx)
        if window is None:
            continue
        rows, cols = window
        z = surface.intersect(origin_x, a[:, cols], b[rows])
        nearer = z < depth[window]
        np.copyto(depth[window], z, where=nearer)
        np.copyto(index[window], i, where=nearer)
    return depth, index


def render_image(surfaces: tuple[Surface, ...] | list[Surface], camera: StereoCamera,
                 depth: np.ndarray, index: np.ndarray, eye: str = 'left') -> np.ndarray:
    """Colour (H, W, 3) float32 RGB of one view (unclipped, black where nothing is hit).

    ``depth`` and ``index`` are that view's output of :func:`render_depth`.
    """
    origin_x, cx = _eye(camera, eye)
    a, b = _ray_grid(camera, cx)
    a, b = a[0], b[:, 0]
    image = np.zeros((camera.height * camera.width, 3), dtype=np.float32)
    for i, surface in enumerate(surfaces):
        window = _pixel_window(surface, camera, origin_x, cx)
        if window is None:
            continue
        rows, cols = np.nonzero(index[window] == i)
        if rows.size == 0:
            continue
        rows += window[0].start
        cols += window[1].start
        z = depth[rows, cols]
        a_hit, b_hit = a[cols], b[rows]
        # Plane coordinates of camera + z * (a, b, 1), as in Surface.intersect.
        rel = np.array([origin_x, 0.0, 0.0]) - surface.origin
        u, v = (z * (axis[0] * a_hit + axis[1] * b_hit + axis[2]) + axis @ rel
                for axis in (surface.axis_u, surface.axis_v))
        image[rows * camera.width + cols] = surface.texture(u, v)
    return image.reshape(camera.height, camera.width, 3)


def render_rays(surfaces: tuple[Surface, ...] | list[Surface], origin_x: float, a: np.ndarray,
                b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ray-cast any rays from ``(origin_x, 0, 0)`` along ``(a, b, 1)`` (arrays of one shape).

    For cameras other than the scene's rectified pinhole pair, e.g. a raw camera with lens
    distortion and a rotation: pass the directions of its pixels in the left rectified frame.
    Returns the depth Z of the nearest hit (``inf`` where none) and its colour (shape + (3,),
    float32 RGB 0..255 unclipped, black where nothing is hit), exact as in :func:`render_image`.
    """
    a, b = np.broadcast_arrays(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))
    depth = np.full(a.shape, np.inf)
    index = np.full(a.shape, -1, dtype=np.int32)
    for i, surface in enumerate(surfaces):
        z = surface.intersect(origin_x, a, b)
        nearer = z < depth
        depth[nearer] = z[nearer]
        index[nearer] = i
    colour = np.zeros(a.shape + (3,), dtype=np.float32)
    for i, surface in enumerate(surfaces):
        hit = index == i
        if not hit.any():
            continue
        z, a_hit, b_hit = depth[hit], a[hit], b[hit]
        rel = np.array([origin_x, 0.0, 0.0]) - surface.origin
        u, v = (z * (axis[0] * a_hit + axis[1] * b_hit + axis[2]) + axis @ rel
                for axis in (surface.axis_u, surface.axis_v))
        colour[hit] = surface.texture(u, v)
    return depth, colour


def occlusion_mask(surfaces: tuple[Surface, ...] | list[Surface], camera: StereoCamera,
                   depth: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Left pixels (H, W) bool whose 3D point the right camera cannot see.

    A point is hidden when it projects outside the right image (pixel areas, so x_r outside
    [-0.5, W - 0.5]) or when the right camera's ray towards it meets another patch first. Rows
    are the same in both rectified views, so each patch is tested only on the rows where the
    right camera can see it.
    """
    baseline = camera.baseline
    _, cx_right = _eye(camera, 'right')
    a_left, b = _ray_grid(camera, camera.cx)
    with np.errstate(divide='ignore'):
        a_right = a_left - baseline / depth        # direction from the right centre to the point
    x_right = camera.fx * a_right + cx_right
    occluded = ~np.isfinite(depth) | (x_right < -0.5) | (x_right > camera.width - 0.5)
    # Relative margin so that a patch meeting the point's own patch along an edge (box faces)
    # does not count as hiding it.
    limit = depth * (1.0 - 1e-7)
    for i, surface in enumerate(surfaces):
        window = _pixel_window(surface, camera, baseline, cx_right)
        if window is None:
            continue
        rows = window[0]
        z = surface.intersect(baseline, a_right[rows], b[rows])
        occluded[rows] |= (z < limit[rows]) & (index[rows] != i)
    return occluded


# --------------------------------------------------------------------------------------------
# Random layouts


def _frame_for_normal(normal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Orthonormal in-plane axes (u roughly along image x, v roughly along image y)."""
    normal = normal / np.linalg.norm(normal)
    axis_u = np.cross([0.0, 1.0, 0.0], normal)
    if np.linalg.norm(axis_u) < 1e-6:
        axis_u = np.cross(normal, [0.0, 0.0, 1.0])
    axis_u /= np.linalg.norm(axis_u)
    return axis_u, np.cross(normal, axis_u)


def _rotation(yaw: float, pitch: float) -> np.ndarray:
    """Rotation about the camera's y axis (yaw) after one about its x axis (pitch)."""
    cy, sy = math.cos(yaw), math.sin(yaw)
    cp, sp = math.cos(pitch), math.sin(pitch)
    ry = np.array([[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]])
    rx = np.array([[1.0, 0.0, 0.0], [0.0, cp, -sp], [0.0, sp, cp]])
    return ry @ rx


class _LayoutBuilder:
    """Draws patches for one scene and gives each a texture fine enough but alias-free."""

    def __init__(self, rng: np.random.Generator, camera: StereoCamera, min_depth: float,
                 max_depth: float) -> None:
        self.rng = rng
        self.camera = camera
        self.min_depth = min_depth
        self.max_depth = max_depth
        self.surfaces: list[Surface] = []
        # Normalised image extents; the right camera sees the same angles.
        self.a_range = (-camera.cx / camera.fx, (camera.width - 1 - camera.cx) / camera.fx)
        self.b_range = (-camera.cy / camera.fy, (camera.height - 1 - camera.cy) / camera.fy)

    def _texture(self, normal: np.ndarray, points: np.ndarray) -> ProceduralTexture:
        """Make a texture for a patch with ``normal`` spanned by ``points`` (its corners)."""
        normal = normal / np.linalg.norm(normal)
        # One metre at depth Z spans fx / Z pixels, shrunk by the cosine between the normal and
        # the viewing ray: take the worst over the patch's corners and both cameras.
        eyes = np.array([[0.0, 0.0, 0.0], [self.camera.baseline, 0.0, 0.0]])
        rays = points[None, :, :] - eyes[:, None, :]
        cosines = np.abs(rays @ normal) / np.linalg.norm(rays, axis=2)
        foreshortening = max(float(cosines.min()), 0.05)
        far_depth = min(float(points[:, 2].max()), self.max_depth)
        min_wavelength = _MIN_PERIOD_PX * far_depth / (self.camera.fx * foreshortening)
        shade = 0.6 + 0.4 * abs(float(normal @ _LIGHT))
        return ProceduralTexture.random(self.rng, min_wavelength, shade)

    def add_patch(self, origin: np.ndarray, axis_u: np.ndarray, axis_v: np.ndarray,
                  half_u: float, half_v: float) -> None:
        corners = _corners(origin, axis_u, axis_v, half_u, half_v)
        texture = self._texture(np.cross(axis_u, axis_v), corners)
        self.surfaces.append(Surface(origin, axis_u, axis_v, half_u, half_v, texture))

    def point_at(self, depth: float, margin: float = 0.1) -> np.ndarray:
        """Pick a 3D point at ``depth`` that projects inside the image (away from its border)."""
        (a0, a1), (b0, b1) = self.a_range, self.b_range
        a = self.rng.uniform(a0 + margin * (a1 - a0), a1 - margin * (a1 - a0))
        b = self.rng.uniform(b0 + margin * (b1 - b0), b1 - margin * (b1 - b0))
        return np.array([a * depth, b * depth, depth])

    def view_size(self, depth: float) -> tuple[float, float]:
        """Width and height in metres that the image spans at ``depth``."""
        return ((self.a_range[1] - self.a_range[0]) * depth,
                (self.b_range[1] - self.b_range[0]) * depth)

    def add_background(self) -> float:
        """Add an unbounded plane behind everything, covering both views; return its central depth.

        Written as inverse depth ``alpha * a + beta * b + gamma`` over normalised image
        coordinates, which is affine for a plane, so keeping it above 1 / max_depth at the image
        corners keeps the whole plane in front of the camera and within max_depth.
        """
        rng = self.rng
        central = rng.uniform(0.55, 0.85) * self.max_depth
        gamma = 1.0 / central
        budget = gamma - 1.0 / self.max_depth
        alpha = beta = 0.0
        if rng.random() < 0.6:
            share = rng.uniform(0.3, 0.9)
            split = rng.uniform(0.0, 1.0)
            a_max = max(abs(v) for v in self.a_range)
            b_max = max(abs(v) for v in self.b_range)
            alpha = rng.choice([-1.0, 1.0]) * share * split * budget / a_max
            beta = rng.choice([-1.0, 1.0]) * share * (1.0 - split) * budget / b_max
        normal = np.array([alpha, beta, gamma])
        axis_u, axis_v = _frame_for_normal(normal)
        origin = np.array([0.0, 0.0, central])
        # Where the image corners' rays meet the plane.
        corners = np.array([[a, b, 1.0] for a in self.a_range for b in self.b_range])
        corners /= (corners @ normal)[:, None]
        self.surfaces.append(Surface(origin, axis_u, axis_v, math.inf, math.inf,
                                     self._texture(normal, corners)))
        return central

    def add_slanted_panel(self, background_depth: float) -> None:
        rng = self.rng
        depth = rng.uniform(0.35, 0.7) * (background_depth - self.min_depth) + self.min_depth
        width, height = self.view_size(depth)
        yaw = rng.choice([-1.0, 1.0]) * math.radians(rng.uniform(35.0, 60.0))
        rotation = _rotation(yaw, math.radians(rng.uniform(-10.0, 10.0)))
        half_u = rng.uniform(0.12, 0.2) * width
        half_v = rng.uniform(0.15, 0.3) * height
        origin = self.point_at(depth, margin=0.2)
        # Keep the near edge behind min_depth.
        corners = _corners(origin, rotation[:, 0], rotation[:, 1], half_u, half_v)
        origin[2] += max(self.min_depth - corners[:, 2].min(), 0.0)
        self.add_patch(origin, rotation[:, 0], rotation[:, 1], half_u, half_v)

    def add_box(self, depth: float) -> None:
        """Add a box (its faces that either camera can see), nearest corner at ``depth``."""
        rng = self.rng
        width, height = self.view_size(depth)
        halves = np.array([rng.uniform(0.04, 0.11) * width, rng.uniform(0.05, 0.14) * height,
                           rng.uniform(0.03, 0.1) * width])
        rotation = _rotation(math.radians(rng.uniform(-40.0, 40.0)),
                             math.radians(rng.uniform(-20.0, 20.0)))
        centre = self.point_at(depth)
        signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)])
        corners = centre + (signs * halves) @ rotation.T
        centre[2] += depth - corners[:, 2].min()
        eyes = (np.zeros(3), np.array([self.camera.baseline, 0.0, 0.0]))
        for k in range(3):
            others = [j for j in range(3) if j != k]
            for sign in (-1.0, 1.0):
                outward = sign * rotation[:, k]
                face_centre = centre + sign * halves[k] * rotation[:, k]
                # A closed box's far faces are never the nearest hit from either camera.
                if not any((eye - face_centre) @ outward > 0 for eye in eyes):
                    continue
                axis_u, axis_v = rotation[:, others[0]], rotation[:, others[1]]
                if np.cross(axis_u, axis_v) @ outward < 0:
                    axis_v = -axis_v
                self.add_patch(face_centre, axis_u, axis_v, halves[others[0]],
                               halves[others[1]])

    def add_poster(self, depth: float) -> None:
        rng = self.rng
        width, height = self.view_size(depth)
        self.add_patch(self.point_at(depth), np.array([1.0, 0.0, 0.0]),
                       np.array([0.0, 1.0, 0.0]), rng.uniform(0.05, 0.15) * width,
                       rng.uniform(0.06, 0.18) * height)


def _random_layout(rng: np.random.Generator, camera: StereoCamera, min_depth: float,
                   max_depth: float) -> tuple[Surface, ...]:
    """Background, one slanted panel, 3 to 5 boxes (one at min_depth) and 1 to 3 posters."""
    builder = _LayoutBuilder(rng, camera, min_depth, max_depth)
    background = builder.add_background()
    builder.add_slanted_panel(background)
    span = background - min_depth
    builder.add_box(min_depth)
    for _ in range(int(rng.integers(2, 5))):
        builder.add_box(min_depth + rng.uniform(0.05, 0.6) * span)
    for _ in range(int(rng.integers(1, 4))):
        builder.add_poster(min_depth + rng.uniform(0.2, 0.85) * span)
    return tuple(builder.surfaces)


def _to_uint8(image: np.ndarray, noise: float, rng: np.random.Generator) -> np.ndarray:
    if noise > 0.0:
        image = image + rng.normal(0.0, noise, image.shape).astype(np.float32)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def make_scene(width: int = 640, height: int = 480, *, fx: float | None = None,
               cx: float | None = None, cy: float | None = None, baseline: float = 0.12,
               doffs: float = 0.0, seed: int = 0, min_depth: float = 0.8,
               max_depth: float = 8.0, noise: float = 0.0) -> StereoScene:
    """Generate a rectified stereo pair with exact ground truth for the left image.

    ``fx`` (= fy) defaults to 0.9 * width, the principal point to the image centre and
    ``doffs`` (cx - cx_right) to 0. Depths lie in [min_depth, max_depth]; the nearest box
    touches ``min_depth``. ``noise`` is the standard deviation (grey levels) of Gaussian noise
    added to each image independently. The layout and textures are a deterministic function
    of ``seed``.
    """
    if width < 16 or height < 16:
        raise ValueError(f'image size must be at least 16x16, got {width}x{height}')
    if not 0.0 < min_depth < max_depth:
        raise ValueError(f'need 0 < min_depth < max_depth, got {min_depth} and {max_depth}')
    if baseline <= 0.0:
        raise ValueError(f'baseline must be positive (metres), got {baseline}')
    if noise < 0.0:
        raise ValueError(f'noise is a standard deviation and must be >= 0, got {noise}')
    fx = 0.9 * width if fx is None else float(fx)
    if fx <= 0.0:
        raise ValueError(f'fx must be positive, got {fx}')
    cx = (width - 1) / 2.0 if cx is None else float(cx)
    cy = (height - 1) / 2.0 if cy is None else float(cy)
    camera = StereoCamera(width=width, height=height, fx=fx, fy=fx, cx=cx, cy=cy,
                          baseline=float(baseline),
                          cx_right=None if doffs == 0.0 else cx - float(doffs))

    surfaces = _random_layout(np.random.default_rng(seed), camera, min_depth, max_depth)
    left_depth, left_index = render_depth(surfaces, camera, 'left')
    right_depth, right_index = render_depth(surfaces, camera, 'right')
    left = render_image(surfaces, camera, left_depth, left_index, 'left')
    right = render_image(surfaces, camera, right_depth, right_index, 'right')
    occluded = occlusion_mask(surfaces, camera, left_depth, left_index)

    noise_rng = np.random.default_rng([seed, 1])
    return StereoScene(
        left=_to_uint8(left, noise, noise_rng),
        right=_to_uint8(right, noise, noise_rng),
        disparity=(fx * baseline / left_depth).astype(np.float32),
        depth=left_depth.astype(np.float32),
        occluded=occluded,
        camera=camera,
        right_depth=right_depth.astype(np.float32),
        surfaces=surfaces,
    )


def save_scene(scene: StereoScene, directory: str | Path) -> Path:
    """Write a scene in the layout of the official demo inputs; returns the directory.

    Files: ``left.png``, ``right.png`` (colour), ``K.txt`` (the 9 numbers of K on one line,
    the baseline in metres on the next), ``disparity_gt.npy``, ``depth_gt.npy`` and
    ``occluded_gt.npy``.
    """
    camera = scene.camera
    if camera.cx_right is not None and camera.cx_right != camera.cx:
        raise ValueError('K.txt cannot hold a right principal point (cx_right); save scenes '
                         'made with doffs=0')
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for name, image in (('left.png', scene.left), ('right.png', scene.right)):
        # cv2 writes BGR order; convert so that viewers show the true colours.
        if not cv2.imwrite(str(directory / name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
            raise OSError(f'could not write {directory / name}')
    k = np.array([[camera.fx, 0.0, camera.cx], [0.0, camera.fy, camera.cy], [0.0, 0.0, 1.0]])
    (directory / 'K.txt').write_text(
        ' '.join(repr(float(value)) for value in k.ravel()) + f'\n{camera.baseline!r}\n')
    np.save(directory / 'disparity_gt.npy', scene.disparity)
    np.save(directory / 'depth_gt.npy', scene.depth)
    np.save(directory / 'occluded_gt.npy', scene.occluded)
    return directory

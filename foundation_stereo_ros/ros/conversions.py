"""ROS 2 message <-> numpy conversions: Image, CameraInfo, DisparityImage, PointCloud2.

Layouts follow cv_bridge (``imgmsg_to_cv2`` / ``cv2_to_imgmsg``) and sensor_msgs_py
(``point_cloud2.read_points`` / ``create_cloud``), so messages made here read correctly with those
tools and images from any driver read correctly here, without either package installed.
``CompressedImage`` messages of image_transport's ``compressed`` plugin (JPEG or PNG) decode to
the same RGB arrays as the raw images.
"""
from __future__ import annotations

import array
import re
import sys
from typing import Any

import cv2
import numpy as np
from sensor_msgs.msg import (
    CameraInfo,
    CompressedImage,
    Image,
    PointCloud2,
    PointField,
    RegionOfInterest,
)
from std_msgs.msg import Header
from stereo_msgs.msg import DisparityImage

from foundation_stereo_ros.camera import StereoCamera

__all__ = [
    'RGB8_ENCODINGS',
    'SUPPORTED_ENCODINGS',
    'UnsupportedEncodingError',
    'array_to_image',
    'compressed_to_rgb8',
    'image_to_array',
    'image_to_rgb8',
    'make_camera_info',
    'make_depth_image',
    'make_disparity_image',
    'make_point_cloud',
]


class UnsupportedEncodingError(ValueError):
    """An image encoding this package cannot read, with what to do instead."""


_NAMED_ENCODINGS = {
    'mono8': ('u1', 1), 'mono16': ('u2', 1),
    'rgb8': ('u1', 3), 'bgr8': ('u1', 3), 'rgba8': ('u1', 4), 'bgra8': ('u1', 4),
    'rgb16': ('u2', 3), 'bgr16': ('u2', 3), 'rgba16': ('u2', 4), 'bgra16': ('u2', 4),
}
_DEPTHS = {'8U': 'u1', '8S': 'i1', '16U': 'u2', '16S': 'i2', '32S': 'i4', '32F': 'f4', '64F': 'f8'}
_GENERIC = {f'{depth}C{channels}': (code, channels)
            for depth, code in _DEPTHS.items() for channels in (1, 2, 3, 4)}
_GENERIC.update({depth: (code, 1) for depth, code in _DEPTHS.items()})  # '32F' = '32FC1'
_ENCODINGS = {**_NAMED_ENCODINGS, **_GENERIC}

#: Every encoding :func:`image_to_array` and :func:`array_to_image` accept.
SUPPORTED_ENCODINGS: frozenset[str] = frozenset(_ENCODINGS)

# Colour conversions to RGB (after any 16 -> 8 bit scaling), as cv_bridge does them.
_TO_RGB = {
    'mono8': cv2.COLOR_GRAY2RGB, 'mono16': cv2.COLOR_GRAY2RGB,
    '8UC1': cv2.COLOR_GRAY2RGB, '16UC1': cv2.COLOR_GRAY2RGB,
    'rgb8': None, 'rgb16': None,
    'bgr8': cv2.COLOR_BGR2RGB, 'bgr16': cv2.COLOR_BGR2RGB,
    'rgba8': cv2.COLOR_RGBA2RGB, 'rgba16': cv2.COLOR_RGBA2RGB,
    'bgra8': cv2.COLOR_BGRA2RGB, 'bgra16': cv2.COLOR_BGRA2RGB,
    # Float intensity images (0..1, as OpenCV and image_proc treat float images).
    '32FC1': cv2.COLOR_GRAY2RGB, '32FC3': None,
}
#: Encodings :func:`image_to_rgb8` converts.
RGB8_ENCODINGS: frozenset[str] = frozenset(_TO_RGB)


def _unsupported(encoding: str, purpose: str) -> UnsupportedEncodingError:
    if encoding.startswith('bayer_'):
        advice = ('debayer and rectify it first (image_proc: debayer + rectify nodes, or the '
                  'image_proc launch file) and subscribe to image_rect (mono8/rgb8/bgr8)')
    elif encoding.startswith(('yuv', 'uyvy', 'yuyv', 'nv')):
        advice = ('set the camera driver to publish rgb8/bgr8/mono8, or convert the images '
                  '(e.g. image_proc) before this node')
    elif not re.fullmatch(r'[\w]+', encoding or '-'):
        advice = 'the publisher must set a sensor_msgs image_encodings string'
    else:
        advice = 'publish one of: ' + ', '.join(sorted(
            RGB8_ENCODINGS if purpose == 'rgb8' else SUPPORTED_ENCODINGS))
    what = 'convert to rgb8' if purpose == 'rgb8' else 'read'
    return UnsupportedEncodingError(f'cannot {what} image encoding {encoding!r}; {advice}')


def _message_bytes(data: Any) -> np.ndarray:
    """``msg.data`` as a flat uint8 array, sharing memory when the container allows it.

    rclpy gives ``array.array('B')`` (writable, shared), rosbags a numpy array (shared),
    ``bytes`` gives a read-only shared view; only a list needs a copy.
    """
    if isinstance(data, (list, tuple)):
        return np.asarray(data, dtype=np.uint8)
    return np.frombuffer(data, dtype=np.uint8)


def image_to_array(msg: Image) -> np.ndarray:
    """Image message as a numpy array, like ``cv_bridge.imgmsg_to_cv2(msg, 'passthrough')``.

    Shape (H, W) for one channel, (H, W, C) otherwise, dtype of the encoding. Row padding
    (``step`` larger than a row) is skipped with strides and big-endian data is converted to
    native order. When neither applies the array is a zero-copy view of ``msg.data``: copy it
    before keeping it past the message's lifetime or writing into it.
    """
    encoding = msg.encoding
    if encoding not in _ENCODINGS:
        raise _unsupported(encoding, 'array')
    code, channels = _ENCODINGS[encoding]
    dtype = np.dtype(code).newbyteorder('>' if msg.is_bigendian else '<')
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    row_bytes = width * channels * dtype.itemsize
    if step < row_bytes:
        raise ValueError(f'malformed {encoding} image: step {step} < width {width} * '
                         f'{channels} channel(s) * {dtype.itemsize} byte(s) = {row_bytes}; '
                         'fix the publisher (step is the row length in bytes)')
    buffer = _message_bytes(msg.data)
    if buffer.size < height * step:
        raise ValueError(f'malformed {encoding} image: data has {buffer.size} bytes but '
                         f'height * step = {height} * {step} = {height * step}; the message '
                         'is truncated or its step/height are wrong')
    shape: tuple[int, ...] = (height, width) if channels == 1 else (height, width, channels)
    strides: tuple[int, ...] = (step, dtype.itemsize * channels, dtype.itemsize)[:len(shape)]
    image = np.ndarray(shape=shape, dtype=dtype, buffer=buffer, strides=strides)
    if dtype.itemsize > 1 and not dtype.isnative:
        image = image.astype(dtype.newbyteorder('='))
    return image


def image_to_rgb8(msg: Image) -> np.ndarray:
    """Image message as (H, W, 3) uint8 RGB, like ``cv_bridge.imgmsg_to_cv2(msg, 'rgb8')``.

    Converts mono8/mono16/8UC1/16UC1 (grey replicated), rgb8/bgr8/rgba8/bgra8 and their 16-bit
    forms (scaled by 255/65535 with rounding, as cv_bridge does), and 32FC1/32FC3 intensity
    images in 0..1 (clipped, scaled by 255, rounded); a float image with NaN or inf pixels is a
    ValueError, since no disparity can be matched there. An rgb8 message comes back as a view
    of the message data (see :func:`image_to_array`).
    """
    if msg.encoding not in _TO_RGB:
        raise _unsupported(msg.encoding, 'rgb8')
    image = image_to_array(msg)
    if image.dtype.kind == 'f':
        return _float_intensity_to_rgb8(image, msg.encoding)
    if image.dtype.itemsize == 2:
        # cv_bridge: convertTo(CV_8U, 255/65535), i.e. scale, round, saturate
        image = cv2.convertScaleAbs(image, alpha=255.0 / 65535.0)
    code = _TO_RGB[msg.encoding]
    return image if code is None else cv2.cvtColor(image, code)


def _float_intensity_to_rgb8(image: np.ndarray, encoding: str) -> np.ndarray:
    bad = image.size - int(np.count_nonzero(np.isfinite(image)))
    if bad:
        raise ValueError(
            f'{bad} of {image.size} values of the {encoding} image are NaN or inf: stereo '
            'matching needs every pixel; fix the publisher or publish mono8/rgb8 images')
    grey = np.rint(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
    return cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB) if grey.ndim == 2 else grey


# image_transport ``compressed`` formats: '<encoding>; jpeg compressed <bgr8|rgb8|...>' (the
# encoding of the original image, then the layout that was encoded), or just 'jpeg' / 'png'
# from old publishers.
_COMPRESSED_FORMAT = re.compile(
    r'\s*(?:(\w+)\s*;\s*)?(jpeg|jpg|png)(?:\s+compressed\s*(\w*))?\s*', re.IGNORECASE)


def compressed_to_rgb8(msg: CompressedImage) -> np.ndarray:
    """Decode a CompressedImage (image_transport ``compressed``) to (H, W, 3) uint8 RGB.

    JPEG or PNG, decoded with OpenCV. The channel order of the decoded data follows the
    ``format`` string as the compressed plugin's subscriber reads it: ``... compressed bgr8``
    (what the publisher writes for colour images) or a format without ``;`` (old publishers)
    is BGR; a colour image whose format names another layout (``rgb8; jpeg compressed rgb8``)
    is RGB. Grey images are replicated to RGB, 16-bit PNGs scaled by 255/65535 as
    :func:`image_to_rgb8` does, an alpha channel dropped. ``compressedDepth`` (depth images)
    and other codecs raise :class:`UnsupportedEncodingError`; data that does not decode raise
    ValueError, both saying what to do.
    """
    fmt = str(msg.format or '')
    if 'compresseddepth' in fmt.lower():
        raise UnsupportedEncodingError(
            f'CompressedImage format {fmt!r} is compressedDepth, the depth-image transport; '
            'stereo matching needs the camera images: subscribe to <image topic>/compressed '
            '(image_transport compressed) or to the raw images')
    match = _COMPRESSED_FORMAT.fullmatch(fmt) if fmt else None
    if fmt and match is None:
        raise UnsupportedEncodingError(
            f'CompressedImage format {fmt!r} is not image_transport compressed (JPEG or PNG); '
            'republish the images with image_transport compressed or raw (e.g. '
            '"ros2 run image_transport republish")')
    data = _message_bytes(msg.data)
    codec = match.group(2).lower() if match else 'image'
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise ValueError(
            f'CompressedImage data ({data.size} bytes, format {fmt!r}) does not decode as '
            f'{codec}: the message is truncated or corrupt; check the publisher and the link')
    if image.dtype == np.uint16:
        image = cv2.convertScaleAbs(image, alpha=255.0 / 65535.0)
    elif image.dtype != np.uint8:
        raise UnsupportedEncodingError(
            f'CompressedImage decodes to {image.dtype} pixels; publish 8- or 16-bit images')
    channels = 1 if image.ndim == 2 else image.shape[2]
    if channels == 1:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    original = (match.group(1) or '') if match else ''
    layout = ((match.group(3) or '') if match else '').lower()
    colour_original = original.lower().startswith(('rgb', 'bgr'))
    bgr = not original or layout.startswith('bgr') or not colour_original
    if channels == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if bgr else image
    if channels == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB if bgr else cv2.COLOR_RGBA2RGB)
    raise UnsupportedEncodingError(
        f'CompressedImage decodes to {channels} channels; publish grey, RGB or BGR images')


def _encoding_of(array_: np.ndarray) -> str:
    depth = {v: k for k, v in _DEPTHS.items()}.get(array_.dtype.newbyteorder('=').str[1:])
    channels = 1 if array_.ndim == 2 else array_.shape[2]
    return f'{depth}C{channels}' if depth else f'{array_.dtype}x{channels}'


def array_to_image(image: np.ndarray, encoding: str, header: Header | None = None) -> Image:
    """Numpy image as an Image message, like ``cv_bridge.cv2_to_imgmsg(image, encoding)``.

    ``image`` is (H, W) or (H, W, C) with the dtype and channel count of ``encoding``; the
    message is dense (``step = width * channels * itemsize``) and in native byte order.
    """
    image = np.asarray(image)
    if encoding not in _ENCODINGS:
        raise _unsupported(encoding, 'array')
    code, channels = _ENCODINGS[encoding]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != channels) or \
            (image.ndim == 2 and channels != 1) or image.dtype.newbyteorder('=') != np.dtype(code):
        raise ValueError(f'encoding {encoding} needs a {np.dtype(code).name} array of shape '
                         f'(H, W{"" if channels == 1 else f", {channels}"}), got '
                         f'{image.dtype.name} {image.shape} ({_encoding_of(image)})')
    if not image.dtype.isnative:
        image = image.astype(image.dtype.newbyteorder('='))
    image = np.ascontiguousarray(image)
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = image.shape[0], image.shape[1]
    msg.encoding = encoding
    msg.is_bigendian = sys.byteorder == 'big'
    msg.step = msg.width * channels * image.dtype.itemsize
    _set_message_bytes(msg, image)
    return msg


def _message_data(msg: Any, nbytes: int) -> np.ndarray:
    """Resize ``msg.data`` to ``nbytes`` zeros in place and return a writable uint8 view of it.

    The generated ``data`` setter always copies (``array.array('B', value)``), so outputs are
    written straight into the message's own array instead, like cv_bridge's
    ``msg.data.frombytes(...)``: one pass over the bytes, no intermediate buffer. The view must
    not outlive the call (an array exporting its buffer cannot be resized).
    """
    data = msg.data
    if not isinstance(data, array.array) or data.typecode != 'B':
        msg.data = array.array('B')
        data = msg.data
    del data[:]
    if nbytes:
        data.append(0)
        data *= nbytes
    return np.frombuffer(data, dtype=np.uint8)


def _set_message_bytes(msg: Any, contiguous: np.ndarray) -> None:
    """``msg.data`` = the bytes of a C-contiguous array, with a single copy."""
    view = _message_data(msg, contiguous.nbytes)
    if contiguous.nbytes:
        view[:] = np.frombuffer(memoryview(contiguous).cast('B'), dtype=np.uint8)


# ---------------------------------------------------------------------- stereo outputs

def _roi(window: Any) -> RegionOfInterest:
    if window is None or isinstance(window, RegionOfInterest):
        return window if window is not None else RegionOfInterest()
    x_offset, y_offset, width, height = (int(v) for v in window)
    return RegionOfInterest(x_offset=x_offset, y_offset=y_offset, width=width, height=height)


def _valid_bounding_box(valid: np.ndarray) -> RegionOfInterest:
    rows = np.flatnonzero(valid.any(axis=1))
    if rows.size == 0:
        return RegionOfInterest()
    cols = np.flatnonzero(valid.any(axis=0))
    return RegionOfInterest(x_offset=int(cols[0]), y_offset=int(rows[0]),
                            width=int(cols[-1] - cols[0] + 1), height=int(rows[-1] - rows[0] + 1))


def make_disparity_image(disparity: np.ndarray, camera: StereoCamera, header: Header, *,
                         min_disparity: float, max_disparity: float, delta_d: float,
                         valid_window: Any = None) -> DisparityImage:
    """``stereo_msgs/DisparityImage`` from an (H, W) disparity with NaN where invalid.

    ``disparity`` follows the message's convention ``d = x_l - x_r - (cx_l - cx_r)``. Invalid
    pixels (NaN, +/-inf) are written as ``min_disparity - 1`` because the message defines
    anything below ``min_disparity`` as invalid (stereo_image_proc does the same).
    ``f = camera.fx``, ``t = camera.baseline``. ``valid_window`` (a RegionOfInterest or
    ``(x, y, width, height)``) defaults to the bounding box of the valid pixels, all zeros when
    there are none. ``header`` goes to both ``msg.header`` and ``msg.image.header``.
    """
    disparity = np.asarray(disparity, dtype=np.float32)
    if disparity.ndim != 2:
        raise ValueError(f'disparity must be (H, W), got shape {disparity.shape}')
    if not (np.isfinite(min_disparity) and max_disparity >= min_disparity):
        raise ValueError(f'need a finite min_disparity <= max_disparity, got {min_disparity}, '
                         f'{max_disparity}')
    valid = np.isfinite(disparity)
    image = np.where(valid, disparity, np.float32(min_disparity - 1.0))
    msg = DisparityImage()
    msg.header = header
    msg.image = array_to_image(image, '32FC1', header)
    msg.f = float(camera.fx)
    msg.t = float(camera.baseline)
    msg.valid_window = _valid_bounding_box(valid) if valid_window is None else _roi(valid_window)
    msg.min_disparity = float(min_disparity)
    msg.max_disparity = float(max_disparity)
    msg.delta_d = float(delta_d)
    return msg


def make_depth_image(depth: np.ndarray, header: Header) -> Image:
    """REP 118 depth image: 32FC1 in metres, NaN where there is no measurement."""
    return array_to_image(np.asarray(depth, dtype=np.float32), '32FC1', header)


def make_camera_info(camera: StereoCamera, header: Header) -> CameraInfo:
    """Build the rectified left camera's CameraInfo at ``camera``'s resolution (for depth images).

    No distortion (plumb_bob with zero coefficients), identity R, ``P = [K | 0]``.
    """
    msg = CameraInfo()
    msg.header = header
    msg.width, msg.height = camera.width, camera.height
    msg.distortion_model = 'plumb_bob'
    msg.d = [0.0] * 5
    msg.k = camera.K.ravel().tolist()
    msg.r = np.eye(3).ravel().tolist()
    msg.p = np.hstack([camera.K, np.zeros((3, 1))]).ravel().tolist()
    return msg


def _xyz_fields(with_rgb: bool) -> list[PointField]:
    names = ('x', 'y', 'z', 'rgb') if with_rgb else ('x', 'y', 'z')
    return [PointField(name=name, offset=4 * i, datatype=PointField.FLOAT32, count=1)
            for i, name in enumerate(names)]


def make_point_cloud(points: np.ndarray, rgb: np.ndarray | None, header: Header) -> PointCloud2:
    """Organized PointCloud2 (height H, width W) from an (H, W, 3) point map.

    Fields x, y, z FLOAT32 at offsets 0, 4, 8 and, when ``rgb`` ((H, W, 3) uint8 RGB) is given,
    ``rgb`` FLOAT32 at 12 holding the bits of ``0x00RRGGBB`` (the PCL / RViz packing, as
    stereo_image_proc's point_cloud node writes it); point_step 16, else 12 (as
    ``sensor_msgs_py.point_cloud2.create_cloud_xyz32``). Invalid points stay NaN and
    ``is_dense`` is False. An (N, 3) input gives an unorganized cloud of height 1.
    """
    points = np.asarray(points)
    if points.ndim == 2:
        points = points[None]
    if points.ndim != 3 or points.shape[-1] != 3:
        raise ValueError(f'points must be (H, W, 3) or (N, 3), got shape {points.shape}')
    height, width = points.shape[:2]
    if rgb is not None:
        rgb = np.asarray(rgb)
        if rgb.ndim == 2:
            rgb = rgb[None]
        if rgb.shape != points.shape or rgb.dtype != np.uint8:
            raise ValueError(f'rgb must be uint8 with the shape of points {points.shape}, got '
                             f'{rgb.dtype} {rgb.shape}')
    points = np.ascontiguousarray(points, dtype=np.float32)
    msg = PointCloud2()
    msg.header = header
    msg.height, msg.width = height, width
    msg.fields = _xyz_fields(rgb is not None)
    msg.is_bigendian = sys.byteorder == 'big'
    msg.point_step = 12 if rgb is None else 16
    msg.row_step = msg.point_step * width
    msg.is_dense = False
    if rgb is None:
        _set_message_bytes(msg, points)
    else:
        cloud = _message_data(msg, height * width * 16).view(np.float32)
        _interleave_xyz_rgb(points, np.ascontiguousarray(rgb), cloud.reshape(height, width, 4))
    return msg


def _interleave_xyz_rgb(points: np.ndarray, rgb: np.ndarray, cloud: np.ndarray) -> None:
    """Write 16-byte points ``x y z rgb`` into ``cloud`` ((H, W, 4) float32, zero-filled).

    cv2.mixChannels does the strided interleave several times faster than numpy's 3-element
    inner loops; the pad byte of the colour stays 0.
    """
    if not cloud.size:
        return
    height, width = points.shape[:2]
    cloud_bytes = cloud.view(np.uint8).reshape(height, width, 16)
    # colour bytes of 0x00RRGGBB in host order: B G R 0 on little-endian, 0 R G B on big-endian
    rgb_to = (14, 13, 12) if sys.byteorder == 'little' else (13, 14, 15)
    written = cv2.mixChannels([points], [cloud], [0, 0, 1, 1, 2, 2])[0] is cloud and \
        cv2.mixChannels([rgb], [cloud_bytes], [0, rgb_to[0], 1, rgb_to[1], 2, rgb_to[2]])[0] \
        is cloud_bytes
    if not written:  # an OpenCV build that reallocated instead of writing in place
        cloud[..., :3] = points
        cloud_bytes[..., list(rgb_to)] = rgb

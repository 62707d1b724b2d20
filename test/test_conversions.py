"""Message conversions: Image (cv_bridge layout), DisparityImage, CameraInfo, PointCloud2.

The decoders here are written independently of foundation_stereo_ros.ros.conversions: raw byte
reads with ``struct`` and numpy, following the cv_bridge and sensor_msgs_py layouts.
"""
import array
import math
import struct
import sys

import cv2
import numpy as np
import pytest
from cloud_reader import read_points
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import CompressedImage, Image, PointCloud2, PointField
from std_msgs.msg import Header

from foundation_stereo_ros.camera import StereoCamera
from foundation_stereo_ros.ros import conversions

RNG = np.random.default_rng(7)
DEPTH_DTYPES = {'8U': np.uint8, '8S': np.int8, '16U': np.uint16, '16S': np.int16,
                '32S': np.int32, '32F': np.float32, '64F': np.float64}
NAMED = {'mono8': (np.uint8, 1), 'mono16': (np.uint16, 1), 'rgb8': (np.uint8, 3),
         'bgr8': (np.uint8, 3), 'rgba8': (np.uint8, 4), 'bgra8': (np.uint8, 4),
         'rgb16': (np.uint16, 3), 'bgr16': (np.uint16, 3), 'rgba16': (np.uint16, 4),
         'bgra16': (np.uint16, 4)}


def encoding_layout(encoding):
    if encoding in NAMED:
        return NAMED[encoding]
    depth, _, channels = encoding.partition('C')
    return DEPTH_DTYPES[depth], int(channels or 1)


def random_image(encoding, height=5, width=7):
    dtype, channels = encoding_layout(encoding)
    shape = (height, width) if channels == 1 else (height, width, channels)
    if np.issubdtype(dtype, np.floating):
        return RNG.standard_normal(shape).astype(dtype)
    info = np.iinfo(dtype)
    return RNG.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)


def header(frame='left_optical', sec=12, nanosec=34):
    h = Header(frame_id=frame)
    h.stamp.sec, h.stamp.nanosec = sec, nanosec
    return h


def cv_bridge_style_message(image, encoding, *, pad=0, big_endian=False):
    """Build an Image laid out as a driver would send it: optional row padding and byte order."""
    dtype = image.dtype.newbyteorder('>' if big_endian else '<')
    rows = image.astype(dtype).reshape(image.shape[0], -1).view(np.uint8)
    padded = np.concatenate([rows, np.full((rows.shape[0], pad), 0xAB, np.uint8)], axis=1)
    msg = Image(height=image.shape[0], width=image.shape[1], encoding=encoding,
                is_bigendian=big_endian, step=padded.shape[1])
    msg.data = array.array('B', padded.tobytes())
    return msg


def reference_decode(msg):
    """cv_bridge's imgmsg_to_cv2 passthrough algorithm: rows of `step` bytes, cropped."""
    dtype, channels = encoding_layout(msg.encoding)
    dtype = np.dtype(dtype).newbyteorder('>' if msg.is_bigendian else '<')
    raw = np.frombuffer(bytes(msg.data), np.uint8)[:msg.height * msg.step]
    rows = raw.reshape(msg.height, msg.step)[:, :msg.width * channels * dtype.itemsize]
    image = rows.copy().view(dtype).astype(dtype.newbyteorder('='))
    return image.reshape(msg.height, msg.width) if channels == 1 else \
        image.reshape(msg.height, msg.width, channels)


# ---------------------------------------------------------------------- Image

@pytest.mark.parametrize('encoding', sorted(conversions.SUPPORTED_ENCODINGS))
def test_image_round_trip_every_encoding(encoding):
    image = random_image(encoding)
    msg = conversions.array_to_image(image, encoding, header())
    dtype, channels = encoding_layout(encoding)
    assert (msg.height, msg.width, msg.encoding) == (5, 7, encoding)
    assert msg.step == 7 * channels * np.dtype(dtype).itemsize
    assert msg.is_bigendian == (sys.byteorder == 'big')
    assert len(msg.data) == msg.height * msg.step
    assert msg.header.frame_id == 'left_optical' and msg.header.stamp.sec == 12
    np.testing.assert_array_equal(reference_decode(msg), image)
    back = conversions.image_to_array(msg)
    assert back.dtype == image.dtype and back.shape == image.shape
    np.testing.assert_array_equal(back, image)
    # through rclpy's own serialization, as a subscriber receives it
    received = deserialize_message(serialize_message(msg), Image)
    np.testing.assert_array_equal(conversions.image_to_array(received), image)


@pytest.mark.parametrize('encoding', ['mono8', 'mono16', 'bgr8', 'rgba16', '32FC1', '64FC3',
                                      '16SC2'])
@pytest.mark.parametrize('pad, big_endian', [(0, True), (3, False), (5, True)])
def test_padded_step_and_byte_order(encoding, pad, big_endian):
    image = random_image(encoding, 4, 6)
    msg = cv_bridge_style_message(image, encoding, pad=pad, big_endian=big_endian)
    out = conversions.image_to_array(msg)
    assert out.dtype == image.dtype and out.dtype.isnative
    np.testing.assert_array_equal(out, image)
    np.testing.assert_array_equal(out, reference_decode(msg))


def test_zero_copy_view_of_message_data():
    image = random_image('rgb8')
    msg = conversions.array_to_image(image, 'rgb8')
    view = conversions.image_to_array(msg)
    assert np.shares_memory(view, np.frombuffer(msg.data, np.uint8))
    msg.data[0] = (int(msg.data[0]) + 1) % 256
    assert view[0, 0, 0] == msg.data[0]


@pytest.mark.parametrize('container', [bytes, list, lambda b: np.frombuffer(b, np.uint8)])
def test_other_data_containers(container):
    """Decode from bytes (read-only view), lists (copied) and numpy arrays (rosbags) alike."""
    image = random_image('mono16')
    msg = cv_bridge_style_message(image, 'mono16', pad=2)
    raw = bytes(msg.data)
    fake = type('FakeImage', (), {})()
    for field in ('height', 'width', 'encoding', 'is_bigendian', 'step'):
        setattr(fake, field, getattr(msg, field))
    fake.data = container(raw) if container is not list else list(raw)
    np.testing.assert_array_equal(conversions.image_to_array(fake), image)


@pytest.mark.parametrize('encoding, match', [
    ('bayer_rggb8', 'debayer'), ('yuv422', 'driver to publish rgb8'),
    ('weird9', 'publish one of:.*mono8'), ('', 'must set a sensor_msgs image_encodings'),
])
def test_unsupported_encoding(encoding, match):
    msg = Image(height=2, width=2, encoding=encoding, step=4)
    msg.data = array.array('B', bytes(8))
    with pytest.raises(conversions.UnsupportedEncodingError, match=match) as info:
        conversions.image_to_array(msg)
    assert repr(encoding) in str(info.value)


def test_malformed_images():
    msg = Image(height=2, width=4, encoding='mono16', step=6)
    msg.data = array.array('B', bytes(12))
    with pytest.raises(ValueError, match='step 6 < width 4'):
        conversions.image_to_array(msg)
    msg.step = 8
    with pytest.raises(ValueError, match=r'data has 12 bytes but height \* step = 2 \* 8 = 16'):
        conversions.image_to_array(msg)


def test_array_to_image_checks_dtype_and_channels():
    with pytest.raises(ValueError, match=r'rgb8 needs a uint8 array of shape \(H, W, 3\).*'
                                         r'float32 \(2, 2, 3\)'):
        conversions.array_to_image(np.zeros((2, 2, 3), np.float32), 'rgb8')
    with pytest.raises(ValueError, match=r'32FC1 needs a float32 array of shape \(H, W\)'):
        conversions.array_to_image(np.zeros((2, 2, 3), np.float32), '32FC1')
    with pytest.raises(conversions.UnsupportedEncodingError):
        conversions.array_to_image(np.zeros((2, 2), np.uint8), 'bayer_rggb8')
    # non-contiguous and non-native inputs are accepted and written densely, natively
    image = random_image('16UC1', 6, 8)
    msg = conversions.array_to_image(image[:, ::2].astype('>u2'), '16UC1')
    assert msg.step == 8 and msg.is_bigendian == (sys.byteorder == 'big')
    np.testing.assert_array_equal(conversions.image_to_array(msg), image[:, ::2])


def rgb_reference(image, encoding):
    if image.dtype == np.float32:  # intensity 0..1
        image = np.rint(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
    if image.dtype == np.uint16:
        image = np.clip(np.rint(image * (255.0 / 65535.0)), 0, 255).astype(np.uint8)
    if image.ndim == 2:
        return np.repeat(image[..., None], 3, axis=2)
    rgb = image[..., :3]
    return rgb[..., ::-1] if encoding.startswith('bgr') else rgb


@pytest.mark.parametrize('encoding', sorted(conversions.RGB8_ENCODINGS))
def test_image_to_rgb8(encoding):
    image = random_image(encoding, 6, 9)
    if image.dtype == np.uint16:
        image.flat[:4] = [0, 65535, 128, 32896]  # ends and near-half rounding cases
    msg = cv_bridge_style_message(image, encoding, pad=4)
    rgb = conversions.image_to_rgb8(msg)
    assert rgb.shape == (6, 9, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb, rgb_reference(image, encoding))


def test_image_to_rgb8_rejects_non_colour():
    msg = conversions.array_to_image(np.zeros((2, 2), np.int32), '32SC1')
    with pytest.raises(conversions.UnsupportedEncodingError, match="convert to rgb8.*'32SC1'"):
        conversions.image_to_rgb8(msg)


def test_float_intensity_images_and_their_non_finite_pixels():
    grey = np.array([[0.0, 0.5], [1.0, 2.0]], np.float32)
    rgb = conversions.image_to_rgb8(conversions.array_to_image(grey, '32FC1'))
    np.testing.assert_array_equal(rgb[..., 0], [[0, 128], [255, 255]])
    assert rgb.shape == (2, 2, 3) and (rgb[..., 0] == rgb[..., 2]).all()
    colour = np.dstack([grey, grey * 0, grey * 0 + 0.2])
    rgb = conversions.image_to_rgb8(conversions.array_to_image(colour, '32FC3'))
    np.testing.assert_array_equal(rgb[0, 1], [128, 0, 51])
    grey[0, 0] = np.nan
    grey[1, 1] = -np.inf
    with pytest.raises(ValueError, match='2 of 4 values of the 32FC1 image are NaN or inf'):
        conversions.image_to_rgb8(conversions.array_to_image(grey, '32FC1'))


# ---------------------------------------------------------------------- stereo outputs

CAMERA = StereoCamera(width=6, height=4, fx=500.0, fy=501.0, cx=3.1, cy=1.9, baseline=0.12,
                      cx_right=2.6, frame_id='left_optical')


def test_disparity_image():
    disparity = np.full((4, 6), np.nan, np.float32)
    disparity[1:3, 2:5] = RNG.uniform(1, 50, (2, 3))
    disparity[2, 4] = np.inf
    h = header()
    msg = conversions.make_disparity_image(disparity, CAMERA, h, min_disparity=0.5,
                                           max_disparity=64.0, delta_d=0.0625)
    assert msg.header.frame_id == msg.image.header.frame_id == 'left_optical'
    assert msg.header.stamp.nanosec == msg.image.header.stamp.nanosec == 34
    assert msg.image.encoding == '32FC1' and (msg.image.height, msg.image.width) == (4, 6)
    assert msg.f == pytest.approx(500.0) and msg.t == pytest.approx(0.12)
    assert (msg.min_disparity, msg.max_disparity, msg.delta_d) == (0.5, 64.0, 0.0625)
    image = reference_decode(msg.image)
    finite = np.isfinite(disparity)
    np.testing.assert_array_equal(image[finite], disparity[finite])
    assert (image[~finite] == -0.5).all()  # min_disparity - 1: invalid by the message's rule
    window = msg.valid_window
    assert (window.x_offset, window.y_offset, window.width, window.height) == (2, 1, 3, 2)
    received = deserialize_message(serialize_message(msg), type(msg))
    np.testing.assert_array_equal(conversions.image_to_array(received.image), image)


def test_disparity_image_window_and_errors():
    disparity = np.ones((4, 6), np.float32)
    msg = conversions.make_disparity_image(disparity, CAMERA, header(), min_disparity=0.0,
                                           max_disparity=10.0, delta_d=1.0,
                                           valid_window=(1, 2, 3, 1))
    window = msg.valid_window
    assert (window.x_offset, window.y_offset, window.width, window.height) == (1, 2, 3, 1)
    empty = conversions.make_disparity_image(np.full((4, 6), np.nan, np.float32), CAMERA, header(),
                                             min_disparity=0.0, max_disparity=10.0, delta_d=1.0)
    assert empty.valid_window.width == 0 and empty.valid_window.height == 0
    with pytest.raises(ValueError, match=r'\(H, W\)'):
        conversions.make_disparity_image(np.ones((2, 2, 2), np.float32), CAMERA, header(),
                                         min_disparity=0.0, max_disparity=1.0, delta_d=1.0)
    with pytest.raises(ValueError, match='min_disparity <= max_disparity'):
        conversions.make_disparity_image(disparity, CAMERA, header(), min_disparity=5.0,
                                         max_disparity=1.0, delta_d=1.0)


def test_depth_image():
    depth = RNG.uniform(0.5, 5, (4, 6)).astype(np.float32)
    depth[0, 0] = np.nan
    msg = conversions.make_depth_image(depth, header())
    assert msg.encoding == '32FC1' and msg.step == 24 and msg.header.frame_id == 'left_optical'
    np.testing.assert_array_equal(reference_decode(msg), depth)


def test_camera_info():
    msg = conversions.make_camera_info(CAMERA, header())
    assert (msg.width, msg.height) == (6, 4) and msg.header.frame_id == 'left_optical'
    np.testing.assert_array_equal(np.reshape(msg.k, (3, 3)), CAMERA.K)
    np.testing.assert_array_equal(np.reshape(msg.r, (3, 3)), np.eye(3))
    np.testing.assert_array_equal(msg.p, [500.0, 0, 3.1, 0, 0, 501.0, 1.9, 0, 0, 0, 1, 0])
    assert msg.distortion_model == 'plumb_bob' and list(msg.d) == [0.0] * 5
    deserialize_message(serialize_message(msg), type(msg))


# ---------------------------------------------------------------------- PointCloud2

def decode_point(msg, row, col):
    """Read one point with struct from the raw bytes, field by field."""
    order = '>' if msg.is_bigendian else '<'
    base = row * msg.row_step + col * msg.point_step
    data = bytes(msg.data)
    values = {}
    for field in msg.fields:
        code = {PointField.FLOAT32: 'f', PointField.UINT32: 'I'}[field.datatype]
        values[field.name] = struct.unpack_from(order + code, data, base + field.offset)[0]
    if 'rgb' in values:
        values['rgb_bits'] = struct.unpack_from(order + 'I', data,
                                                base + field_offset(msg, 'rgb'))[0]
    return values


def field_offset(msg, name):
    return next(f.offset for f in msg.fields if f.name == name)


def organized_points(height=5, width=7):
    points = RNG.uniform(-3, 3, (height, width, 3)).astype(np.float32)
    points[1, 2] = np.nan
    points[4, 6] = np.nan
    rgb = RNG.integers(0, 256, (height, width, 3), dtype=np.uint8)
    return points, rgb


def test_point_cloud_with_rgb_layout():
    points, rgb = organized_points()
    msg = conversions.make_point_cloud(points, rgb, header())
    assert (msg.height, msg.width, msg.point_step, msg.row_step) == (5, 7, 16, 112)
    assert [(f.name, f.offset, f.datatype, f.count) for f in msg.fields] == [
        ('x', 0, PointField.FLOAT32, 1), ('y', 4, PointField.FLOAT32, 1),
        ('z', 8, PointField.FLOAT32, 1), ('rgb', 12, PointField.FLOAT32, 1)]
    assert msg.is_dense is False and msg.is_bigendian == (sys.byteorder == 'big')
    assert len(msg.data) == 5 * 112 and msg.header.frame_id == 'left_optical'
    for row, col in [(0, 0), (2, 3), (4, 5), (1, 2), (4, 6)]:
        point = decode_point(msg, row, col)
        for axis, name in enumerate('xyz'):
            expected = points[row, col, axis]
            if math.isnan(expected):
                assert math.isnan(point[name])
            else:
                assert point[name] == expected
        r, g, b = (int(c) for c in rgb[row, col])
        assert point['rgb_bits'] == (r << 16) | (g << 8) | b


def test_point_cloud_without_in_place_opencv(monkeypatch):
    """An OpenCV that returns new arrays from mixChannels: the numpy fallback gives the same."""
    points, rgb = organized_points()
    expected = bytes(conversions.make_point_cloud(points, rgb, header()).data)
    monkeypatch.setattr(conversions.cv2, 'mixChannels',
                        lambda src, dst, pairs: [d.copy() for d in dst])
    assert bytes(conversions.make_point_cloud(points, rgb, header()).data) == expected


def test_point_cloud_empty_and_float64():
    msg = conversions.make_point_cloud(np.zeros((0, 3)), np.zeros((0, 3), np.uint8), header())
    assert (msg.height, msg.width, len(msg.data)) == (1, 0, 0)
    points, rgb = organized_points()
    msg = conversions.make_point_cloud(points.astype(np.float64), rgb, header())
    np.testing.assert_array_equal(read_points(msg)['y'], points[..., 1])


def test_point_cloud_xyz_only_like_create_cloud_xyz32():
    points, _ = organized_points()
    msg = conversions.make_point_cloud(points, None, header())
    assert (msg.point_step, msg.row_step) == (12, 84)
    assert [f.name for f in msg.fields] == ['x', 'y', 'z']
    flat = np.frombuffer(bytes(msg.data), '<f4' if not msg.is_bigendian else '>f4')
    np.testing.assert_array_equal(flat.reshape(5, 7, 3), points)


def test_point_cloud_unorganized_and_errors():
    points, rgb = organized_points()
    msg = conversions.make_point_cloud(points[0], rgb[0], header())
    assert (msg.height, msg.width) == (1, 7)
    np.testing.assert_array_equal(read_points(msg)['z'][0], points[0, :, 2])
    with pytest.raises(ValueError, match=r'\(H, W, 3\)'):
        conversions.make_point_cloud(np.zeros((2, 2, 4), np.float32), None, header())
    with pytest.raises(ValueError, match='rgb must be uint8'):
        conversions.make_point_cloud(points, rgb.astype(np.float32), header())


def test_read_points_round_trip_and_serialization():
    points, rgb = organized_points()
    cloud = conversions.make_point_cloud(points, rgb, header())
    msg = deserialize_message(serialize_message(cloud), PointCloud2)
    cloud = read_points(msg)
    assert cloud.shape == (5, 7) and cloud.dtype.names == ('x', 'y', 'z', 'rgb')
    for axis, name in enumerate('xyz'):
        np.testing.assert_array_equal(cloud[name], points[..., axis])
    packed = cloud['rgb'].view(np.uint32)
    np.testing.assert_array_equal(packed >> 16, rgb[..., 0])
    np.testing.assert_array_equal((packed >> 8) & 0xFF, rgb[..., 1])
    np.testing.assert_array_equal(packed & 0xFF, rgb[..., 2])


def test_read_points_honours_row_step_endianness_count_and_unnamed():
    """A hand-made cloud: big-endian, padded rows, a count=2 field and an unnamed field."""
    height, width, point_step, row_step = 3, 4, 20, 4 * 20 + 8
    fields = [PointField(name='x', offset=0, datatype=PointField.FLOAT32, count=1),
              PointField(name='intensity', offset=4, datatype=PointField.UINT16, count=1),
              PointField(name='normal', offset=8, datatype=PointField.FLOAT32, count=2),
              PointField(name='', offset=16, datatype=PointField.INT8, count=1)]
    data = bytearray(b'\xee' * (height * row_step))
    for row in range(height):
        for col in range(width):
            base = row * row_step + col * point_step
            struct.pack_into('>fHxx2fb', data, base, row + col / 10, 100 * row + col,
                             -row, col + 0.5, col - row)
    msg = PointCloud2(height=height, width=width, fields=fields, is_bigendian=True,
                      point_step=point_step, row_step=row_step)
    msg.data = array.array('B', bytes(data))
    cloud = read_points(msg)
    assert cloud.shape == (3, 4)
    assert cloud.dtype.names == ('x', 'intensity', 'normal', 'unnamed_field_3')
    rows, cols = np.mgrid[0:3, 0:4]
    np.testing.assert_allclose(cloud['x'], rows + cols / 10, rtol=1e-6)
    np.testing.assert_array_equal(cloud['intensity'], 100 * rows + cols)
    np.testing.assert_array_equal(cloud['normal'][..., 0], -rows)
    np.testing.assert_array_equal(cloud['normal'][..., 1], cols + 0.5)
    np.testing.assert_array_equal(cloud['unnamed_field_3'], cols - rows)
    assert cloud['intensity'].dtype.isnative


def test_read_points_errors():
    msg = PointCloud2(height=2, width=2, point_step=4, row_step=8, fields=[
        PointField(name='x', offset=0, datatype=PointField.FLOAT32, count=1)])
    msg.data = array.array('B', bytes(12))
    with pytest.raises(ValueError, match='data has 12 bytes, needs 16'):
        read_points(msg)
    msg.fields[0].datatype = 42
    with pytest.raises(ValueError, match='unknown datatype 42'):
        read_points(msg)


# ---------------------------------------------------------------------- CompressedImage

def compressed(array_, extension, fmt, params=()):
    ok, encoded = cv2.imencode(extension, array_, list(params))
    assert ok
    return CompressedImage(format=fmt, data=encoded.tobytes())


def scene_rgb(dtype=np.uint8):
    """Make a smooth colour image (so JPEG stays close) with distinct channels."""
    v, u = np.mgrid[0:48, 0:64]
    rgb = np.stack([u * 4, v * 5, 255 - u * 2 - v], axis=-1).astype(np.float64)
    if dtype == np.uint16:
        return (rgb * 257).astype(np.uint16)
    return rgb.astype(np.uint8)


@pytest.mark.parametrize('encoding, fmt, encoded_layout', [
    ('rgb8', 'rgb8; png compressed bgr8', 'bgr'),      # compressed_image_transport's own
    ('bgr8', 'bgr8; png compressed bgr8', 'bgr'),
    ('rgb8', 'rgb8; png compressed rgb8', 'rgb'),      # a publisher that encoded RGB data
    ('bgr8', 'png', 'bgr'),                             # old publishers: no encoding given
    ('rgb16', 'rgb16; png compressed bgr16', 'bgr'),
    ('bgra8', 'bgra8; png compressed bgra8', 'bgra'),
])
def test_compressed_png_decodes_like_the_raw_image(encoding, fmt, encoded_layout):
    rgb = scene_rgb(np.uint16 if encoding.endswith('16') else np.uint8)
    raw = rgb[..., ::-1] if encoding.startswith('bgr') else rgb
    if encoding == 'bgra8':
        raw = np.dstack([raw, np.full(raw.shape[:2], 200, np.uint8)])
    payload = {'bgr': rgb[..., ::-1], 'rgb': rgb,
               'bgra': np.dstack([rgb[..., ::-1], np.full(rgb.shape[:2], 200, np.uint8)])}
    msg = compressed(np.ascontiguousarray(payload[encoded_layout]), '.png', fmt)
    expected = conversions.image_to_rgb8(conversions.array_to_image(raw, encoding))
    np.testing.assert_array_equal(conversions.compressed_to_rgb8(msg), expected)


@pytest.mark.parametrize('encoding, fmt', [
    ('mono8', 'mono8; png compressed '),
    ('mono16', 'mono16; png compressed mono16'),
    ('mono8', 'mono8; jpeg compressed mono8'),
])
def test_compressed_grey_decodes_like_the_raw_image(encoding, fmt):
    grey = scene_rgb(np.uint16 if encoding == 'mono16' else np.uint8)[..., 1]
    msg = compressed(grey, '.jpg' if 'jpeg' in fmt else '.png', fmt,
                     (cv2.IMWRITE_JPEG_QUALITY, 100))
    expected = conversions.image_to_rgb8(conversions.array_to_image(grey, encoding))
    out = conversions.compressed_to_rgb8(msg)
    assert out.dtype == np.uint8 and out.shape == expected.shape
    tolerance = 2 if 'jpeg' in fmt else 0
    assert np.abs(out.astype(int) - expected.astype(int)).max() <= tolerance


def test_compressed_jpeg_colour_order_from_format():
    rgb = scene_rgb()
    msg = compressed(np.ascontiguousarray(rgb[..., ::-1]), '.jpg', 'rgb8; jpeg compressed bgr8',
                     (cv2.IMWRITE_JPEG_QUALITY, 95))
    out = conversions.compressed_to_rgb8(msg)
    error = np.abs(out.astype(int) - rgb.astype(int))
    assert error.mean() < 2.0
    # Reading the same bytes in the wrong order would swap red and blue: far off.
    assert np.abs(out[..., ::-1].astype(int) - rgb.astype(int)).mean() > 30


@pytest.mark.parametrize('fmt, data, error, match', [
    ('16UC1; compressedDepth png', b'\x00' * 12, conversions.UnsupportedEncodingError,
     'compressedDepth, the depth-image transport'),
    ('h264', b'\x00\x00\x00\x01', conversions.UnsupportedEncodingError,
     'not image_transport compressed'),
    ('rgb8; jpeg compressed bgr8', b'\xff\xd8\xff\xe0 not really a jpeg', ValueError,
     r'does not decode as jpeg.*truncated or corrupt'),
    ('png', b'', ValueError, r'\(0 bytes, format .png.\) does not decode'),
])
def test_compressed_bad_input_says_what_to_do(fmt, data, error, match):
    with pytest.raises(error, match=match):
        conversions.compressed_to_rgb8(CompressedImage(format=fmt, data=data))


def test_compressed_truncated_png():
    msg = compressed(scene_rgb(), '.png', 'rgb8; png compressed bgr8')
    msg.data = bytes(msg.data)[:len(msg.data) // 2]
    with pytest.raises(ValueError, match='does not decode as png'):
        conversions.compressed_to_rgb8(msg)

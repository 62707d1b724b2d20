"""Reading PointCloud2 messages back in tests: an independent decoder of the message layout.

It follows sensor_msgs_py's ``point_cloud2.read_points`` (field offsets, ``point_step``,
``row_step`` padding, endianness, ``count > 1``, unnamed fields) and shares no code with the
package's PointCloud2 builder, so tests that read clouds with it check the builder.
"""
from __future__ import annotations

import numpy as np
from sensor_msgs.msg import PointCloud2, PointField

POINT_FIELD_DTYPES = {
    PointField.INT8: 'i1', PointField.UINT8: 'u1', PointField.INT16: 'i2',
    PointField.UINT16: 'u2', PointField.INT32: 'i4', PointField.UINT32: 'u4',
    PointField.FLOAT32: 'f4', PointField.FLOAT64: 'f8',
}


def read_points(msg: PointCloud2) -> np.ndarray:
    """PointCloud2 as a structured array of shape (height, width), fields named as in the message.

    Honours field offsets, ``point_step``, ``row_step`` (row padding) and ``is_bigendian``
    (converted to native order); fields with ``count > 1`` become subarray fields. The result
    is a view of ``msg.data`` when no conversion is needed. Packed colour:
    ``points['rgb'].view(np.uint32)``.
    """
    names, formats, offsets = [], [], []
    order = '>' if msg.is_bigendian else '<'
    for i, field in enumerate(msg.fields):
        if field.datatype not in POINT_FIELD_DTYPES:
            raise ValueError(f'PointField {field.name!r} has unknown datatype {field.datatype}')
        base = np.dtype(order + POINT_FIELD_DTYPES[field.datatype])
        names.append(field.name or f'unnamed_field_{i}')  # sensor_msgs_py's name for ''
        formats.append(base if field.count == 1 else (base, (int(field.count),)))
        offsets.append(field.offset)
    dtype = np.dtype({'names': names, 'formats': formats, 'offsets': offsets,
                      'itemsize': int(msg.point_step)})
    height, width = int(msg.height), int(msg.width)
    row_step = int(msg.row_step) if msg.row_step else width * dtype.itemsize
    if row_step < width * dtype.itemsize:
        raise ValueError(f'malformed PointCloud2: row_step {row_step} < width {width} * '
                         f'point_step {dtype.itemsize}')
    buffer = np.frombuffer(msg.data, dtype=np.uint8)
    needed = (height - 1) * row_step + width * dtype.itemsize if height and width else 0
    if buffer.size < needed:
        raise ValueError(f'malformed PointCloud2: data has {buffer.size} bytes, needs {needed}')
    points = np.ndarray(shape=(height, width), dtype=dtype, buffer=buffer,
                        strides=(row_step, dtype.itemsize))
    if not all(dtype.fields[n][0].base.isnative or dtype.fields[n][0].base.itemsize == 1
               for n in names):
        points = points.astype(dtype.newbyteorder('='))
    return points

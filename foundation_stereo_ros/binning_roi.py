"""Binning and ROI (REP 104): where a camera's images lie on its calibrated sensor.

A CameraInfo's K and P describe the full sensor; its ``roi`` (in sensor pixels) and then
``binning_x``/``binning_y`` say which part of the sensor the images show, at what resolution.
:class:`ImageGeometry` reads and checks those fields, maps full-sensor intrinsics to the images
and explains an image size that disagrees with them. The camera model
(:mod:`~foundation_stereo_ros.camera`) and the rectifier
(:mod:`~foundation_stereo_ros.rectification`) build on it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from foundation_stereo_ros.camera_info import CameraInfoError, which_camera_info

__all__ = ['ImageGeometry']


@dataclass(frozen=True)
class ImageGeometry:
    """Where one camera's images lie on its calibrated sensor: binning and ROI (REP 104).

    K and P describe the full sensor (``full_size``, the CameraInfo width and height). A ROI,
    given in full-sensor pixels, crops the sensor; binning then combines ``binning_x`` by
    ``binning_y`` blocks into one pixel, so the images are ``roi.width // binning_x`` by
    ``roi.height // binning_y``. :meth:`apply` maps intrinsics to those images.
    """

    full_size: tuple[int, int]
    binning_x: int = 1
    binning_y: int = 1
    roi: tuple[int, int, int, int] | None = None  # x_offset, y_offset, width, height

    @classmethod
    def from_camera_info(cls, info: Any, side: str = '') -> ImageGeometry:
        """Read and check width, height, binning and ROI; CameraInfoError saying what to fix."""
        which = which_camera_info(side)
        width, height = int(getattr(info, 'width', 0)), int(getattr(info, 'height', 0))
        if width <= 0 or height <= 0:
            raise CameraInfoError(
                f'{which} has image size {width}x{height}; the camera driver must fill width '
                'and height (load a calibration file with camera_info_manager)')
        # REP 104: binning 0 means 1 (no binning).
        binning_x = max(int(getattr(info, 'binning_x', 0) or 0), 1)
        binning_y = max(int(getattr(info, 'binning_y', 0) or 0), 1)
        roi = getattr(info, 'roi', None)
        x, y, w, h = (int(getattr(roi, name, 0) or 0)
                      for name in ('x_offset', 'y_offset', 'width', 'height'))
        box: tuple[int, int, int, int] | None = (x, y, w, h)
        if (x, y, w, h) == (0, 0, 0, 0) or (x, y, w, h) == (0, 0, width, height):
            box = None  # REP 104: an all-zero ROI is the full image
        elif w <= 0 or h <= 0 or x + w > width or y + h > height:
            raise CameraInfoError(
                f'{which} ROI {w}x{h} at ({x}, {y}) does not fit in the calibrated '
                f'{width}x{height} image; the ROI is in full-sensor pixels (REP 104): set it to '
                'the sensor window the images come from, or all zeros for the full image')
        crop_w, crop_h = (width, height) if box is None else (w, h)
        if crop_w // binning_x == 0 or crop_h // binning_y == 0:
            raise CameraInfoError(
                f'{which} binning {binning_x}x{binning_y} leaves no pixel of the {crop_w}x'
                f'{crop_h} image; set binning_x/binning_y to the camera\'s binning')
        return cls((width, height), binning_x, binning_y, box)

    @property
    def adjusts(self) -> bool:
        """Tell whether binning or a ROI makes the images differ from the full sensor."""
        return self.roi is not None or self.binning_x > 1 or self.binning_y > 1

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the images."""
        crop_w, crop_h = self.full_size if self.roi is None else self.roi[2:]
        return crop_w // self.binning_x, crop_h // self.binning_y

    def apply(self, fx: float, fy: float, cx: float, cy: float) -> tuple[float, ...]:
        """Full-sensor intrinsics to those of the images: (fx, fy, cx, cy).

        The ROI offset moves the principal point; binning divides the focal lengths and maps
        the principal point with pixel centres: binned pixel ``u`` is the mean of sensor pixels
        ``b * u .. b * u + b - 1`` (after the ROI offset), centred on ``b * u + (b - 1) / 2``,
        so ``c' = (c - offset + 0.5) / b - 0.5`` (OpenCV's pixel-centre convention of resizing).
        image_geometry divides ``c - offset`` by ``b`` instead, 0.25 px away at ``b = 2``.
        """
        x_off, y_off = (0, 0) if self.roi is None else self.roi[:2]
        bx, by = self.binning_x, self.binning_y
        return (fx / bx, fy / by, (cx - x_off + 0.5) / bx - 0.5, (cy - y_off + 0.5) / by - 0.5)

    def describe(self) -> str:
        """Say how the image size follows from the calibration, for messages."""
        width, height = self.full_size
        parts = [f'calibrated at {width}x{height}']
        if self.roi is not None:
            x, y, w, h = self.roi
            parts.append(f'ROI {w}x{h} at ({x}, {y})')
        if self.binning_x > 1 or self.binning_y > 1:
            parts.append(f'binning {self.binning_x}x{self.binning_y}')
        if not self.adjusts:
            return f'{width}x{height} (full sensor, no binning or ROI)'
        width, height = self.size
        return ', '.join(parts) + f': {width}x{height} images'

    def size_mismatch(self, width: int, height: int) -> str:
        """Why ``width`` x ``height`` images disagree with this geometry, and what to fix.

        Names binning and ROI when the CameraInfo uses them, or when the images have the size
        they would have without them (a driver that reports a mode its images are not in).
        """
        full_w, full_h = self.full_size
        bx, by = self.binning_x, self.binning_y
        said = (f'images are {width}x{height} but CameraInfo says '
                f'{self.size[0]}x{self.size[1]} ({self.describe()})')
        if not self.adjusts:
            if (width, height) in ((full_w // 2, full_h // 2), (full_w // 4, full_h // 4)):
                hint = ('the images look binned or resized: a driver that bins must set '
                        'binning_x and binning_y in CameraInfo (REP 104); otherwise publish the '
                        'CameraInfo calibrated at this resolution')
            else:
                hint = ('publish the CameraInfo of these images; a camera that crops its sensor '
                        'must set the ROI in CameraInfo (REP 104)')
        elif (width, height) == (full_w, full_h):
            hint = ('the images are full frames: the driver reports binning or a ROI that its '
                    'images do not have; set CameraInfo binning_x/binning_y to 0 and the ROI to '
                    'all zeros, or configure the camera to bin/crop')
        elif self.roi is not None and (width, height) == self.roi[2:]:
            hint = (f'the images have the ROI size without the binning {bx}x{by}: set '
                    'binning_x/binning_y to what the camera does')
        elif self.roi is not None and (width, height) == (full_w // bx, full_h // by):
            hint = ('the images are binned full frames: the ROI in CameraInfo is not applied '
                    'to them; set the ROI to all zeros or configure the camera to crop')
        else:
            hint = ('the CameraInfo binning and ROI must describe the images (REP 104: the ROI '
                    'in full-sensor pixels, then binning)')
        return f'{said}; {hint}'

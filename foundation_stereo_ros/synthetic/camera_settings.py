"""Every parameter of the synthetic stereo camera node, declared once (no ROS import).

The node (:mod:`foundation_stereo_ros.ros.synthetic_camera`) declares :data:`SETTINGS`;
``config/synthetic_camera.yaml``, the demo launch file's parameters, is generated from it::

    python -m foundation_stereo_ros.synthetic.camera_settings > config/synthetic_camera.yaml
"""
from __future__ import annotations

from foundation_stereo_ros.settings import Setting, params_yaml

ENCODINGS = ('rgb8', 'bgr8', 'mono8')
QOS_CHOICES = ('sensor_data', 'reliable')

# All read-only: the scenes are generated once at start.
SETTINGS: tuple[Setting, ...] = (
    Setting('width', 640, 'Image width (pixels).', low=16, high=8192, step=1),
    Setting('height', 480, 'Image height (pixels).', low=16, high=8192, step=1),
    Setting('rate', 10.0, 'Frames per second.', low=0.1, high=1000.0),
    Setting('seed', 0, 'Scene seed (scene k uses seed + k).', low=0, high=2**31 - 1, step=1),
    Setting('frame_id', 'left_camera_optical_frame',
            'Frame of the left camera (REP 103 optical frame); outputs use it.'),
    Setting('right_frame_id', 'right_camera_optical_frame', 'Frame of the right camera.'),
    Setting('encoding', 'rgb8', 'Image encoding.', choices=ENCODINGS),
    Setting('moving', False, 'Cycle through num_scenes scenes, one per frame.'),
    Setting('num_scenes', 4, 'Scenes generated when moving.', low=1, high=64, step=1),
    Setting('baseline', 0.12, 'Stereo baseline (metres).', low=0.001, high=10.0),
    Setting('noise', 0.0, 'Gaussian image noise (grey levels).', low=0.0, high=50.0),
    Setting('qos', 'sensor_data', 'Publisher QoS: sensor_data (best effort) or reliable.',
            choices=QOS_CHOICES),
)

# What the demo launch file changes from the node's defaults: a scene that moves.
DEMO_VALUES = {'moving': True}

_YAML_HEADER = """\
# Parameters of synthetic_stereo_camera as launch/synthetic_demo.launch.py runs it: the
# node's defaults except moving: true. Generated from foundation_stereo_ros/synthetic/
# camera_settings.py (python -m foundation_stereo_ros.synthetic.camera_settings > this file);
# a test keeps the two equal.
/**:
  ros__parameters:
"""


def camera_params_yaml() -> str:
    """Return the text of ``config/synthetic_camera.yaml``."""
    return params_yaml(SETTINGS, _YAML_HEADER, DEMO_VALUES)


if __name__ == '__main__':
    print(camera_params_yaml(), end='')

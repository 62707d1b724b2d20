"""Demo without hardware: the synthetic stereo camera feeding the FoundationStereo node.

    ros2 launch foundation_stereo_ros synthetic_demo.launch.py            # SGBM, no weights
    ros2 launch foundation_stereo_ros synthetic_demo.launch.py \
        backend:=foundation_stereo checkpoint:=/path/to/model_best_bp2.pth
    # two synthetic cameras into one node (stereo/front/..., stereo/rear/...):
    ros2 launch foundation_stereo_ros synthetic_demo.launch.py cameras:=[front,rear]
    # Fast-FoundationStereo (serialized .pth or converted .safetensors), or an ONNX export:
    ros2 launch foundation_stereo_ros synthetic_demo.launch.py \
        backend:=foundation_stereo checkpoint:=/path/to/c_ffs.safetensors
    ros2 launch foundation_stereo_ros synthetic_demo.launch.py backend:=onnx model:=fs.onnx

Both nodes live in one namespace, so the camera's topics are the node's inputs unchanged; with
``cameras``, each synthetic camera publishes under its own name (its own scenes and frames).
Then look at disparity/image_color, depth/image_rect or points (fixed frame:
left_camera_optical_frame) in rviz2.
"""
import importlib.util
from pathlib import Path

from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription, OpaqueFunction
from launch.launch_description import LaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

PACKAGE = 'foundation_stereo_ros'
HERE = Path(__file__).resolve().parent
CAMERA_PARAMS = str(HERE.parent / 'config' / 'synthetic_camera.yaml')
STEREO_LAUNCH = HERE / 'foundation_stereo.launch.py'


def _stereo_launch():
    """Load the node's launch file as a module: its argument parsing is used here too."""
    spec = importlib.util.spec_from_file_location('foundation_stereo_launch', STEREO_LAUNCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cameras(context, *args, **kwargs):
    """One synthetic camera per name of ``cameras`` (one in the namespace when empty)."""
    config = context.launch_configurations
    namespace = config['namespace']
    names = _stereo_launch().parse_list(config['cameras']) or ['']
    nodes = []
    for index, name in enumerate(names):
        prefix = f'{name}_' if name else ''
        nodes.append(Node(
            package=PACKAGE,
            executable='synthetic_stereo_camera',
            name='synthetic_stereo_camera',
            namespace=f'{namespace}/{name}' if name else namespace,
            parameters=[config['camera_params_file'], {
                'rate': float(config['rate']),
                # Each camera its own scenes and frames (seeds far apart: scene k is seed + k).
                'seed': 1000 * index,
                'frame_id': f'{prefix}left_camera_optical_frame',
                'right_frame_id': f'{prefix}right_camera_optical_frame'}],
            output='screen',
        ))
    return nodes


def generate_launch_description() -> LaunchDescription:
    """Launch description: synthetic camera(s) + the stereo node (foundation_stereo.launch.py)."""
    stereo = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(str(STEREO_LAUNCH)),
        launch_arguments={
            'namespace': LaunchConfiguration('namespace'),
            'backend': LaunchConfiguration('backend'),
            'checkpoint': LaunchConfiguration('checkpoint'),
            'cameras': LaunchConfiguration('cameras'),
            'model': LaunchConfiguration('model'),
        }.items(),
    )
    return LaunchDescription([
        DeclareLaunchArgument('namespace', default_value='stereo',
                              description='Namespace of both nodes.'),
        DeclareLaunchArgument('backend', default_value='sgbm',
                              description='foundation_stereo, onnx or sgbm.'),
        DeclareLaunchArgument('checkpoint', default_value='',
                              description='FoundationStereo or Fast-FoundationStereo .pth or '
                                          '.safetensors, for backend foundation_stereo.'),
        DeclareLaunchArgument('cameras', default_value='',
                              description='Synthetic cameras into one node, e.g. [front,rear]; '
                                          'empty: one camera at the node\'s topics.'),
        DeclareLaunchArgument('model', default_value='',
                              description='ONNX export, for backend onnx.'),
        DeclareLaunchArgument('rate', default_value='10.0',
                              description='Synthetic camera frame rate (Hz).'),
        DeclareLaunchArgument('camera_params_file', default_value=CAMERA_PARAMS,
                              description='Parameters of the synthetic camera.'),
        OpaqueFunction(function=_cameras),
        stereo,
    ])

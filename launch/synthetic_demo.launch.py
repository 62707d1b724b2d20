"""Demo without hardware: the synthetic stereo camera feeding the FoundationStereo node.

    ros2 launch foundation_stereo_ros synthetic_demo.launch.py            # SGBM, no weights
    ros2 launch foundation_stereo_ros synthetic_demo.launch.py \
        backend:=foundation_stereo checkpoint:=/path/to/model_best_bp2.pth
    # Fast-FoundationStereo (serialized .pth or converted .safetensors), or an ONNX export:
    ros2 launch foundation_stereo_ros synthetic_demo.launch.py \
        backend:=foundation_stereo checkpoint:=/path/to/c_ffs.safetensors
    ros2 launch foundation_stereo_ros synthetic_demo.launch.py backend:=onnx model:=fs.onnx

Both nodes live in one namespace, so the camera's topics are the node's inputs unchanged.
Then look at disparity/image_color, depth/image_rect or points (fixed frame:
left_camera_optical_frame) in rviz2.
"""
from pathlib import Path

from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.launch_description import LaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

PACKAGE = 'foundation_stereo_ros'
HERE = Path(__file__).resolve().parent
CAMERA_PARAMS = str(HERE.parent / 'config' / 'synthetic_camera.yaml')


def generate_launch_description() -> LaunchDescription:
    """Launch description: synthetic camera + the stereo node (foundation_stereo.launch.py)."""
    namespace = LaunchConfiguration('namespace')
    camera = Node(
        package=PACKAGE,
        executable='synthetic_stereo_camera',
        name='synthetic_stereo_camera',
        namespace=namespace,
        parameters=[LaunchConfiguration('camera_params_file'),
                    # ParameterValue keeps rate:=15 a float (the parameter is a double).
                    {'rate': ParameterValue(LaunchConfiguration('rate'), value_type=float)}],
        output='screen',
    )
    stereo = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(str(HERE / 'foundation_stereo.launch.py')),
        launch_arguments={
            'namespace': namespace,
            'backend': LaunchConfiguration('backend'),
            'checkpoint': LaunchConfiguration('checkpoint'),
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
        DeclareLaunchArgument('model', default_value='',
                              description='ONNX export, for backend onnx.'),
        DeclareLaunchArgument('rate', default_value='10.0',
                              description='Synthetic camera frame rate (Hz).'),
        DeclareLaunchArgument('camera_params_file', default_value=CAMERA_PARAMS,
                              description='Parameters of the synthetic camera.'),
        camera,
        stereo,
    ])

"""Launch the FoundationStereo node on a stereo camera.

    ros2 launch foundation_stereo_ros foundation_stereo.launch.py \
        namespace:=stereo checkpoint:=/path/to/model_best_bp2.pth \
        left_image:=left/image_rect_color right_image:=right/image_rect_color
    # a raw camera, rectified by the node; compressed images:
    ros2 launch foundation_stereo_ros foundation_stereo.launch.py checkpoint:=... \
        rectify:=true image_transport:=compressed

Arguments: namespace, backend, checkpoint, rectify and image_transport (override the params
file when not empty), params_file, the input topics (remaps, relative to the namespace unless
absolute; left_raw_image/right_raw_image are read with rectify:=true, and compressed images
on <image topic>/compressed), log_level. Outputs appear under the namespace: disparity,
depth/image_rect, points...

A params_file that does not exist fails the launch with its path. When the node ends, the
launch ends; when it fails (at start: a missing checkpoint, a bad
parameter), ``ros2 launch`` fails too (exit code 1) instead of idling with exit code 0.
"""
from pathlib import Path

from launch.actions import DeclareLaunchArgument, OpaqueFunction, Shutdown
from launch.launch_description import LaunchDescription
from launch_ros.actions import Node

PACKAGE = 'foundation_stereo_ros'
# Installed: share/<pkg>/launch/ beside share/<pkg>/config/; the source tree has the same layout.
DEFAULT_PARAMS = str(Path(__file__).resolve().parent.parent / 'config' / 'foundation_stereo.yaml')

# (launch argument, node topic it remaps)
TOPIC_ARGUMENTS = (
    ('left_image', 'left/image_rect'),
    ('left_info', 'left/camera_info'),
    ('right_image', 'right/image_rect'),
    ('right_info', 'right/camera_info'),
    ('left_raw_image', 'left/image_raw'),
    ('right_raw_image', 'right/image_raw'),
)
# Launch arguments that override the params file when not empty.
OVERRIDES = ('backend', 'checkpoint', 'rectify', 'image_transport')


def _override(name, text):
    # Launch arguments are strings; rectify is a boolean parameter.
    if name == 'rectify' and text.lower() in ('true', 'false'):
        return text.lower() == 'true'
    return text


def end_launch(event, context):
    """End the launch when the node exited, and fail it when the node failed.

    launch turns an exception in an event handler into exit code 1 of ``ros2 launch``
    (Humble and later); a Shutdown action alone would end it with 0.
    """
    if event.returncode != 0 and not context.is_shutdown:
        raise RuntimeError(f'{event.process_name} exited with code {event.returncode} (its '
                           'error is above); ending the launch')
    return [Shutdown(reason=f'{event.process_name} exited')]


def _params_file(path):
    # launch_ros only warns about a missing file and starts the node on its defaults.
    if not Path(path).is_file():
        raise RuntimeError(f'params_file:={path} does not exist: give the path of a ROS '
                           'parameters YAML file (the default is the package\'s '
                           'config/foundation_stereo.yaml)')
    return path


def _node(context, *args, **kwargs):
    config = context.launch_configurations
    parameters = [_params_file(config['params_file'])]
    overrides = {name: _override(name, config[name]) for name in OVERRIDES if config[name]}
    if overrides:
        parameters.append(overrides)
    return [Node(
        package=PACKAGE,
        executable='foundation_stereo_node',
        name=config['node_name'],
        namespace=config['namespace'],
        parameters=parameters,
        remappings=[(topic, config[arg]) for arg, topic in TOPIC_ARGUMENTS],
        ros_arguments=['--log-level', config['log_level']],
        output='screen',
        emulate_tty=True,
        on_exit=end_launch,
    )]


def generate_launch_description() -> LaunchDescription:
    """Launch description: the node with its parameters, namespace and remaps."""
    arguments = [
        DeclareLaunchArgument('namespace', default_value='stereo',
                              description='Namespace of the node and its topics.'),
        DeclareLaunchArgument('node_name', default_value='foundation_stereo',
                              description='Node name.'),
        DeclareLaunchArgument('params_file', default_value=DEFAULT_PARAMS,
                              description='ROS parameters YAML file.'),
        DeclareLaunchArgument('backend', default_value='',
                              description='foundation_stereo or sgbm; empty: params file.'),
        DeclareLaunchArgument('checkpoint', default_value='',
                              description='FoundationStereo .pth (cfg.yaml beside it); '
                                          'empty: params file.'),
        DeclareLaunchArgument('rectify', default_value='',
                              description='true: read image_raw and rectify it with the '
                                          'CameraInfo; empty: params file.'),
        DeclareLaunchArgument('image_transport', default_value='',
                              description='raw or compressed; empty: params file.'),
        DeclareLaunchArgument('log_level', default_value='info',
                              description='debug, info, warn, error or fatal.'),
    ]
    arguments += [DeclareLaunchArgument(arg, default_value=topic,
                                        description=f'Topic the node reads as {topic}.')
                  for arg, topic in TOPIC_ARGUMENTS]
    return LaunchDescription(arguments + [OpaqueFunction(function=_node)])

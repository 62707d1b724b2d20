"""Launch the FoundationStereo node on a stereo camera.

    ros2 launch foundation_stereo_ros foundation_stereo.launch.py \
        namespace:=stereo checkpoint:=/path/to/model_best_bp2.pth \
        left_image:=left/image_rect_color right_image:=right/image_rect_color
    # Fast-FoundationStereo: its serialized .pth (cfg.yaml beside it) or a converted
    # .safetensors; an exported network on ONNX Runtime / TensorRT:
    ros2 launch foundation_stereo_ros foundation_stereo.launch.py checkpoint:=c_ffs.safetensors
    ros2 launch foundation_stereo_ros foundation_stereo.launch.py backend:=onnx \
        model:=/path/to/foundation_stereo.onnx
    # a raw camera, rectified by the node; compressed images:
    ros2 launch foundation_stereo_ros foundation_stereo.launch.py checkpoint:=... \
        rectify:=true image_transport:=compressed
    # two cameras through one model (stereo/front/left/image_rect..., stereo/rear/...):
    ros2 launch foundation_stereo_ros foundation_stereo.launch.py checkpoint:=... \
        cameras:=[front,rear]
    # managed: the lifecycle node, driven to active unless autostart:=false
    ros2 launch foundation_stereo_ros foundation_stereo.launch.py checkpoint:=... lifecycle:=true

Arguments: namespace, backend (foundation_stereo, onnx or sgbm), checkpoint (either family),
model (the onnx backend's export), rectify, image_transport and cameras (override the params
file when not empty), lifecycle and autostart, params_file, the input topics (remaps,
relative to the namespace unless absolute; left_raw_image/right_raw_image are read with
rectify:=true, and compressed images on <image topic>/compressed), log_level. Outputs appear
under the namespace: disparity, depth/image_rect, points...

A params_file that does not exist fails the launch with its path. When the node ends, the
launch ends; when it fails (at start: a missing checkpoint, a bad
parameter), ``ros2 launch`` fails too (exit code 1) instead of idling with exit code 0.
"""
from pathlib import Path

from launch.actions import (
    DeclareLaunchArgument,
    EmitEvent,
    OpaqueFunction,
    RegisterEventHandler,
    Shutdown,
)
from launch.events import matches_action
from launch.launch_description import LaunchDescription
from launch_ros.actions import LifecycleNode, Node
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from lifecycle_msgs.msg import Transition

from foundation_stereo_ros.ros.topic_names import (
    INPUT_TOPICS,
    LEFT_IMAGE,
    RAW_INPUT_TOPICS,
    RIGHT_IMAGE,
)

PACKAGE = 'foundation_stereo_ros'
# Installed: share/<pkg>/launch/ beside share/<pkg>/config/; the source tree has the same layout.
DEFAULT_PARAMS = str(Path(__file__).resolve().parent.parent / 'config' / 'foundation_stereo.yaml')

# (launch argument, node topic it remaps): the node's inputs, then the raw images of rectify.
TOPIC_ARGUMENTS = (
    *zip(('left_image', 'left_info', 'right_image', 'right_info'), INPUT_TOPICS),
    ('left_raw_image', RAW_INPUT_TOPICS[LEFT_IMAGE]),
    ('right_raw_image', RAW_INPUT_TOPICS[RIGHT_IMAGE]),
)
# Launch arguments that override the params file when not empty.
OVERRIDES = ('backend', 'checkpoint', 'model', 'rectify', 'image_transport', 'cameras')


def parse_list(text):
    """Read a launch argument list, ``[front, rear]`` or ``front,rear``, as a list of strings."""
    items = text.strip().removeprefix('[').removesuffix(']').split(',')
    return [item.strip().strip('\'"') for item in items if item.strip()]


def _override(name, text):
    # Launch arguments are strings; rectify is a boolean parameter, cameras a string array.
    if name == 'rectify' and text.lower() in ('true', 'false'):
        return text.lower() == 'true'
    if name == 'cameras':
        return parse_list(text)
    return text


def _is_true(text):
    return text.strip().lower() in ('true', '1', 'yes')


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
    managed = _is_true(config['lifecycle'])
    node = (LifecycleNode if managed else Node)(
        package=PACKAGE,
        executable='foundation_stereo_lifecycle_node' if managed else 'foundation_stereo_node',
        name=config['node_name'],
        namespace=config['namespace'],
        parameters=parameters,
        remappings=[(topic, config[arg]) for arg, topic in TOPIC_ARGUMENTS],
        ros_arguments=['--log-level', config['log_level']],
        output='screen',
        emulate_tty=True,
        on_exit=end_launch,
    )
    if not managed or not _is_true(config['autostart']):
        return [node]
    # Driven to active by launch events: configure at start, activate once inactive.
    return [
        node,
        RegisterEventHandler(OnStateTransition(
            target_lifecycle_node=node, start_state='configuring', goal_state='inactive',
            entities=[EmitEvent(event=ChangeState(
                lifecycle_node_matcher=matches_action(node),
                transition_id=Transition.TRANSITION_ACTIVATE))])),
        EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node),
                                    transition_id=Transition.TRANSITION_CONFIGURE)),
    ]


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
                              description='foundation_stereo, onnx or sgbm; empty: params '
                                          'file.'),
        DeclareLaunchArgument('checkpoint', default_value='',
                              description='FoundationStereo or Fast-FoundationStereo .pth '
                                          '(cfg.yaml beside it) or converted .safetensors; '
                                          'empty: params file.'),
        DeclareLaunchArgument('model', default_value='',
                              description='ONNX export, for backend onnx; empty: params file.'),
        DeclareLaunchArgument('rectify', default_value='',
                              description='true: read image_raw and rectify it with the '
                                          'CameraInfo; empty: params file.'),
        DeclareLaunchArgument('image_transport', default_value='',
                              description='raw or compressed; empty: params file.'),
        DeclareLaunchArgument('cameras', default_value='',
                              description='Cameras through one model, e.g. [front,rear] '
                                          '(topics front/left/image_rect...); empty: params '
                                          'file (one camera at the node\'s topics).'),
        DeclareLaunchArgument('lifecycle', default_value='false',
                              description='true: the managed (lifecycle) node.'),
        DeclareLaunchArgument('autostart', default_value='true',
                              description='With lifecycle:=true: configure and activate it '
                                          'at launch; false: leave it to a lifecycle manager.'),
        DeclareLaunchArgument('log_level', default_value='info',
                              description='debug, info, warn, error or fatal.'),
    ]
    arguments += [DeclareLaunchArgument(arg, default_value=topic,
                                        description=f'Topic the node reads as {topic}.')
                  for arg, topic in TOPIC_ARGUMENTS]
    return LaunchDescription(arguments + [OpaqueFunction(function=_node)])

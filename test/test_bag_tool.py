"""The rosbag tool on generated bags, in both rosbag2 storage formats."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from rclpy.serialization import deserialize_message, serialize_message
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import String
from stereo_msgs.msg import DisparityImage

from foundation_stereo_ros import conversions
from foundation_stereo_ros.bag_tool import main, output_namespace
from foundation_stereo_ros.synthetic.camera_node import scene_to_messages
from foundation_stereo_ros.synthetic.scenes import make_scene

ROOT = Path(__file__).resolve().parent.parent
TOPICS = ('/stereo/left/image_rect', '/stereo/left/camera_info', '/stereo/right/image_rect',
          '/stereo/right/camera_info')
TYPES = (Image, CameraInfo, Image, CameraInfo)
TYPE_NAMES = ('sensor_msgs/msg/Image', 'sensor_msgs/msg/CameraInfo', 'sensor_msgs/msg/Image',
              'sensor_msgs/msg/CameraInfo')
CLI_TOPICS = ['--topics', *TOPICS]
SGBM = ['--backend', 'sgbm', '--num-disparities', '32', '--quiet']
STORAGE = {'mcap': StoragePlugin.MCAP, 'sqlite3': StoragePlugin.SQLITE3}


@pytest.fixture(scope='module')
def scenes():
    return [make_scene(160, 120, seed=seed) for seed in (11, 12)]


def write_bag(path, storage, frames, stamps):
    """Write a bag with the four stereo topics at ``stamps`` (seconds) plus an unrelated topic."""
    typestore = get_typestore(Stores.ROS2_JAZZY)
    with Writer(path, version=8, storage_plugin=STORAGE[storage]) as writer:
        conns = [writer.add_connection(t, n, typestore=typestore)
                 for t, n in zip(TOPICS, TYPE_NAMES)]
        chatter = writer.add_connection('/chatter', 'std_msgs/msg/String', typestore=typestore)
        log_time = 1_000_000_000
        for k, (frame, sec) in enumerate(zip(frames, stamps)):
            for conn, msg in zip(conns, frame):
                msg.header.stamp.sec, msg.header.stamp.nanosec = sec, 0
                log_time += 1000
                writer.write(conn, log_time, serialize_message(msg))
            writer.write(chatter, log_time + 1, serialize_message(String(data=f'hello {k}')))
    return path


def read_bag(path):
    """{topic: [(log time, raw bytes)]} and {topic: type name}."""
    out, types = {}, {}
    with Reader(path) as reader:
        for conn in reader.connections:
            types[conn.topic] = conn.msgtype
        for conn, timestamp, raw in reader.messages():
            out.setdefault(conn.topic, []).append((timestamp, bytes(raw)))
    return out, types


def frames_of(scenes, n, encoding='rgb8'):
    return [list(scene_to_messages(scenes[k % len(scenes)], encoding, 'left_cam', 'right_cam'))
            for k in range(n)]


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_bag_gets_disparity_depth_and_points(tmp_path, scenes, storage, capsys):
    in_bag = write_bag(tmp_path / 'in', storage, frames_of(scenes, 4), [10, 11, 12, 13])
    out_bag = tmp_path / 'out'
    assert main([str(in_bag), str(out_bag), *CLI_TOPICS, *SGBM]) == 0
    assert 'pairs_processed=4' in capsys.readouterr().out

    data, types = read_bag(out_bag)
    assert any(out_bag.glob('*.mcap' if storage == 'mcap' else '*.db3'))
    assert types['/stereo/disparity'] == 'stereo_msgs/msg/DisparityImage'
    assert types['/stereo/points'] == 'sensor_msgs/msg/PointCloud2'
    source, _ = read_bag(in_bag)
    for topic in (*TOPICS, '/chatter'):  # inputs copied byte for byte
        assert data[topic] == source[topic], topic
    for topic in ('/stereo/disparity', '/stereo/depth/image_rect', '/stereo/depth/camera_info',
                  '/stereo/points'):
        assert len(data[topic]) == 4, topic
    # Written at the log time of the set's last message, stamped like the inputs.
    last_info_times = [t for t, _ in source['/stereo/right/camera_info']]
    assert [t for t, _ in data['/stereo/disparity']] == last_info_times

    for k, (_, raw) in enumerate(data['/stereo/disparity']):
        d = deserialize_message(raw, DisparityImage)
        assert d.header.stamp.sec == 10 + k and d.header.frame_id == 'left_cam'
        scene = scenes[k % 2]
        disparity = conversions.image_to_array(d.image)
        valid = disparity >= d.min_disparity
        visible = ~scene.occluded & np.isfinite(scene.disparity)
        both = valid & visible
        assert both.sum() / visible.sum() > 0.85
        assert np.median(np.abs(disparity[both] - scene.disparity[both])) < 0.5
    cloud = deserialize_message(data['/stereo/points'][0][1], PointCloud2)
    assert (cloud.height, cloud.width) == (120, 160)
    depth = conversions.image_to_array(deserialize_message(data['/stereo/depth/image_rect'][0][1],
                                                           Image))
    assert depth.dtype == np.float32 and np.isfinite(depth).mean() > 0.8


def test_storage_conversion_and_output_choice(tmp_path, scenes):
    in_bag = write_bag(tmp_path / 'in', 'sqlite3', frames_of(scenes, 2), [1, 2])
    out_bag = tmp_path / 'out'
    assert main([str(in_bag / 'in.db3'), str(out_bag), *CLI_TOPICS, *SGBM, '--storage', 'mcap',
                 '--outputs', 'disparity', 'disparity/image_color',
                 '--output-namespace', '/processed']) == 0
    data, _ = read_bag(out_bag)
    assert any(out_bag.glob('*.mcap'))
    assert len(data['/processed/disparity']) == len(data['/processed/disparity/image_color']) == 2
    assert not [t for t in data if t.startswith('/processed/depth') or t.endswith('points')]


def test_bag_played_in_a_loop_and_bad_pairs(tmp_path, scenes, caplog):
    frames = frames_of(scenes, 5)
    # Frame 2: right image in another encoding (skipped); stamps restart after frame 3.
    frames[2][2] = list(scene_to_messages(scenes[0], 'mono8', 'left_cam', 'right_cam'))[2]
    in_bag = write_bag(tmp_path / 'in', 'mcap', frames, [50, 51, 52, 53, 1])
    out_bag = tmp_path / 'out'
    assert main([str(in_bag), str(out_bag), *CLI_TOPICS, *SGBM]) == 0
    data, _ = read_bag(out_bag)
    stamps = [deserialize_message(raw, DisparityImage).header.stamp.sec
              for _, raw in data['/stereo/disparity']]
    assert stamps == [50, 51, 53, 1]
    assert caplog.text.count('stamps went backwards') == 1
    assert 'left image is rgb8 but right is mono8' in caplog.text


def test_bad_invocations_exit_2_with_reason(tmp_path, scenes, capsys):
    in_bag = write_bag(tmp_path / 'in', 'mcap', frames_of(scenes, 1), [1])
    out = tmp_path / 'out'
    cases = [
        # Default topics are not in this bag: the message lists those that are.
        ([str(in_bag), str(out), *SGBM], "image and camera info topics there: ['/stereo/"),
        ([str(tmp_path / 'nope'), str(out), *CLI_TOPICS, *SGBM], 'input bag not found'),
        ([str(in_bag), str(in_bag), *CLI_TOPICS, *SGBM], 'exists'),
        ([str(in_bag), str(out), *CLI_TOPICS, '--backend', 'foundation_stereo'],
         '--checkpoint'),
        ([str(in_bag), str(out), *CLI_TOPICS, *SGBM, '--scale', '2'], 'scale'),
    ]
    for argv, fragment in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert fragment in err, (argv, err)


def test_no_pair_processed_exits_1(tmp_path, scenes, capsys):
    frames = frames_of(scenes, 2)
    in_bag = tmp_path / 'in'
    write_bag(in_bag, 'mcap', frames, [1, 2])
    # Exact sync on topics whose stamps never agree: the info stamps lag by half a second.
    typestore = get_typestore(Stores.ROS2_JAZZY)
    skewed = tmp_path / 'skewed'
    with Reader(in_bag) as reader, Writer(skewed, version=8,
                                          storage_plugin=StoragePlugin.MCAP) as writer:
        conns = {c.id: writer.add_connection(c.topic, c.msgtype, typestore=typestore)
                 for c in reader.connections}
        for conn, timestamp, raw in reader.messages():
            if conn.msgtype == 'sensor_msgs/msg/CameraInfo':
                info = deserialize_message(bytes(raw), CameraInfo)
                info.header.stamp.nanosec = 500_000_000
                raw = serialize_message(info)
            writer.write(conns[conn.id], timestamp, raw)
    assert main([str(skewed), str(tmp_path / 'out'), *CLI_TOPICS, *SGBM]) == 1
    assert '--sync approximate' in capsys.readouterr().err
    assert main([str(skewed), str(tmp_path / 'out2'), *CLI_TOPICS, *SGBM, '--sync',
                 'approximate', '--slop', '0.6']) == 0


def test_output_namespace_rule():
    assert output_namespace('/stereo/left/image_rect') == '/stereo'
    assert output_namespace('/a/b/left/image_rect_color') == '/a/b'
    assert output_namespace('/left/image_rect') == ''


def test_runs_as_module(tmp_path, scenes):
    in_bag = write_bag(tmp_path / 'in', 'mcap', frames_of(scenes, 1), [1])
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(p for p in (str(ROOT), env.get('PYTHONPATH')) if p)
    proc = subprocess.run(
        [sys.executable, '-m', 'foundation_stereo_ros.bag_tool', str(in_bag),
         str(tmp_path / 'out'), *CLI_TOPICS, *SGBM], env=env, capture_output=True, text=True,
        timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert 'pairs_processed=1' in proc.stdout


def test_fast_foundation_stereo_checkpoint_through_the_bag_tool(tmp_path):
    """The shared cffs_like FFS checkpoint: the bag's disparity is the official one."""
    from conftest import DATA_DIR, SHARED_REFERENCE

    from foundation_stereo_ros.camera import StereoCamera
    from foundation_stereo_ros.synthetic.camera_node import camera_info_pair

    checkpoint = SHARED_REFERENCE / 'ffs' / 'cffs_like' / 'model_best_bp2_serialize.pth'
    if not checkpoint.is_file():
        pytest.skip(f'FFS reference checkpoint not found at {checkpoint}')
    golden = np.load(DATA_DIR / 'golden_ffs_hiera.npz')
    left, right = (np.ascontiguousarray(golden[k][0].transpose(1, 2, 0).astype(np.uint8))
                   for k in ('left', 'right'))
    camera = StereoCamera(width=200, height=120, fx=100.0, fy=100.0, cx=100.0, cy=60.0,
                          baseline=0.1)
    left_info, right_info = camera_info_pair(camera, 'left_cam', 'right_cam')
    frame = [conversions.array_to_image(left, 'rgb8'), left_info,
             conversions.array_to_image(right, 'rgb8'), right_info]
    in_bag = write_bag(tmp_path / 'in', 'mcap', [frame], [10])
    out_bag = tmp_path / 'out'
    # The official demo_disp: 2 iterations on the replicate-padded pair, every pixel kept.
    assert main([str(in_bag), str(out_bag), *CLI_TOPICS, '--quiet', '--backend',
                 'foundation_stereo', '--checkpoint', str(checkpoint), '--device', 'cpu',
                 '--valid-iters', '2', '--no-remove-invisible', '--z-far', '1000']) == 0
    data, _ = read_bag(out_bag)
    (_, raw), = data['/stereo/disparity']
    disparity = conversions.image_to_array(deserialize_message(raw, DisparityImage).image)
    expected = golden['demo_disp'][0, 0]
    valid = expected > 0  # a DisparityImage marks the rest invalid
    np.testing.assert_allclose(disparity[valid], expected[valid], atol=2e-3, rtol=1e-5)
    assert np.isnan(disparity[~valid]).all()

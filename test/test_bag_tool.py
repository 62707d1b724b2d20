"""The rosbag tool on generated bags, in both rosbag2 storage formats."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from rclpy.serialization import deserialize_message, serialize_message
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import String
from stereo_msgs.msg import DisparityImage

from foundation_stereo_ros.ros import conversions
from foundation_stereo_ros.ros.synthetic_camera import scene_to_messages
from foundation_stereo_ros.synthetic.scenes import make_scene
from foundation_stereo_ros.tools.bag_tool import main, output_namespace

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


def write_bag(path, storage, frames, stamps, topics=TOPICS, type_names=TYPE_NAMES,
              keep=lambda k, index: True):
    """Write a bag with the four stereo topics at ``stamps`` (seconds) plus an unrelated topic.

    ``keep(k, index)`` says whether frame k's message ``index`` (INPUT_TOPICS order) is written.
    """
    typestore = get_typestore(Stores.ROS2_JAZZY)
    with Writer(path, version=8, storage_plugin=STORAGE[storage]) as writer:
        conns = [writer.add_connection(t, n, typestore=typestore)
                 for t, n in zip(topics, type_names)]
        chatter = writer.add_connection('/chatter', 'std_msgs/msg/String', typestore=typestore)
        log_time = 1_000_000_000
        for k, (frame, sec) in enumerate(zip(frames, stamps)):
            for index, (conn, msg) in enumerate(zip(conns, frame)):
                if not keep(k, index):
                    continue
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
    assert '--sync-policy approximate' in capsys.readouterr().err
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
    from conftest import CFFS_CHECKPOINT as checkpoint
    from conftest import cffs_demo_frame

    frame, expected = cffs_demo_frame()
    in_bag = write_bag(tmp_path / 'in', 'mcap', [frame], [10])
    out_bag = tmp_path / 'out'
    # The official demo_disp: 2 iterations on the replicate-padded pair, every pixel kept.
    assert main([str(in_bag), str(out_bag), *CLI_TOPICS, '--quiet', '--backend',
                 'foundation_stereo', '--checkpoint', str(checkpoint), '--device', 'cpu',
                 '--valid-iters', '2', '--no-remove-invisible', '--z-far', '1000']) == 0
    data, _ = read_bag(out_bag)
    (_, raw), = data['/stereo/disparity']
    disparity = conversions.image_to_array(deserialize_message(raw, DisparityImage).image)
    valid = expected > 0  # a DisparityImage marks the rest invalid
    np.testing.assert_allclose(disparity[valid], expected[valid], atol=2e-3, rtol=1e-5)
    assert np.isnan(disparity[~valid]).all()


# ---------------------------------------------------------------------- compressed and raw images

COMPRESSED_TOPICS = ('/stereo/left/image_rect/compressed', '/stereo/left/camera_info',
                     '/stereo/right/image_rect/compressed', '/stereo/right/camera_info')
COMPRESSED_TYPE_NAMES = ('sensor_msgs/msg/CompressedImage', 'sensor_msgs/msg/CameraInfo',
                         'sensor_msgs/msg/CompressedImage', 'sensor_msgs/msg/CameraInfo')


def compressed_frames(scenes, n):
    """PNG frames as image_transport compressed publishes them (bgr8 data, rgb8 source)."""
    frames = []
    for frame in frames_of(scenes, n):
        for index in (0, 2):
            rgb = conversions.image_to_rgb8(frame[index])
            ok, data = cv2.imencode('.png', cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            assert ok
            msg = CompressedImage(format='rgb8; png compressed bgr8', data=data.tobytes())
            msg.header.frame_id = frame[index].header.frame_id
            frame[index] = msg
        frames.append(frame)
    return frames


def test_compressed_image_topics_are_recognised_by_type(tmp_path, scenes, capsys, caplog):
    frames = compressed_frames(scenes, 3)
    frames[1][2].data = bytes(frames[1][2].data)[:100]  # one undecodable image: skipped
    in_bag = write_bag(tmp_path / 'in', 'mcap', frames, [10, 11, 12], COMPRESSED_TOPICS,
                       COMPRESSED_TYPE_NAMES)
    out_bag = tmp_path / 'out'
    assert main([str(in_bag), str(out_bag), '--topics', *COMPRESSED_TOPICS, *SGBM]) == 0
    out = capsys.readouterr()
    assert 'pairs_processed=2' in out.out and "'bad_input': 1" in out.out
    assert 'does not decode as png' in caplog.text
    data, _ = read_bag(out_bag)
    assert len(data['/stereo/disparity']) == 2  # namespace of the /compressed image topic
    for (_, raw), k in zip(data['/stereo/disparity'], (0, 2)):
        d = deserialize_message(raw, DisparityImage)
        scene = scenes[k % 2]
        disparity = conversions.image_to_array(d.image)
        both = (disparity >= d.min_disparity) & ~scene.occluded & np.isfinite(scene.disparity)
        assert np.median(np.abs(disparity[both] - scene.disparity[both])) < 0.5


def test_compressed_topics_are_offered_when_topics_are_missing(tmp_path, scenes, capsys):
    in_bag = write_bag(tmp_path / 'in', 'mcap', compressed_frames(scenes, 1), [1],
                       COMPRESSED_TOPICS, COMPRESSED_TYPE_NAMES)
    assert main([str(in_bag), str(tmp_path / 'out'), *SGBM]) == 2
    err = capsys.readouterr().err
    assert "['/left/image_rect', '/left/camera_info'" in err
    assert '/stereo/left/image_rect/compressed' in err and '/stereo/right/camera_info' in err


def test_rectify_raw_images_from_a_bag(tmp_path):
    from test_rectification import raw_info, render_raw

    scene = make_scene(320, 240, seed=2, min_depth=1.0, max_depth=6.0)
    infos = [raw_info(scene, side, 'plumb_bob') for side in ('left', 'right')]
    images = [conversions.array_to_image(render_raw(scene, side, 'plumb_bob'), 'rgb8')
              for side in ('left', 'right')]
    topics = ('/left/image_raw', '/left/camera_info', '/right/image_raw', '/right/camera_info')
    in_bag = write_bag(tmp_path / 'in', 'mcap', [[images[0], infos[0], images[1], infos[1]]],
                       [5], topics)
    out_bag = tmp_path / 'out'
    # The default topics with --rectify are the raw ones.
    assert main([str(in_bag), str(out_bag), '--rectify', '--backend', 'sgbm',
                 '--num-disparities', '64', '--quiet']) == 0
    data, _ = read_bag(out_bag)
    info = deserialize_message(data['/depth/camera_info'][0][1], CameraInfo)
    assert list(info.d) == [0.0] * 5 and info.distortion_model == 'plumb_bob'
    np.testing.assert_allclose(np.reshape(info.k, (3, 3)), scene.camera.K)
    d = deserialize_message(data['/disparity'][0][1], DisparityImage)
    disparity = conversions.image_to_array(d.image)
    both = (disparity >= d.min_disparity) & ~scene.occluded
    assert both.mean() > 0.6
    assert np.median(np.abs(disparity[both] - scene.disparity[both])) < 0.3


def test_output_namespace_of_a_compressed_topic():
    assert output_namespace('/stereo/left/image_rect/compressed') == '/stereo'


PATCHES = Path(__file__).resolve().parent / 'node_patches'  # the test-only 'slow' backend


@pytest.mark.parametrize('signum', [signal.SIGINT, signal.SIGTERM])
def test_interrupted_run_keeps_the_work_done(tmp_path, scenes, signum):
    """Ctrl-C (or SIGTERM) part way: a readable output bag with the pairs done, and a summary."""
    in_bag = write_bag(tmp_path / 'in', 'mcap', frames_of(scenes, 6), [10, 11, 12, 13, 14, 15])
    out_bag = tmp_path / 'out'
    log = tmp_path / 'log.txt'
    env = dict(os.environ, FSR_TEST_SLOW_BACKEND='0.5', PYTHONUNBUFFERED='1')
    env['PYTHONPATH'] = os.pathsep.join(
        p for p in (str(PATCHES), str(ROOT), env.get('PYTHONPATH')) if p)
    with log.open('w') as out:
        proc = subprocess.Popen(
            [sys.executable, '-m', 'foundation_stereo_ros.bag_tool', str(in_bag), str(out_bag),
             *CLI_TOPICS, '--backend', 'slow', '--quiet'], env=env, stdout=out,
            stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while log.read_text().count('inference started') < 3 and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            time.sleep(0.05)
        proc.send_signal(signum)
        assert proc.wait(timeout=60) == 130, log.read_text()
    text = log.read_text()
    assert 'Traceback' not in text, text
    assert 'interrupted=interrupted (Ctrl-C) after' in text, text
    assert (out_bag / 'metadata.yaml').is_file()
    data, _ = read_bag(out_bag)  # readable: footer and metadata written
    done = len(data['/stereo/disparity'])
    assert 2 <= done < 6, done
    assert f"'/stereo/disparity': {done}" in text
    assert len(data[TOPICS[0]]) >= done  # the inputs read so far are there too


def test_undecodable_message_skipped_and_counted(tmp_path, scenes, capsys, caplog):
    in_bag = write_bag(tmp_path / 'in', 'mcap', frames_of(scenes, 3), [1, 2, 3])
    damaged = tmp_path / 'damaged'
    typestore = get_typestore(Stores.ROS2_JAZZY)
    with Reader(in_bag) as reader, Writer(damaged, version=8,
                                          storage_plugin=StoragePlugin.MCAP) as writer:
        conns = {c.id: writer.add_connection(c.topic, c.msgtype, typestore=typestore)
                 for c in reader.connections}
        seen = 0
        for conn, timestamp, raw in reader.messages():
            if conn.topic == TOPICS[0]:
                seen += 1
                if seen == 2:
                    raw = b'\x00\x01\x00\x00 not an image'
            writer.write(conns[conn.id], timestamp, raw)
    assert main([str(damaged), str(tmp_path / 'out'), *CLI_TOPICS, *SGBM]) == 0
    out = capsys.readouterr().out
    assert 'pairs_processed=2' in out
    assert f"messages_undecodable={{'{TOPICS[0]}': 1}}" in out
    assert 'does not decode as sensor_msgs/msg/Image' in caplog.text


def test_damaged_inputs_and_unwritable_output_are_messages(tmp_path, scenes, capsys, caplog):
    in_bag = write_bag(tmp_path / 'in', 'mcap', frames_of(scenes, 2), [1, 2])
    (mcap,) = in_bag.glob('*.mcap')
    truncated = tmp_path / 'truncated'
    truncated.mkdir()
    (truncated / mcap.name).write_bytes(mcap.read_bytes()[:mcap.stat().st_size // 2])
    (truncated / 'metadata.yaml').write_bytes((in_bag / 'metadata.yaml').read_bytes())
    blocker = tmp_path / 'a_file'
    blocker.write_text('not a folder')
    broken = tmp_path / 'ckpt' / 'model_best_bp2.pth'
    broken.parent.mkdir()
    broken.write_bytes(b'not a checkpoint')
    (broken.parent / 'cfg.yaml').write_text('vit_size: vits\n')
    cases = [
        ([str(truncated), str(tmp_path / 'o1'), *SGBM], 'mcap recover'),
        ([str(in_bag), str(blocker / 'out'), *SGBM], 'cannot write the output bag'),
        ([str(in_bag), str(tmp_path / 'o3'), '--backend', 'foundation_stereo', '--checkpoint',
          str(broken), '--device', 'cpu'], 'cannot start the foundation_stereo backend'),
    ]
    for argv, fragment in cases:
        assert main([*argv, *CLI_TOPICS, '--quiet']) == 2, argv
        assert fragment in capsys.readouterr().err, argv
    # A bag folder without metadata.yaml (cut off): its only .mcap is read, with a warning.
    (in_bag / 'metadata.yaml').unlink()
    assert main([str(in_bag), str(tmp_path / 'o4'), *CLI_TOPICS, *SGBM]) == 0
    assert 'pairs_processed=2' in capsys.readouterr().out
    assert 'has no metadata.yaml' in caplog.text


def test_camera_info_only_in_the_first_frame(tmp_path, scenes, capsys, caplog):
    """Drivers that publish CameraInfo once: a warning that names --cache-camera-info."""
    in_bag = write_bag(tmp_path / 'in', 'mcap', frames_of(scenes, 10), list(range(1, 11)),
                       keep=lambda k, index: k == 0 or index in (0, 2))
    assert main([str(in_bag), str(tmp_path / 'out'), *CLI_TOPICS, *SGBM]) == 0
    out = capsys.readouterr().out
    # One pair; the 18 later images wait for a CameraInfo that never comes: unmatched.
    assert 'pairs_processed=1,' in out and 'messages_unmatched=18' in out, out
    assert '--cache-camera-info' in caplog.text
    caplog.clear()
    assert main([str(in_bag), str(tmp_path / 'out2'), *CLI_TOPICS, *SGBM,
                 '--cache-camera-info']) == 0
    out = capsys.readouterr().out
    assert 'pairs_processed=10,' in out and 'messages_unmatched=0' in out, out
    assert 'latest CameraInfo' in caplog.text


def test_camera_info_topics_without_messages_say_none_was_recorded(tmp_path, scenes, capsys,
                                                                   caplog):
    """Topics of CameraInfo that exist but hold nothing: no --cache-camera-info advice."""
    in_bag = write_bag(tmp_path / 'in', 'mcap', frames_of(scenes, 4), list(range(1, 5)),
                       keep=lambda k, index: index in (0, 2))
    for extra in ([], ['--cache-camera-info']):
        caplog.clear()
        assert main([str(in_bag), str(tmp_path / f'out{len(extra)}'), *CLI_TOPICS, *SGBM,
                     *extra]) == 1
        assert 'pairs_processed=0,' in capsys.readouterr().out
        assert f'{CLI_TOPICS[2]} holds no messages (no CameraInfo was recorded) for 4 images' \
            in caplog.text, caplog.text
        assert 'pass --cache-camera-info' not in caplog.text


def test_frames_that_all_carry_one_stamp_are_warned_about(tmp_path, scenes, capsys, caplog):
    """One stamp on all ten frames: one pair, and the node's warning about repeated stamps."""
    in_bag = write_bag(tmp_path / 'in', 'mcap', frames_of(scenes, 10), [7] * 10)
    main([str(in_bag), str(tmp_path / 'out'), *CLI_TOPICS, *SGBM])
    assert 'pairs_processed=1,' in capsys.readouterr().out
    assert (f'{CLI_TOPICS[1]} repeats stamps (9 of 10 messages carry the stamp of the one '
            'before') in caplog.text, caplog.text

"""The node end to end with the onnx backend (CPU provider) over DDS, as a subprocess.

The seeded checkpoint is exported with this package's exporter at the golden pair's size; the
node must publish the official network's disparities for that pair.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
from checkpoints import write_seeded_checkpoint
from conftest import DATA_DIR
from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import Image
from stereo_msgs.msg import DisparityImage
from test_node_e2e import (  # noqa: F401
    NodeProcess,
    Rig,
    as_float_image,
    diagnostics_of,
    play_until_outputs,
    ros_context,
    wait_until,
)

from foundation_stereo_ros.camera import StereoCamera
from foundation_stereo_ros.model import load_checkpoint
from foundation_stereo_ros.model.onnx_export import export_onnx
from foundation_stereo_ros.ros import conversions
from foundation_stereo_ros.ros.synthetic_camera import camera_info_pair


def test_onnx_backend_end_to_end_on_the_cpu_provider(tmp_path, ros_context):  # noqa: F811
    golden = np.load(DATA_DIR / 'golden_model_synth.npz')
    left, right = (np.ascontiguousarray(golden[k][0].transpose(1, 2, 0).astype(np.uint8))
                   for k in ('left', 'right'))
    expected = golden['disp_test_iters2'][0, 0]  # official model, 2 iterations, doffs 0
    camera = StereoCamera(width=96, height=64, fx=80.0, fy=80.0, cx=47.5, cy=31.5,
                          baseline=0.1)
    info_left, info_right = camera_info_pair(camera, 'left_cam', 'r')
    frame = [conversions.array_to_image(left, 'rgb8'), info_left,
             conversions.array_to_image(right, 'rgb8'), info_right]
    frame[0].header.frame_id = 'left_cam'

    model, _ = load_checkpoint(str(write_seeded_checkpoint(tmp_path / 'vits')), device='cpu')
    exported = export_onnx(model, tmp_path / 'fs.onnx', 64, 96, 2)
    namespace = f'/onnx{os.getpid()}'
    # remove_invisible off: the seeded weights give disparities beyond the image width.
    node = NodeProcess('-p', 'backend:=onnx', '-p', f'model:={exported}', '-p', 'provider:=cpu',
                       '-p', 'z_far:=1000.0', '-p', 'remove_invisible:=false',
                       '-p', 'diagnostics_period:=0.2', '-r', f'__ns:={namespace}')
    rig = Rig(ros_context, namespace)
    try:
        rig.subscribe('disparity', DisparityImage)
        rig.subscribe('depth/image_rect', Image)
        rig.subscribe('/diagnostics', DiagnosticArray)
        # Loading and optimising the graph takes seconds on a busy CPU: wait for the node's
        # model report before timing the first outputs.
        assert wait_until(lambda: node.proc.poll() is not None or any(
            diagnostics_of(a, 'model', namespace)[0] for a in rig.messages('/diagnostics')),
            timeout=120.0), node.output
        out = play_until_outputs(rig, frame, ['disparity', 'depth/image_rect'], node)
        info = next(diagnostics_of(a, 'model', namespace)[1] for a in
                    rig.messages('/diagnostics') if diagnostics_of(a, 'model', namespace)[0])
    finally:
        rig.close()
        assert node.stop() == 0, node.output
    assert info['backend'] == 'onnx' and info['provider'] == 'CPUExecutionProvider'
    assert info['model'] == str(exported) and info['valid_iters'] == '2'

    d = out['disparity']
    assert d.header.frame_id == 'left_cam' and (d.image.width, d.image.height) == (96, 64)
    assert d.delta_d == pytest.approx(1.0 / 32.0) and d.max_disparity == 416.0
    np.testing.assert_allclose(as_float_image(d.image), expected, atol=2e-3, rtol=1e-5)
    depth = as_float_image(out['depth/image_rect'])
    np.testing.assert_allclose(depth, 80.0 * 0.1 / expected, rtol=1e-4)


def test_bad_onnx_model_stops_the_node_with_the_reason(tmp_path):
    from test_backend_onnx import write_output_graph

    junk = tmp_path / 'junk.onnx'
    junk.write_bytes(b'not a model')
    # Two disparity channels: refused at start, not on every pair.
    two = write_output_graph(tmp_path / 'two.onnx', (1, 2, 32, 48), [1, 2, 32, 48])
    for params, fragment in (([], 'backend onnx needs an exported network'),
                             ([f'model:={tmp_path / "nope.onnx"}'], 'ONNX model not found'),
                             ([f'model:={junk}'], 'ONNX Runtime could not load'),
                             ([f'model:={two}'], 'output disp has shape (1, 2, 32, 48)')):
        args = ['-p', 'backend:=onnx', '-p', 'provider:=cpu']
        for param in params:
            args += ['-p', param]
        node = NodeProcess(*args)
        node.proc.wait(timeout=60.0)
        assert node.stop() != 0
        assert fragment in node.output, node.output

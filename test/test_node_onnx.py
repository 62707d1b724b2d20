"""The node end to end with the onnx backend (CPU provider) over DDS, as a subprocess.

The seeded checkpoint is exported with this package's exporter at the golden pair's size; the
node must publish the official network's disparities for that pair.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
from checkpoints import write_seeded_checkpoint
from conftest import golden_frame
from node_harness import (
    NodeProcess,
    as_float_image,
    model_report,
    play_until_outputs,
    running_node,
)
from sensor_msgs.msg import Image
from stereo_msgs.msg import DisparityImage

from foundation_stereo_ros.model import load_checkpoint
from foundation_stereo_ros.model.onnx_export import export_onnx


def test_onnx_backend_end_to_end_on_the_cpu_provider(tmp_path, ros_context):
    frame, expected = golden_frame()
    model, _ = load_checkpoint(str(write_seeded_checkpoint(tmp_path / 'vits')), device='cpu')
    exported = export_onnx(model, tmp_path / 'fs.onnx', 64, 96, 2)
    namespace = f'/onnx{os.getpid()}'
    # remove_invisible off: the seeded weights give disparities beyond the image width.
    with running_node(ros_context, namespace, '-p', 'backend:=onnx', '-p', f'model:={exported}',
                      '-p', 'provider:=cpu', '-p', 'z_far:=1000.0',
                      '-p', 'remove_invisible:=false', '-p', 'diagnostics_period:=0.2',
                      subscribe=[('disparity', DisparityImage), ('depth/image_rect', Image)]
                      ) as (node, rig):
        # Loading and optimising the graph takes seconds on a busy CPU: wait for the node's
        # model report before timing the first outputs.
        info = model_report(rig, namespace, timeout=120.0)
        out = play_until_outputs(rig, frame, ['disparity', 'depth/image_rect'], node)
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

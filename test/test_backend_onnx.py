"""The onnx backend on the CPU provider.

This package's export against the PyTorch backend, hand-built graphs with the official
exporters' tensor names, fixed-size resizing in the pipeline, and the errors for models it
cannot run.
"""
import logging

import numpy as np
import onnx
import pytest
import torch
from checkpoints import write_seeded_checkpoint
from conftest import DATA_DIR
from onnx import TensorProto, helper

from foundation_stereo_ros.backends import make_backend
from foundation_stereo_ros.camera import StereoCamera
from foundation_stereo_ros.model import load_checkpoint
from foundation_stereo_ros.model.feature import IMAGENET_MEAN, IMAGENET_STD
from foundation_stereo_ros.model.onnx_export import export_onnx
from foundation_stereo_ros.pipeline import PipelineConfig, StereoPipeline

GOLDEN = np.load(DATA_DIR / 'golden_model_synth.npz')
HEIGHT, WIDTH, ITERS = 64, 96, 2


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    return write_seeded_checkpoint(tmp_path_factory.mktemp('seeded') / 'vits')


@pytest.fixture(scope='module')
def torch_backend(checkpoint):
    return make_backend('foundation_stereo', checkpoint=str(checkpoint), device='cpu',
                        valid_iters=ITERS)


@pytest.fixture(scope='module')
def exported(checkpoint, tmp_path_factory):
    model, _ = load_checkpoint(str(checkpoint), device='cpu')
    return export_onnx(model, tmp_path_factory.mktemp('onnx') / 'fs.onnx', HEIGHT, WIDTH, ITERS)


@pytest.fixture(scope='module')
def onnx_backend(exported):
    return make_backend('onnx', model=str(exported), provider='cpu')


def golden_pair():
    return torch.from_numpy(GOLDEN['left'][0]), torch.from_numpy(GOLDEN['right'][0])


def golden_images():
    return tuple(GOLDEN[side][0].transpose(1, 2, 0).astype(np.uint8)
                 for side in ('left', 'right'))


def camera(width, height):
    return StereoCamera(width=width, height=height, fx=80.0, fy=80.0, cx=(width - 1) / 2,
                        cy=(height - 1) / 2, baseline=0.1)


def test_package_export_matches_the_pytorch_backend(onnx_backend, torch_backend):
    assert onnx_backend.input_size == (HEIGHT, WIDTH)
    assert onnx_backend.max_disparity == 416.0          # from the export's metadata
    info = onnx_backend.describe()
    assert info['provider'] == 'CPUExecutionProvider'
    assert info['producer'] == 'foundation_stereo_ros' and info['valid_iters'] == str(ITERS)
    disp = onnx_backend.compute(*golden_pair())
    assert disp.shape == (HEIGHT, WIDTH) and disp.dtype == torch.float32
    np.testing.assert_allclose(disp.numpy(), torch_backend.compute(*golden_pair()).numpy(),
                               atol=2e-3, rtol=1e-5)
    # The official code's output for these weights (fp32 CPU) as an independent oracle.
    np.testing.assert_allclose(disp.numpy(), GOLDEN['disp_test_iters2'][0, 0],
                               atol=2e-3, rtol=1e-5)


def test_package_export_gives_the_pytorch_confidence(onnx_backend, torch_backend):
    assert onnx_backend.provides_confidence
    left, right = (torch.stack([a, b]) for a, b in zip(golden_pair(), golden_pair()[::-1]))
    disp, conf = onnx_backend.compute_batch_with_confidence(left, right)
    expected_disp, expected = torch_backend.compute_batch_with_confidence(left, right)
    assert conf.shape == (2, HEIGHT, WIDTH) and conf.dtype == torch.float32
    np.testing.assert_allclose(disp.numpy(), expected_disp.numpy(), atol=2e-3, rtol=1e-5)
    np.testing.assert_allclose(conf.numpy(), expected.numpy(), atol=1e-4)


def test_an_export_without_confidence_gives_none_and_says_so_once(tmp_path, caplog):
    nodes, consts = red_channel('left', 'disp')
    path = write_graph(tmp_path / 'official.onnx', ['left', 'right'], 'disp', nodes,
                       initializers=consts)
    backend = make_backend('onnx', model=str(path), provider='cpu')
    assert not backend.provides_confidence
    lefts = torch.full((1, 3, 32, 48), 7.0)
    with caplog.at_level(logging.INFO, logger='foundation_stereo_ros.backends.onnx'):
        for _ in range(3):
            disp, conf = backend.compute_batch_with_confidence(lefts, lefts)
            assert conf is None and torch.equal(disp, torch.full((1, 32, 48), 7.0))
    told = [r for r in caplog.records if 'publishes no confidence' in r.getMessage()]
    assert len(told) == 1 and 'official.onnx' in told[0].getMessage()


def test_fixed_size_model_through_the_pipeline_at_twice_the_size(onnx_backend, torch_backend):
    # A 192x128 camera: the pipeline resizes to the model's 96x64 and scales disparities back;
    # the PyTorch network run at scale 0.5 goes the same way and must agree.
    left, right = (np.repeat(np.repeat(image, 2, 0), 2, 1) for image in golden_images())
    cam = camera(2 * WIDTH, 2 * HEIGHT)
    config = PipelineConfig(remove_invisible=False)
    result = StereoPipeline(onnx_backend, config).process(left, right, cam)
    expected = StereoPipeline(torch_backend, PipelineConfig(scale=0.5, remove_invisible=False)
                              ).process(left, right, cam)
    assert result.disparity.shape == (2 * HEIGHT, 2 * WIDTH)
    both = np.isfinite(result.disparity) & np.isfinite(expected.disparity)
    assert both.mean() > 0.9
    np.testing.assert_allclose(result.disparity[both], expected.disparity[both], atol=5e-3,
                               rtol=1e-4)
    assert result.max_disparity == pytest.approx(2 * 416.0)


def test_batches_of_several_pairs_match_single_pairs(onnx_backend):
    left, right = golden_pair()
    lefts, rights = torch.stack([left, right]), torch.stack([right, left])
    batch = onnx_backend.compute_batch(lefts, rights)
    assert batch.shape == (2, HEIGHT, WIDTH)
    np.testing.assert_allclose(batch[1].numpy(), onnx_backend.compute(right, left).numpy(),
                               atol=1e-4)


# --- hand-built graphs with the official exporters' tensor names --------------------------

def write_graph(path, inputs, output, nodes, shape=(1, 3, 32, 48), initializers=()):
    """Write a float32 graph with the given input names and one (B, 1, H, W) output."""
    graph = helper.make_graph(
        nodes, 'stereo',
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape)) for name in inputs],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT,
                                       [shape[0], 1, *shape[2:]])],
        initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def red_channel(inp, out):
    """Build nodes for out = inp[:, 0:1] (the first channel it was given)."""
    consts = [helper.make_tensor(name, TensorProto.INT64, [1], [value])
              for name, value in (('start', 0), ('end', 1), ('axis', 1))]
    return [helper.make_node('Slice', [inp, 'start', 'end', 'axis'], [out])], consts


def test_fast_foundation_stereo_single_export_gets_imagenet_normalised_input(tmp_path):
    nodes, consts = red_channel('left_image', 'disparity')
    path = write_graph(tmp_path / 'ffs.onnx', ['left_image', 'right_image'], 'disparity', nodes,
                       initializers=consts)
    backend = make_backend('onnx', model=str(path), provider='cpu')
    assert backend.input_size == (32, 48) and backend.max_disparity is None
    left = torch.zeros(3, 32, 48)
    left[0] = torch.linspace(0, 255, 48)
    out = backend.compute(left, torch.zeros(3, 32, 48))
    expected = (np.linspace(0, 255, 48) / 255.0 - IMAGENET_MEAN[0]) / IMAGENET_STD[0]
    np.testing.assert_allclose(out[5].numpy(), expected, rtol=1e-5, atol=1e-5)


def test_foundation_stereo_export_gets_0_255_input_and_a_fixed_batch_is_split(tmp_path):
    nodes, consts = red_channel('left', 'disp')
    path = write_graph(tmp_path / 'fs.onnx', ['left', 'right'], 'disp', nodes,
                       initializers=consts)
    backend = make_backend('onnx', model=str(path), provider='cpu')
    assert backend.max_batch == 1
    lefts = torch.stack([torch.full((3, 32, 48), float(v)) for v in (10, 20, 30)])
    out = backend.compute_batch(lefts, lefts)
    np.testing.assert_array_equal(out[:, 0, 0].numpy(), [10.0, 20.0, 30.0])


def test_fixed_size_output_comes_back_at_camera_size_in_camera_pixels(tmp_path, caplog):
    # disparity = 5 px everywhere at the model's 48x32: on a 96x64 camera that is 10 px.
    zero = helper.make_tensor('zero', TensorProto.FLOAT, [], [0.0])
    five = helper.make_tensor('five', TensorProto.FLOAT, [], [5.0])
    nodes, consts = red_channel('left', 'red')
    nodes += [helper.make_node('Mul', ['red', 'zero'], ['nil']),
              helper.make_node('Add', ['nil', 'five'], ['disp'])]
    path = write_graph(tmp_path / 'const.onnx', ['left', 'right'], 'disp', nodes,
                       initializers=[*consts, zero, five])
    (tmp_path / 'onnx.yaml').write_text('max_disp: 192\nvalid_iters: 8\n')
    backend = make_backend('onnx', model=str(path), provider='cpu')
    assert backend.max_disparity == 192.0          # from the exporter's YAML beside the model
    pipeline = StereoPipeline(backend, PipelineConfig(remove_invisible=False))
    image = np.full((64, 96, 3), 100, np.uint8)
    with caplog.at_level(logging.WARNING):
        result = pipeline.process(image, image, camera(96, 64))
    assert result.disparity.shape == (64, 96)
    np.testing.assert_allclose(result.disparity, 10.0, rtol=1e-6)
    np.testing.assert_allclose(result.depth, 80.0 * 0.1 / 10.0, rtol=1e-6)
    assert result.max_disparity == pytest.approx(384.0)
    assert not caplog.records                       # same aspect ratio: nothing to warn about

    # Another aspect ratio (96x48 vs 48x32): stretched, disparities still in camera pixels,
    # and one warning however many pairs follow.
    image = np.full((48, 96, 3), 100, np.uint8)
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            result = pipeline.process(image, image, camera(96, 48))
    np.testing.assert_allclose(result.disparity, 10.0, rtol=1e-6)
    warnings = [r for r in caplog.records if 'aspect ratio' in r.getMessage()]
    assert len(warnings) == 1 and '96x48' in warnings[0].getMessage()


# --- errors -------------------------------------------------------------------------------

def test_unknown_tensor_names_say_what_was_found_and_what_is_expected(tmp_path):
    nodes, consts = red_channel('a', 'c')
    path = write_graph(tmp_path / 'other.onnx', ['a', 'b'], 'c', nodes, initializers=consts)
    with pytest.raises(ValueError) as err:
        make_backend('onnx', model=str(path), provider='cpu')
    message = str(err.value)
    assert 'inputs a, b -> outputs c' in message
    assert 'left, right -> disp' in message and 'left_image, right_image -> disparity' in message


def test_two_file_fast_foundation_stereo_export_is_refused_with_what_to_do(tmp_path):
    nodes, consts = red_channel('left', 'features_left_04')
    path = write_graph(tmp_path / 'feature_runner.onnx', ['left', 'right'], 'features_left_04',
                       nodes, initializers=consts)
    with pytest.raises(ValueError, match='make_single_onnx.py'):
        make_backend('onnx', model=str(path), provider='cpu')


def test_wrong_image_shape_is_refused(tmp_path):
    nodes, consts = red_channel('left', 'disp')
    path = write_graph(tmp_path / 'grey.onnx', ['left', 'right'], 'disp', nodes,
                       shape=(1, 1, 32, 48), initializers=consts)
    with pytest.raises(ValueError, match=r'expected float images of shape \(batch, 3'):
        make_backend('onnx', model=str(path), provider='cpu')


def test_bad_options_and_files(tmp_path):
    with pytest.raises(FileNotFoundError, match='ONNX model not found'):
        make_backend('onnx', model=str(tmp_path / 'missing.onnx'))
    junk = tmp_path / 'junk.onnx'
    junk.write_bytes(b'not a model')
    with pytest.raises(ValueError, match='could not load'):
        make_backend('onnx', model=str(junk), provider='cpu')
    with pytest.raises(ValueError, match='provider must be one of'):
        make_backend('onnx', model=str(junk), provider='gpu')
    with pytest.raises(ValueError, match="device 'cpu' contradicts provider 'cuda'"):
        make_backend('onnx', model=str(junk), provider='cuda', device='cpu')
    with pytest.raises(ValueError, match="'cuda:N'"):
        make_backend('onnx', model=str(junk), device='gpu0')
    import onnxruntime
    if 'TensorrtExecutionProvider' not in onnxruntime.get_available_providers():
        with pytest.raises(ValueError, match='onnxruntime-gpu'):
            make_backend('onnx', model=str(junk), provider='tensorrt')


def write_output_graph(path, output_shape, declared):
    """Write a 'left, right -> disp' graph whose output has ``output_shape`` (B, C, H, W).

    ``declared``: the output's shape as the file states it (None dims are symbolic).
    """
    batch, channels, height, width = output_shape
    # Resize the first channel(s) of the left image to (height, width): Slice then Resize.
    consts = [helper.make_tensor(name, TensorProto.INT64, [1], [value])
              for name, value in (('start', 0), ('end', channels), ('axis', 1))]
    consts.append(helper.make_tensor('sizes', TensorProto.INT64, [4],
                                     [batch, channels, height, width]))
    nodes = [helper.make_node('Slice', ['left', 'start', 'end', 'axis'], ['cut']),
             helper.make_node('Resize', ['cut', '', '', 'sizes'], ['disp'], mode='nearest')]
    graph = helper.make_graph(
        nodes, 'stereo',
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 3, 32, 48])
         for n in ('left', 'right')],
        [helper.make_tensor_value_info('disp', TensorProto.FLOAT, declared)],
        initializer=consts)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize('output_shape', [(1, 2, 32, 48), (1, 1, 16, 24)],
                         ids=['two channels', 'half size'])
@pytest.mark.parametrize('declared', [True, False], ids=['declared', 'symbolic'])
def test_output_that_is_not_one_disparity_per_pixel_is_refused_at_start(
        tmp_path, output_shape, declared):
    """(B, 2, H, W) or (B, 1, H/2, W/2): refused when built, with the output's name and shape."""
    path = write_output_graph(tmp_path / 'bad.onnx', output_shape,
                              list(output_shape) if declared else ['b', 'c', 'h', 'w'])
    with pytest.raises(ValueError) as err:
        make_backend('onnx', model=str(path), provider='cpu')
    message = str(err.value)
    assert f'output disp has shape {output_shape}' in message
    assert 'expected one disparity per pixel, (1, 1, 32, 48)' in message

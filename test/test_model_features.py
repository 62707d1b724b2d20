"""Tests of the generic layers and the feature network against the official layouts/goldens.

``test/data/golden_features_synth.npz`` holds, unchanged, the arrays of the shared golden file
``vits_synth_64x96.npz`` that the feature network produces (inputs, DINOv2 input and tokens,
``vit_feat``, ``features_*``), plus ``dino_out_stride4`` = ``dino_out[:, :, ::4, ::4]``
(the full ``dino_out`` is 3 MB; it is checked from ../shared/reference when present).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import DATA_DIR, SHARED_REFERENCE
from seeded_weights import load_layout, make_state_dict
from torch import nn

from foundation_stereo_ros.model.feature import (
    Feature,
    dino_input_size,
    normalize_image,
    vit_size_of,
)
from foundation_stereo_ros.model.layers import (
    BasicConv,
    BasicConvIN,
    Conv2x,
    Conv2xIN,
    Conv3dNormActReduced,
    LayerNorm2d,
    ResidualBlock,
    ResnetBasicBlock,
    ResnetBasicBlock3D,
)

torch.set_num_threads(2)


@pytest.fixture(scope='module')
def layout_vits() -> list:
    return load_layout(DATA_DIR / 'state_dict_vits.json')


def _layout_of(module: nn.Module) -> list:
    return [[k, list(v.shape), str(v.dtype).removeprefix('torch.')]
            for k, v in module.state_dict().items()]


def _official_entries(layout: list, prefix: str) -> list:
    return [[k[len(prefix):], list(s), d] for k, s, d in layout if k.startswith(prefix)]


# One official use of each block, by its key prefix in the vits state dict.
LAYER_USES = [
    ('feature.deconv32_16.', lambda: Conv2xIN(304, 160, deconv=True, concat=True)),
    ('feature.conv4.0.', lambda: BasicConv(128, 128, kernel_size=3, stride=1, padding=1,
                                           norm='instance')),
    ('feature.conv4.1.', lambda: ResidualBlock(128, 128, norm_fn='instance')),
    ('cnet.layer2.0.', lambda: ResidualBlock(64, 96, 'batch', stride=2)),
    ('stem_2.0.', lambda: BasicConvIN(3, 32, kernel_size=3, stride=2, padding=1)),
    ('spx_2_gru.', lambda: Conv2x(32, 32, True, bn=False)),
    ('corr_stem.1.', lambda: BasicConv(28, 28, kernel_size=3, padding=1, is_3d=True)),
    ('corr_stem.2.', lambda: ResnetBasicBlock3D(28, 28, kernel_size=3, stride=1, padding=1)),
    ('cost_agg.conv1.0.', lambda: BasicConv(28, 56, is_3d=True, bn=True, relu=True,
                                            kernel_size=3, padding=1, stride=2, dilation=1)),
    ('cost_agg.conv1.1.', lambda: Conv3dNormActReduced(56, 56, kernel_size=3, kernel_disp=17)),
    ('cost_agg.conv3_up.', lambda: BasicConv(168, 112, deconv=True, is_3d=True, bn=True,
                                             relu=True, kernel_size=(4, 4, 4),
                                             padding=(1, 1, 1), stride=(2, 2, 2))),
]


@pytest.mark.parametrize('prefix,build', LAYER_USES, ids=[p for p, _ in LAYER_USES])
def test_layer_state_dict_layout_matches_official(layout_vits, prefix, build):
    expected = _official_entries(layout_vits, prefix)
    assert expected, f'no official keys under {prefix}'
    assert _layout_of(build()) == expected


def test_layer_shapes_and_resize_to_skip():
    up = Conv2xIN(32, 16, deconv=True, concat=True).eval()
    out = up(torch.randn(2, 32, 3, 5), torch.randn(2, 16, 6, 10))
    assert out.shape == (2, 32, 6, 10)
    # A skip connection of odd size forces the bilinear resize branch.
    down = Conv2x(8, 8, deconv=False, concat=False, bn=False).eval()
    assert down(torch.randn(1, 8, 7, 9), torch.randn(1, 8, 5, 6)).shape == (1, 8, 5, 6)
    block = ResnetBasicBlock(8, 8).eval()
    assert block(torch.randn(1, 8, 4, 4)).min() >= 0


def test_layer_norm_2d_matches_channel_layer_norm():
    norm = LayerNorm2d(6)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-1, 1)
    x = torch.randn(2, 6, 3, 4)
    mean = x.mean(1, keepdim=True)
    var = x.var(1, unbiased=False, keepdim=True)
    expected = (x - mean) / torch.sqrt(var + 1e-6) * norm.weight[:, None, None] \
        + norm.bias[:, None, None]
    torch.testing.assert_close(norm(x), expected, atol=1e-5, rtol=1e-5)


def test_bad_layer_arguments_raise():
    with pytest.raises(ValueError, match='norm'):
        BasicConv(4, 4, norm='group', kernel_size=1)
    with pytest.raises(ValueError, match='norm_fn'):
        ResidualBlock(4, 4, norm_fn='weird')
    with pytest.raises(ValueError, match='groups'):
        ResnetBasicBlock(4, 4, groups=2)


# ---------------------------------------------------------------- feature network

ATOL, RTOL = 5e-4, 1e-4  # README tolerances for intermediates
GOLDEN_SYNTH = DATA_DIR / 'golden_features_synth.npz'
SHARED_GOLDEN = SHARED_REFERENCE / 'golden'
FEATURE_ARRAYS = (['dino_input']
                  + [f'dino_layer{i}_{part}' for i in range(4) for part in ('tokens', 'cls')]
                  + ['vit_feat', 'features_04', 'features_08', 'features_16', 'features_32'])


@pytest.mark.parametrize('vit_size,d_out', [
    ('vits', [128, 192, 320, 304]), ('vitb', [160, 192, 320, 304]),
    ('vitl', [224, 192, 320, 304])])
def test_feature_state_dict_layout_matches_official(vit_size, d_out):
    layout = load_layout(DATA_DIR / f'state_dict_{vit_size}.json')
    with torch.device('meta'):  # shapes only: no memory, no init cost for ViT-L
        feature = Feature({'vit_size': vit_size})
    assert _layout_of(feature) == _official_entries(layout, 'feature.')
    assert feature.d_out == d_out


@pytest.fixture(scope='module')
def seeded_vits_feature() -> Feature:
    layout = [entry for entry in load_layout(DATA_DIR / 'state_dict_vits.json')
              if entry[0].startswith('feature.')]
    weights = {k.removeprefix('feature.'): v for k, v in make_state_dict(layout).items()}
    feature = Feature({'vit_size': 'vits'})
    feature.load_state_dict(weights, strict=True)
    return feature.eval()


def run_with_intermediates(feature: Feature, left: np.ndarray, right: np.ndarray
                           ) -> dict[str, np.ndarray]:
    """Feature outputs and DINOv2/DPT intermediates (golden-file names) for a 0..255 pair."""
    captured: dict[str, torch.Tensor] = {}

    def grab_dino_input(_module, args):
        captured['dino_input'] = args[0]

    def grab_tokens(_module, args):
        for i, (tokens, cls) in enumerate(args[0]):
            captured[f'dino_layer{i}_tokens'] = tokens
            captured[f'dino_layer{i}_cls'] = cls

    def grab_dino_out(_module, _args, output):
        captured['dino_out'] = output

    head = feature.dino.depth_anything.depth_head
    hooks = [feature.dino.register_forward_pre_hook(grab_dino_input),
             head.register_forward_pre_hook(grab_tokens),
             head.register_forward_hook(grab_dino_out)]
    try:
        image = torch.cat((torch.from_numpy(left), torch.from_numpy(right)))
        with torch.inference_mode():
            pyramid, vit_feat = feature(normalize_image(image))
    finally:
        for hook in hooks:
            hook.remove()
    captured['vit_feat'] = vit_feat
    for name, level in zip(('features_04', 'features_08', 'features_16', 'features_32'),
                           pyramid):
        captured[name] = level
    return {name: tensor.numpy() for name, tensor in captured.items()}


def assert_matches_golden(name: str, actual: np.ndarray, expected: np.ndarray) -> None:
    assert actual.shape == expected.shape, name
    np.testing.assert_allclose(actual, expected, atol=ATOL, rtol=RTOL, err_msg=name)


@pytest.fixture(scope='module')
def synth_run(seeded_vits_feature) -> tuple[dict, dict]:
    golden = dict(np.load(GOLDEN_SYNTH))
    return run_with_intermediates(seeded_vits_feature, golden['left'], golden['right']), golden


@pytest.mark.parametrize('name', FEATURE_ARRAYS)
def test_feature_matches_golden_synth(synth_run, name):
    actual, golden = synth_run
    assert_matches_golden(name, actual[name], golden[name])


def test_dpt_output_matches_golden_synth_subsample(synth_run):
    actual, golden = synth_run
    assert_matches_golden('dino_out', actual['dino_out'][:, :, ::4, ::4],
                          golden['dino_out_stride4'])


def test_dpt_output_matches_full_shared_golden(synth_run):
    path = SHARED_GOLDEN / 'vits_synth_64x96.npz'
    if not path.exists():
        pytest.skip(f'{path} not present (shared reference data is not in the repository)')
    actual, _ = synth_run
    assert_matches_golden('dino_out', actual['dino_out'], np.load(path)['dino_out'])


def test_feature_matches_golden_assets(seeded_vits_feature):
    path = SHARED_GOLDEN / 'vits_assets_96x128.npz'
    if not path.exists():
        pytest.skip(f'{path} not present (derived from the licensed official images, '
                    'never committed)')
    golden = np.load(path)
    actual = run_with_intermediates(seeded_vits_feature, golden['left'], golden['right'])
    for name in FEATURE_ARRAYS:
        assert_matches_golden(name, actual[name], golden[name])


def test_normalize_image_matches_imagenet_normalization():
    image = torch.rand(2, 3, 4, 5) * 255
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    torch.testing.assert_close(normalize_image(image), (image / 255 - mean) / std,
                               atol=0, rtol=0)
    assert normalize_image(image[0]).shape == (3, 4, 5)
    with pytest.raises(ValueError, match='RGB'):
        normalize_image(torch.zeros(1, 1, 4, 4))
    with pytest.raises(ValueError, match='floating'):
        normalize_image(torch.zeros(1, 3, 4, 4, dtype=torch.uint8))


@pytest.mark.parametrize('size,expected', [
    ((64, 96), (112, 112)), ((96, 128), (112, 224)), ((128, 224), (224, 224)),
    ((480, 640), (560, 672)), ((1344, 1344), (1344, 1344)),
    # Width capped; height scaled from its rounded 1568: ceil(1568*1344/2016 / 112) * 112.
    ((1504, 2016), (1120, 1344)),
    ((2016, 1504), (1344, 1120)),   # height capped
    ((1400, 1400), (1344, 1344)),   # square case takes the width branch
])
def test_dino_input_size(size, expected):
    assert dino_input_size(*size) == expected


def test_feature_config_and_input_checks(seeded_vits_feature):
    assert vit_size_of({}) == 'vitl'
    assert vit_size_of(type('Cfg', (), {'vit_size': 'vitb'})()) == 'vitb'
    with pytest.raises(ValueError, match='vit_size'):
        vit_size_of({'vit_size': 'vitg'})
    with pytest.raises(ValueError, match='multiples of 32'):
        seeded_vits_feature(torch.zeros(2, 3, 48, 96))
    with pytest.raises(ValueError, match='RGB'):
        seeded_vits_feature(torch.zeros(2, 1, 64, 96))


def test_feature_train_mode_keeps_depth_anything_frozen():
    with torch.device('meta'):
        feature = Feature({'vit_size': 'vits'})
    feature.train()
    assert feature.stages.training and not feature.dino.training
    assert not any(p.requires_grad for p in feature.dino.parameters())
    assert all(p.requires_grad for p in feature.stages.parameters())

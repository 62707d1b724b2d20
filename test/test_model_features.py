"""Tests of the generic layers and the feature network against the official layouts/goldens."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from conftest import DATA_DIR
from seeded_weights import load_layout

from foundation_stereo_ros.model.layers import (
    BasicConv, BasicConvIN, Conv2x, Conv2xIN, Conv3dNormActReduced, LayerNorm2d,
    ResidualBlock, ResnetBasicBlock, ResnetBasicBlock3D,
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

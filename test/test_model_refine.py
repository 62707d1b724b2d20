"""Refinement parts of FoundationStereo, module by module.

Context network and update block start from the official intermediates stored in
``test/data/golden_model_synth.npz`` (copied from ``shared/reference/golden/vits_synth_64x96``:
official code, CPU fp32, seeded vits weights); geometry encoding, convex upsampling and the
padder are checked against independent straightforward references written here.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import DATA_DIR
from seeded_weights import load_layout, make_state_dict

from foundation_stereo_ros.model.context import (
    ChannelAttention,
    ContextNet,
    SpatialAttention,
)
from foundation_stereo_ros.model.feature import normalize_image
from foundation_stereo_ros.model.geometry_encoding import (
    GeometryEncodingVolume,
    all_pairs_correlation,
    linear_sample_last_dim,
)
from foundation_stereo_ros.model.padder import InputPadder
from foundation_stereo_ros.model.update import SelectiveMultiUpdateBlock
from foundation_stereo_ros.model.upsample import convex_upsample

LEVELS = ('04', '08', '16')
ATOL, RTOL = 5e-4, 1e-4    # reference README: intermediates


@pytest.fixture(scope='module')
def golden():
    with np.load(DATA_DIR / 'golden_model_synth.npz') as z:
        return {k: torch.from_numpy(z[k]) for k in z.files}


@pytest.fixture(scope='module')
def seeded():
    return make_state_dict(load_layout(DATA_DIR / 'state_dict_vits.json'))


def _sub(state_dict, prefix):
    return {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}


def _close(actual, expected, atol=ATOL, rtol=RTOL):
    np.testing.assert_allclose(actual.detach().numpy(), expected.numpy(), atol=atol, rtol=rtol)


def test_context_network_matches_official(golden, seeded):
    cnet = ContextNet('vits', [[128] * 3, [128] * 3]).eval()
    cnet.load_state_dict(_sub(seeded, 'cnet.'), strict=True)
    cam = ChannelAttention(128).eval()
    cam.load_state_dict(_sub(seeded, 'cam.'), strict=True)
    sam = SpatialAttention().eval()
    sam.load_state_dict(_sub(seeded, 'sam.'), strict=True)
    with torch.no_grad():
        levels = cnet(normalize_image(golden['left']), golden['vit_feat_left'], num_layers=3)
        assert len(levels) == 3
        for (net_raw, inp_raw), name in zip(levels, LEVELS):
            _close(net_raw, golden[f'cnet_{name}_net_raw'])
            _close(inp_raw, golden[f'cnet_{name}_inp_raw'])
            inp = torch.relu(inp_raw)
            inp = cam(inp) * inp
            _close(inp, golden[f'context_inp_{name}'])
            _close(sam(inp), golden[f'context_att_{name}'])


def test_update_block_matches_official(golden, seeded):
    block = SelectiveMultiUpdateBlock(3, 522).eval()
    block.load_state_dict(_sub(seeded, 'update_block.'), strict=True)
    net = [golden[f'iter0_net_in_{n}'] for n in LEVELS]
    inp = [golden[f'context_inp_{n}'] for n in LEVELS]
    att = [golden[f'context_att_{n}'] for n in LEVELS]
    with torch.no_grad():
        new_net, mask_feat, delta = block(net, inp, golden['iter0_geo_feat'],
                                          golden['iter0_disp_in'], att)
    for state, name in zip(new_net, LEVELS):
        _close(state, golden[f'iter0_net_out_{name}'])
    _close(mask_feat, golden['iter0_mask_feat'])
    _close(delta, golden['iter0_delta_disp'])
    assert new_net is not net and net[0] is golden['iter0_net_in_04']   # inputs untouched


@pytest.mark.parametrize('layers', [1, 2])
def test_update_block_fewer_gru_layers(layers):
    torch.manual_seed(0)
    block = SelectiveMultiUpdateBlock(layers, 522).eval()
    shapes = [(1, 128, 8, 12), (1, 128, 4, 6), (1, 128, 2, 3)][:layers]
    net = [torch.randn(s) for s in shapes]
    inp = [torch.randn(s) for s in shapes]
    att = [torch.rand(s[0], 1, *s[2:]) for s in shapes]
    with torch.no_grad():
        new_net, mask_feat, delta = block(net, inp, torch.randn(1, 522, 8, 12),
                                          torch.rand(1, 1, 8, 12) * 20, att)
    assert [tuple(n.shape) for n in new_net] == shapes
    assert tuple(mask_feat.shape) == (1, 32, 8, 12) and tuple(delta.shape) == (1, 1, 8, 12)
    assert not torch.equal(new_net[0], net[0])
    with pytest.raises(ValueError, match='n_gru_layers'):
        SelectiveMultiUpdateBlock(4, 522)


# ---------------------------------------------------------------------------- geometry
def _grid_sample_rows(table, x):
    """Sample (N, C, L) rows at positions x (N, K) with F.grid_sample (the reference)."""
    n, c, length = table.shape
    gx = x / (length - 1) * 2 - 1
    grid = torch.stack([gx, torch.zeros_like(gx)], dim=-1).view(n, 1, -1, 2)
    return F.grid_sample(table.view(n, c, 1, length).double(), grid.double(), mode='bilinear',
                         padding_mode='zeros', align_corners=True).view(n, c, -1)


def _reference_encoding(fmap1, fmap2, volume, disp, levels, radius):
    """Geometry encoding with grid_sample and explicit per-level loops (float64)."""
    b, c, d, h, w = volume.shape
    corr = torch.einsum('bchx,bchy->bhxy', F.normalize(fmap1.double(), dim=1),
                        F.normalize(fmap2.double(), dim=1))
    vol_rows = volume.double().permute(0, 3, 4, 1, 2).reshape(b * h * w, c, d)
    corr_rows = corr.reshape(b * h * w, 1, w)
    d_rows = disp.double().permute(0, 2, 3, 1).reshape(b * h * w, 1)
    cols = torch.arange(w, dtype=torch.float64).repeat(b * h).view(-1, 1)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64).view(1, -1)
    out = []
    for level in range(levels):
        if level:
            vol_rows = F.avg_pool1d(vol_rows, 2, 2)
            corr_rows = F.avg_pool1d(corr_rows, 2, 2)
        s = 2 ** level
        out.append(_grid_sample_rows(vol_rows, d_rows / s + offsets).reshape(b * h * w, -1))
        out.append(_grid_sample_rows(corr_rows, (cols - d_rows) / s + offsets)
                   .reshape(b * h * w, -1))
    return torch.cat(out, 1).view(b, h, w, -1).permute(0, 3, 1, 2)


@pytest.mark.parametrize('levels,radius,width', [(2, 4, 24), (3, 2, 13), (1, 0, 7)])
def test_geometry_encoding_matches_grid_sample(levels, radius, width):
    torch.manual_seed(1)
    b, c, d, h = 2, 5, 19, 3
    fmap1 = torch.randn(b, 16, h, width)
    fmap2 = torch.randn(b, 16, h, width)
    volume = torch.randn(b, c, d, h, width)
    # Integers, halves, values near/outside both ends of the volume and of the image row.
    disp = torch.rand(b, 1, h, width) * (d + 10) - 6
    disp[0, 0, 0, :6] = torch.tensor([0.0, 1.0, d - 1.0, -4.5, 2.5, d + 4.0])
    geo = GeometryEncodingVolume(fmap1, fmap2, volume, num_levels=levels, radius=radius)
    out = geo(disp)
    ref = _reference_encoding(fmap1, fmap2, volume, disp, levels, radius)
    assert out.shape == ref.shape == (b, levels * (2 * radius + 1) * (c + 1), h, width)
    assert geo.channels == out.shape[1] and out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), ref.numpy(), atol=1e-5, rtol=1e-5)


def test_geometry_encoding_channel_order():
    """Per level: volume channel-major (c * K + k), then the K correlation samples."""
    b, c, d, h, w = 1, 3, 16, 1, 8
    volume = torch.zeros(b, c, d, h, w)
    for ch in range(c):
        volume[:, ch] = (100 * ch + torch.arange(d, dtype=torch.float32)).view(1, d, 1, 1)
    fmap = torch.ones(b, 4, h, w)      # correlation == 1 everywhere
    geo = GeometryEncodingVolume(fmap, fmap, volume, num_levels=2, radius=1)
    out = geo(torch.full((b, 1, h, w), 5.0))[0, :, 0, 7]
    level0 = [100 * ch + 5 + k for ch in range(c) for k in (-1, 0, 1)] + [1.0, 1.0, 1.0]
    # Level 1: volume pooled pairwise (mean of 2j, 2j+1 = 2j + 0.5) sampled at 2.5 + k.
    level1 = [100 * ch + 2 * (2.5 + k) + 0.5 for ch in range(c) for k in (-1, 0, 1)]
    level1 += [1.0, 1.0, 1.0]
    np.testing.assert_allclose(out.numpy(), np.array(level0 + level1), atol=1e-5)


def test_linear_sample_zero_padding():
    table = torch.tensor([[1.0, 2.0, 4.0]])
    x = torch.tensor([[-1.0, -0.5, 0.0, 0.25, 1.5, 2.0, 2.5, 3.0, 1e6, -1e6]])
    expected = [0.0, 0.5, 1.0, 1.25, 3.0, 4.0, 2.0, 0.0, 0.0, 0.0]
    np.testing.assert_allclose(linear_sample_last_dim(table, x).numpy()[0], expected)


def test_all_pairs_correlation_is_cosine():
    torch.manual_seed(2)
    f1, f2 = torch.randn(1, 8, 2, 5), torch.randn(1, 8, 2, 6)
    corr = all_pairs_correlation(f1, f2)
    assert corr.shape == (1, 2, 5, 6)
    expected = F.cosine_similarity(f1[0, :, 1, 3], f2[0, :, 1, 4], dim=0)
    assert abs(corr[0, 1, 3, 4].item() - expected.item()) < 1e-6


def test_refinement_step_runs_without_host_data():
    """One refinement step (geometry lookup, update block, upsampling) on meta tensors.

    Meta tensors have no data, so any .item(), host copy or data-dependent branch would raise:
    this guards the "no host synchronisation inside the refinement loop" requirement.
    """
    dev = torch.device('meta')
    geo = GeometryEncodingVolume(torch.empty(1, 8, 8, 12, device=dev),
                                 torch.empty(1, 8, 8, 12, device=dev),
                                 torch.empty(1, 28, 24, 8, 12, device=dev))
    disp = torch.empty(1, 1, 8, 12, device=dev)
    geo_feat = geo(disp)
    assert geo_feat.shape == (1, 522, 8, 12)
    block = SelectiveMultiUpdateBlock(3, 522).to(dev)
    shapes = [(1, 128, 8, 12), (1, 128, 4, 6), (1, 128, 2, 3)]
    net = [torch.empty(s, device=dev) for s in shapes]
    att = [torch.empty(s[0], 1, *s[2:], device=dev) for s in shapes]
    net, mask_feat, delta = block(net, net, geo_feat, disp, att)
    up = convex_upsample(disp + delta, torch.empty(1, 9, 32, 48, device=dev))
    assert up.shape == (1, 32, 48) and mask_feat.shape == (1, 32, 8, 12)


# ---------------------------------------------------------------------------- upsampling
def test_convex_upsample_matches_unfold_reference():
    torch.manual_seed(3)
    disp = torch.randn(2, 1, 5, 7) * 30
    weights = torch.softmax(torch.randn(2, 9, 20, 28), dim=1)
    neighbours = F.unfold(disp, 3, padding=1).view(2, 9, 5, 7)
    neighbours = F.interpolate(neighbours, scale_factor=4, mode='nearest')
    expected = (neighbours * weights).sum(1)
    np.testing.assert_allclose(convex_upsample(disp, weights).numpy(), expected.numpy(),
                               atol=1e-4, rtol=1e-6)
    with pytest.raises(ValueError, match='integer'):
        convex_upsample(disp, weights[..., :27])


# ---------------------------------------------------------------------------- padder
def test_padder_matches_demo_split():
    padder = InputPadder((1, 3, 120, 200), divis_by=32)
    assert padder.pad_amounts == [12, 12, 4, 4]   # demo_pad of the goldens
    x = torch.arange(120 * 200, dtype=torch.float32).view(1, 1, 120, 200)
    (padded,) = padder.pad(x)
    assert padded.shape == (1, 1, 128, 224)
    assert torch.equal(padded[0, 0, 0, :12], x[0, 0, 0, :1].expand(12))   # replicate
    assert torch.equal(padder.unpad(padded), x)


def test_padder_split_and_errors():
    assert InputPadder((64, 96)).pad_amounts == [0, 0, 0, 0]
    assert InputPadder((65, 95)).pad_amounts == [0, 1, 15, 16]
    with pytest.raises(ValueError, match='made for'):
        InputPadder((64, 96)).pad(torch.zeros(1, 3, 60, 96))
    with pytest.raises(ValueError, match='expected'):
        InputPadder((64, 96)).pad(torch.zeros(3, 64))

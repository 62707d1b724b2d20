"""Cost volumes, cost aggregation and the disparity transformer against the official goldens.

Committed data (``test/data/golden_cost_synth.npz``, from the synthetic 64x96 vits golden):
the 1/4..1/32 features, the full group-wise and concat volumes, the classifier logits and
init disparity (both attention semantics) and regular subsamples (``sub_slices``: start/step
along D, H, W) of the dense 28-channel volumes. The full dense volumes are compared too when
the shared reference folder sits beside the repository.

Regenerate the data file from the repository root with
``PYTHONPATH=. python test/test_model_cost.py`` (needs the shared folder).
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import DATA_DIR, SHARED_REFERENCE
from seeded_weights import load_layout, make_state_dict
from torch import nn

from foundation_stereo_ros.model.cost_aggregation import (
    FeatureAtt,
    Hourglass,
    make_classifier,
    make_corr_stem,
)
from foundation_stereo_ros.model.cost_attention import (
    ATTEND_DISPARITY,
    ATTEND_HEADS,
    CostVolumeDisparityAttention,
    sinusoidal_embedding,
)
from foundation_stereo_ros.model.cost_volume import (
    build_concat_volume,
    build_gwc_volume,
    concat_volume_reference,
    disparity_regression,
    gwc_volume_reference,
)

torch.set_num_threads(2)

GOLDEN_FILE = DATA_DIR / 'golden_cost_synth.npz'
SHARED_GOLDEN = SHARED_REFERENCE / 'golden' / 'vits_synth_64x96.npz'
SHARED_GOLDEN_HEADS = SHARED_REFERENCE / 'golden' / 'vits_synth_64x96_headsdpa.npz'
MAX_DISP = 416
BINS = MAX_DISP // 4
CV_GROUPS = 8
VOLUME_DIM = 28
PREFIXES = ('proj_cmb.', 'corr_stem.', 'corr_feature_att.', 'cost_agg.', 'classifier.')
# README tolerances: intermediates / init_disp.
TOL = {'atol': 5e-4, 'rtol': 1e-4}
TOL_DISP = {'atol': 1e-3, 'rtol': 1e-5}


class CostPart(nn.Module):
    """The cost-volume modules of FoundationStereo under their official attribute names."""

    def __init__(self, feat_dims: list[int], attention: str = ATTEND_DISPARITY):
        super().__init__()
        # proj_cmb belongs to the top-level model; a plain 1x1 conv reproduces it here.
        self.proj_cmb = nn.Conv2d(feat_dims[0], 12, kernel_size=1)
        self.corr_stem = make_corr_stem(2 * 12 + CV_GROUPS, VOLUME_DIM)
        self.corr_feature_att = FeatureAtt(VOLUME_DIM, feat_dims[0])
        self.cost_agg = Hourglass(MAX_DISP, VOLUME_DIM, feat_dims, attention=attention)
        self.classifier = make_classifier(VOLUME_DIM)

    def volumes(self, feat_left: torch.Tensor, feat_right: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        gwc = build_gwc_volume(feat_left, feat_right, BINS, CV_GROUPS)
        concat = build_concat_volume(self.proj_cmb(feat_left), self.proj_cmb(feat_right), BINS)
        return gwc, concat


def _official_layout(layout: list, prefixes: tuple[str, ...] = PREFIXES) -> list:
    return [[k, list(s), d] for k, s, d in layout if k.startswith(prefixes)]


def _layout_of(module: nn.Module) -> list:
    return [[k, list(v.shape), str(v.dtype).removeprefix('torch.')]
            for k, v in module.state_dict().items()]


def _feat_dims(layout: list) -> list[int]:
    shapes = {k: s for k, s, _ in layout}
    return [shapes['proj_cmb.weight'][1]] + [
        shapes[f'cost_agg.feature_att_{n}.feat_att.0.conv.weight'][1] for n in (8, 16, 32)]


def _sub(x: np.ndarray | torch.Tensor, sub_slices: np.ndarray) -> np.ndarray:
    """Regular subsample of a (B, C, D, H, W) volume, as stored in the data file."""
    if isinstance(x, torch.Tensor):
        x = x.numpy()
    index = (slice(None), slice(None)) + tuple(slice(int(s), None, int(k)) for s, k in sub_slices)
    return x[index]


def _close(actual: torch.Tensor | np.ndarray, expected: np.ndarray, tol: dict) -> float:
    actual = actual.numpy() if isinstance(actual, torch.Tensor) else actual
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, **tol)
    return float(np.abs(actual - expected).max())


@pytest.fixture(scope='module')
def layout_vits() -> list:
    return _official_layout(load_layout(DATA_DIR / 'state_dict_vits.json'))


@pytest.fixture(scope='module')
def weights(layout_vits: list) -> dict[str, torch.Tensor]:
    # The recipe depends on (key, shape, dtype) only, so the subset gives the same values.
    return make_state_dict(layout_vits)


@pytest.fixture(scope='module')
def golden() -> dict[str, np.ndarray]:
    with np.load(GOLDEN_FILE) as z:
        return {k: z[k] for k in z.files}


def _loaded(weights: dict, feat_dims: list[int], attention: str) -> CostPart:
    model = CostPart(feat_dims, attention)
    model.load_state_dict(weights, strict=True)
    return model.eval()


@pytest.mark.parametrize('vit', ['vits', 'vitb', 'vitl'])
def test_state_dict_layout_matches_official(vit: str) -> None:
    layout = _official_layout(load_layout(DATA_DIR / f'state_dict_{vit}.json'))
    model = CostPart(_feat_dims(layout))
    assert _layout_of(model) == layout
    # The transformer's position table is computed, not held (not even as a buffer).
    assert not list(model.cost_agg.atts['4'].buffers())


# (B, C, H, W, bins, groups): fewer columns than bins, prime width, width > bins, groups of 1.
VOLUME_CASES = [(2, 16, 3, 24, 104, 8), (1, 32, 5, 37, 12, 4), (1, 8, 2, 160, 104, 8),
                (2, 8, 3, 7, 3, 2), (1, 6, 1, 50, 50, 1)]


@pytest.mark.parametrize('case', VOLUME_CASES)
def test_volumes_equal_per_disparity_reference(case: tuple) -> None:
    b, c, h, w, bins, groups = case
    gen = torch.Generator().manual_seed(sum(case))
    left = torch.randn(b, c, h, w, generator=gen)
    right = torch.randn(b, c, h, w, generator=gen)
    left[..., 0, 1] = 0.0  # an all-zero feature vector must give zero correlation, not NaN
    gwc = build_gwc_volume(left, right, bins, groups)
    assert gwc.shape == (b, groups, bins, h, w) and gwc.is_contiguous()
    torch.testing.assert_close(gwc, gwc_volume_reference(left, right, bins, groups), atol=1e-6,
                               rtol=0)
    concat = build_concat_volume(left, right, bins)
    assert concat.shape == (b, 2 * c, bins, h, w)
    assert torch.equal(concat, concat_volume_reference(left, right, bins))
    # With gradients the volume comes from a differentiable path; same values.
    left.requires_grad_(True)
    concat = build_concat_volume(left, right, bins)
    assert torch.equal(concat.detach(), concat_volume_reference(left.detach(), right, bins))
    concat.sum().backward()
    assert torch.equal(left.grad, torch.full_like(left, bins))


def test_volume_dtypes_and_bad_input() -> None:
    left = torch.randn(1, 16, 4, 20).to(torch.bfloat16)
    right = torch.randn(1, 16, 4, 20).to(torch.bfloat16)
    # Correlation is computed in float32 and stored in the feature dtype, as upstream.
    gwc = build_gwc_volume(left, right, 8, 4)
    assert gwc.dtype == torch.bfloat16
    ref = gwc_volume_reference(left.float(), right.float(), 8, 4).to(torch.bfloat16)
    assert (gwc.float() - ref.float()).abs().max() <= 8e-3  # at most one bf16 step
    assert build_concat_volume(left, right, 8).dtype == torch.bfloat16
    with pytest.raises(ValueError, match='groups'):
        build_gwc_volume(left.float(), right.float(), 8, 5)
    with pytest.raises(ValueError, match='max_disp'):
        build_concat_volume(left, right, 0)
    with pytest.raises(ValueError, match='multiple of 32'):
        Hourglass(400, VOLUME_DIM, [128, 192, 320, 304])


def test_disparity_regression() -> None:
    logits = torch.randn(2, 10, 3, 4)
    prob = logits.softmax(dim=1)
    expected = torch.einsum('bdhw,d->bhw', prob, torch.arange(10.0)).unsqueeze(1)
    torch.testing.assert_close(disparity_regression(prob, 10), expected)
    one_hot = F.one_hot(torch.full((1, 2, 2), 7), 10).permute(0, 3, 1, 2).float()
    assert torch.equal(disparity_regression(one_hot, 10), torch.full((1, 1, 2, 2), 7.0))
    with pytest.raises(ValueError, match='expected probabilities'):
        disparity_regression(prob, 12)


def test_position_embedding() -> None:
    table = sinusoidal_embedding(26, 28)
    assert table.shape == (1, 26, 28)
    pos, i = 5, 3
    freq = 10000.0 ** (-2 * i / 28)
    assert table[0, pos, 2 * i].item() == pytest.approx(np.sin(pos * freq), abs=1e-6)
    assert table[0, pos, 2 * i + 1].item() == pytest.approx(np.cos(pos * freq), abs=1e-6)
    att = CostVolumeDisparityAttention(28, 4, 28, num_transformer=1, max_len=26).eval()
    with pytest.raises(ValueError, match='max_len'):
        att(torch.zeros(1, 28, 27, 1, 1))
    att.resize_embed = True
    assert att.position_embedding(40, torch.device('cpu'), torch.float32).shape == (1, 40, 28)
    with pytest.raises(ValueError, match='attention must be one of'):
        CostVolumeDisparityAttention(28, 4, 28, attention='tokens')


def test_attention_semantics_differ_and_disparity_mode_mixes_bins() -> None:
    torch.manual_seed(0)
    flash = CostVolumeDisparityAttention(28, 4, 28, num_transformer=1, max_len=8).eval()
    heads = CostVolumeDisparityAttention(28, 4, 28, num_transformer=1, max_len=8,
                                         attention=ATTEND_HEADS).eval()
    heads.load_state_dict(flash.state_dict())
    cv = torch.randn(1, 28, 8, 2, 3)
    with torch.inference_mode():
        out_flash, out_heads = flash(cv), heads(cv)
        cv2 = cv.clone()
        cv2[:, :, 0] += 1.0  # change one disparity bin
        diff_flash = (flash(cv2) - out_flash)[:, :, 1:].abs().max()
        diff_heads = (heads(cv2) - out_heads)[:, :, 1:].abs().max()
    assert out_flash.shape == cv.shape
    assert (out_flash - out_heads).abs().max() > 1e-3
    # Attention along disparities lets bin 0 influence the others; across heads it cannot.
    assert diff_flash > 1e-3
    assert diff_heads == 0


@pytest.mark.parametrize('attention', [ATTEND_DISPARITY, ATTEND_HEADS])
def test_cost_chain_matches_golden(weights: dict, layout_vits: list, golden: dict,
                                   attention: str) -> None:
    """features_04..32 -> volumes -> stem -> gate -> hourglass -> classifier -> init_disp."""
    model = _loaded(weights, _feat_dims(layout_vits), attention)
    sub = golden['sub_slices']
    prefix = '' if attention == ATTEND_DISPARITY else 'headsdpa_'
    f04 = torch.from_numpy(golden['features_04'])
    features_left = [f04[:1]] + [torch.from_numpy(golden[f'features_{n}_left'])
                                 for n in ('08', '16', '32')]
    with torch.inference_mode():
        gwc, concat = model.volumes(f04[:1], f04[1:])
        _close(gwc, golden['gwc_volume'], TOL)
        _close(concat, golden['concat_volume'], TOL)
        volume = model.corr_stem(torch.cat([gwc, concat], dim=1))
        _close(_sub(volume, sub), golden['corr_stem_out_sub'], TOL)
        volume = model.corr_feature_att(volume, features_left[0])
        _close(_sub(volume, sub), golden['cost_agg_in_sub'], TOL)
        volume = model.cost_agg(volume, features_left)
        _close(_sub(volume, sub), golden[f'{prefix}cost_agg_out_sub'], TOL)
        logits = model.classifier(volume)
        _close(logits, golden[f'{prefix}classifier_out'], TOL)
        init_disp = disparity_regression(F.softmax(logits.squeeze(1), dim=1), BINS)
        _close(init_disp, golden[f'{prefix}init_disp'], TOL_DISP)


@pytest.mark.skipif(not SHARED_GOLDEN.exists(),
                    reason=f'dense cost volumes need the shared reference {SHARED_GOLDEN}')
def test_dense_volumes_match_shared_golden(weights: dict, layout_vits: list) -> None:
    """Each stage from its golden input, compared over the whole dense volume."""
    feat_dims = _feat_dims(layout_vits)
    with np.load(SHARED_GOLDEN) as z, np.load(SHARED_GOLDEN_HEADS) as zh:
        ref = {k: z[k] for k in ('features_04', 'features_08', 'features_16', 'features_32',
                                 'gwc_volume', 'concat_volume', 'corr_stem_out',
                                 'cost_agg_in', 'cost_agg_out', 'classifier_out')}
        ref_heads = {k: zh[k] for k in ('cost_agg_out', 'classifier_out')}
    t = {k: torch.from_numpy(v) for k, v in ref.items()}
    features_left = [t[f'features_{n}'][:1] for n in ('04', '08', '16', '32')]
    model = _loaded(weights, feat_dims, ATTEND_DISPARITY)
    heads = _loaded(weights, feat_dims, ATTEND_HEADS)
    with torch.inference_mode():
        gwc, concat = model.volumes(t['features_04'][:1], t['features_04'][1:])
        _close(gwc, ref['gwc_volume'], TOL)
        _close(concat, ref['concat_volume'], TOL)
        stem = model.corr_stem(torch.cat([t['gwc_volume'], t['concat_volume']], dim=1))
        _close(stem, ref['corr_stem_out'], TOL)
        _close(model.corr_feature_att(t['corr_stem_out'], features_left[0]),
               ref['cost_agg_in'], TOL)
        _close(model.cost_agg(t['cost_agg_in'], features_left), ref['cost_agg_out'], TOL)
        _close(model.classifier(t['cost_agg_out']), ref['classifier_out'], TOL)
        _close(heads.cost_agg(t['cost_agg_in'], features_left), ref_heads['cost_agg_out'], TOL)


def test_autocast_bfloat16_runs() -> None:
    """No hard-coded dtypes: the aggregation runs under CPU bfloat16 autocast."""
    torch.manual_seed(0)
    feat_dims = [16, 8, 8, 8]
    hourglass = Hourglass(64, 8, feat_dims).eval()
    classifier = make_classifier(8).eval()
    volume = torch.randn(1, 8, 16, 8, 8)
    feats = [torch.randn(1, c, 8 // 2 ** i, 8 // 2 ** i) for i, c in enumerate(feat_dims)]
    with torch.inference_mode(), torch.autocast('cpu', dtype=torch.bfloat16):
        logits = classifier(hourglass(volume, feats))
        disp = disparity_regression(F.softmax(logits.squeeze(1).float(), dim=1), 16)
    with torch.inference_mode():
        ref = disparity_regression(
            F.softmax(classifier(hourglass(volume, feats)).squeeze(1), dim=1), 16)
    assert logits.shape == (1, 1, 16, 8, 8)
    assert torch.isfinite(disp).all()
    assert (disp - ref).abs().max() < 0.5  # bins; bf16 keeps about 3 significant digits


class _TinyCostPart(nn.Module):
    """Volumes -> stem -> gate -> hourglass -> classifier -> disparity, at toy sizes."""

    def __init__(self, attention: str):
        super().__init__()
        self.proj = nn.Conv2d(16, 12, 1)
        self.stem = make_corr_stem(8 + 24, 8)
        self.gate = FeatureAtt(8, 16)
        self.agg = Hourglass(64, 8, [16, 8, 8, 8], attention=attention)
        self.cls = make_classifier(8)

    def forward(self, left: torch.Tensor, right: torch.Tensor, f8: torch.Tensor,
                f16: torch.Tensor, f32: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        volume = torch.cat([build_gwc_volume(left, right, 16, 8),
                            build_concat_volume(self.proj(left), self.proj(right), 16)], dim=1)
        volume = self.agg(self.gate(self.stem(volume), left), [left, f8, f16, f32])
        disp = disparity_regression(torch.softmax(self.cls(volume).squeeze(1), dim=1), 16)
        return disp, volume


@pytest.mark.parametrize('attention', [ATTEND_DISPARITY, ATTEND_HEADS])
def test_cost_part_exports_to_onnx(tmp_path, attention: str) -> None:
    """Traceable by the TorchScript ONNX exporter (no unfold/as_strided/out=), batch dynamic."""
    ort = pytest.importorskip('onnxruntime')
    pytest.importorskip('onnx')
    torch.manual_seed(0)
    model = _TinyCostPart(attention).eval()
    shapes = [(16, 8, 16), (16, 8, 16), (8, 4, 8), (8, 2, 4), (8, 1, 2)]
    names = ['left', 'right', 'f8', 'f16', 'f32']
    inputs = [torch.randn(1, *s) for s in shapes]
    path = tmp_path / 'cost.onnx'
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter('ignore')
        torch.onnx.export(model, tuple(inputs), str(path), dynamo=False, opset_version=17,
                          input_names=names, output_names=['disp', 'volume'],
                          dynamic_axes={n: {0: 'batch'} for n in names + ['disp', 'volume']})
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    batch2 = [torch.randn(2, *s) for s in shapes]
    disp, volume = session.run(None, {n: x.numpy() for n, x in zip(names, batch2)})
    with torch.inference_mode():
        ref_disp, ref_volume = model(*batch2)
    np.testing.assert_allclose(disp, ref_disp.numpy(), atol=1e-4, rtol=1e-5)
    np.testing.assert_allclose(volume, ref_volume.numpy(), atol=1e-4, rtol=1e-4)


def _write_golden_file() -> None:
    """Extract the committed arrays from the shared reference goldens."""
    sub_slices = np.array([[1, 4], [0, 2], [1, 2]], dtype=np.int64)  # D, H, W: start, step
    with np.load(SHARED_GOLDEN) as z, np.load(SHARED_GOLDEN_HEADS) as zh:
        arrays = {
            'sub_slices': sub_slices,
            'features_04': z['features_04'],
            'features_08_left': z['features_08'][:1],
            'features_16_left': z['features_16'][:1],
            'features_32_left': z['features_32'][:1],
            'gwc_volume': z['gwc_volume'],
            'concat_volume': z['concat_volume'],
            'corr_stem_out_sub': _sub(z['corr_stem_out'], sub_slices),
            'cost_agg_in_sub': _sub(z['cost_agg_in'], sub_slices),
            'cost_agg_out_sub': _sub(z['cost_agg_out'], sub_slices),
            'classifier_out': z['classifier_out'],
            'init_disp': z['init_disp'],
            'headsdpa_cost_agg_out_sub': _sub(zh['cost_agg_out'], sub_slices),
            'headsdpa_classifier_out': zh['classifier_out'],
            'headsdpa_init_disp': zh['init_disp'],
        }
    np.savez_compressed(GOLDEN_FILE, **{k: np.ascontiguousarray(v) for k, v in arrays.items()})
    print(f'wrote {GOLDEN_FILE} ({GOLDEN_FILE.stat().st_size} bytes)')


if __name__ == '__main__':
    _write_golden_file()

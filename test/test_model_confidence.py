"""The network confidence (model/confidence.py) of both families.

Checked against hand-built distributions (a sharp peak, a flat one, two peaks) and against an
independent numpy computation from the official code's distribution: the golden classifier
logits and final 1/4-resolution disparity of the seeded networks, with the window of the
definition and the convex (unfold, nearest x4) upsampling written out in numpy.
"""
import numpy as np
import pytest
import torch
from conftest import CFFS_CHECKPOINT, DATA_DIR, SHARED_REFERENCE
from seeded_weights import load_layout, make_state_dict

from foundation_stereo_ros.backends.base import DisparityBackend
from foundation_stereo_ros.model import build_model, load_checkpoint
from foundation_stereo_ros.model.confidence import (
    CONFIDENCE_RADIUS,
    upsample_confidence,
    window_mass,
)

D, H, W = 48, 3, 4
FS_GOLDEN = SHARED_REFERENCE / 'golden' / 'vits_synth_64x96.npz'
FFS_GOLDEN = DATA_DIR / 'golden_ffs_synth.npz'


def distribution(weights_per_bin):
    """(1, D, H, W) distribution with the same (normalised) histogram at every pixel."""
    p = torch.tensor(weights_per_bin, dtype=torch.float32)
    p = p / p.sum()
    return p.view(1, -1, 1, 1).expand(1, len(weights_per_bin), H, W).contiguous()


def full(value):
    return torch.full((1, 1, H, W), float(value))


def test_one_sharp_peak_gives_about_one():
    bins = np.zeros(D)
    bins[20] = 1.0
    assert torch.allclose(window_mass(distribution(bins), full(20.0)), full(1.0))
    # Anywhere within half a bin of the peak the whole bin is still inside the window.
    assert torch.allclose(window_mass(distribution(bins), full(20.4)), full(1.0))
    # A peak spread over its neighbours (a sub-bin position) stays above 0.9.
    soft = np.exp(-0.5 * ((np.arange(D) - 20.3) / 0.4) ** 2)
    assert (window_mass(distribution(soft), full(20.3)) > 0.9).all()


def test_a_flat_distribution_gives_about_zero():
    conf = window_mass(distribution(np.ones(D)), full(17.3))
    # The window covers 2r bins of D.
    assert torch.allclose(conf, full(2 * CONFIDENCE_RADIUS / D))
    assert (conf < 0.05).all()


def test_two_peaks_lie_in_between():
    bins = np.zeros(D)
    bins[10] = bins[30] = 1.0
    assert torch.allclose(window_mass(distribution(bins), full(10.0)), full(0.5))
    bins[30] = 3.0   # the estimate sits on the smaller peak: a quarter of the mass backs it
    assert torch.allclose(window_mass(distribution(bins), full(10.0)), full(0.25))
    # Between two equal peaks (what a soft-argmin gives) nothing backs the estimate.
    bins[30] = 1.0
    assert torch.allclose(window_mass(distribution(bins), full(20.0)), full(0.0))


def test_the_window_cuts_bins_by_the_share_it_covers():
    bins = np.zeros(D)
    bins[20] = 1.0
    # Window [21.25 - 1, 21.25 + 1] covers [20.25, 20.5] of bin 20's [19.5, 20.5]: a quarter.
    assert torch.allclose(window_mass(distribution(bins), full(21.25)), full(0.25))
    assert torch.allclose(window_mass(distribution(bins), full(22.0)), full(0.0))
    # Outside the bins' range nothing is backed.
    assert torch.allclose(window_mass(distribution(bins), full(-5.0)), full(0.0))


def test_bad_arguments_are_refused():
    prob = distribution(np.ones(D))
    with pytest.raises(ValueError, match='radius'):
        window_mass(prob, full(3.0), radius=0.25)
    with pytest.raises(ValueError, match='disp'):
        window_mass(prob, torch.zeros(1, 2, H, W))


def test_upsampling_is_a_convex_mix_in_range():
    gen = torch.Generator().manual_seed(0)
    conf = torch.rand(2, 1, 5, 6, generator=gen)
    weights = torch.softmax(torch.randn(2, 9, 20, 24, generator=gen), dim=1)
    up = upsample_confidence(conf, weights)
    assert up.shape == (2, 1, 20, 24)
    assert up.min() >= conf.min() - 1e-6 and up.max() <= conf.max() + 1e-6
    # Constant confidence stays constant, borders included (replicated, not zero-padded).
    assert torch.allclose(upsample_confidence(torch.full_like(conf, 0.7), weights),
                          torch.full_like(up, 0.7))


def numpy_confidence(logits, disp_low, weight_logits, radius=CONFIDENCE_RADIUS):
    """Compute the definition in numpy.

    ``logits`` (B,1,D,h,w), ``disp_low`` (B,1,h,w) in bins, ``weight_logits`` (B,9,H,W).
    """
    logits = logits[:, 0].astype(np.float64)
    prob = np.exp(logits - logits.max(1, keepdims=True))
    prob /= prob.sum(1, keepdims=True)
    bins = np.arange(prob.shape[1]).reshape(1, -1, 1, 1)
    lo = np.maximum(bins - 0.5, disp_low - radius)
    hi = np.minimum(bins + 0.5, disp_low + radius)
    conf = (prob * np.clip(hi - lo, 0.0, None)).sum(1)          # (B, h, w)
    weights = np.exp(weight_logits - weight_logits.max(1, keepdims=True))
    weights /= weights.sum(1, keepdims=True)
    _, h, w = conf.shape
    padded = np.pad(conf, ((0, 0), (1, 1), (1, 1)), mode='edge')
    factor = weights.shape[-1] // w
    up = np.zeros(weights.shape[:1] + weights.shape[2:])
    for k, (i, j) in enumerate((i, j) for i in range(3) for j in range(3)):
        neighbour = padded[:, i:i + h, j:j + w]
        up += weights[:, k] * neighbour.repeat(factor, 1).repeat(factor, 2)
    return up[:, None]


def peaks(golden):
    """(1, 1, D, h, w) logits to add: a peak per pixel, sharp to broad, on or off the estimate.

    The seeded networks' distributions are nearly flat (their confidence is about 2r/D
    everywhere); adding these logits (in the model by a hook, and in numpy) tests the whole
    range. Peak width grows along the columns (0.3 to 4 bins), the peak moves away from the
    final disparity along the rows (0 to 3 bins).
    """
    logits = golden['classifier_out']
    _, _, bins, h, w = logits.shape
    final_low = (golden['iter1_disp_in'] + golden['iter1_delta_disp'])[:, :, None]
    centre = final_low + np.linspace(0.0, 3.0, h).reshape(1, 1, 1, h, 1)
    sigma = np.linspace(0.3, 4.0, w).reshape(1, 1, 1, 1, w)
    d = np.arange(bins).reshape(1, 1, bins, 1, 1)
    return (-(d - centre) ** 2 / (2 * sigma ** 2)).astype(np.float32)


def check_against_golden(model, golden, added):
    """Compare the model's confidence with the numpy one from the golden distribution.

    ``added``: logits added to the classifier output (0 or :func:`peaks`). The golden initial
    disparity is passed in, so the disparities follow the official run whatever is added.
    """
    weight_logits = []
    handles = [
        model.spx_gru.register_forward_hook(
            lambda _m, _i, out: weight_logits.append(out.numpy())),
        model.classifier.register_forward_hook(
            lambda _m, _i, out: out + torch.as_tensor(added))]
    try:
        with torch.inference_mode():
            disp, conf = model(torch.from_numpy(golden['left']),
                               torch.from_numpy(golden['right']), iters=2, test_mode=True,
                               init_disp=torch.from_numpy(golden['init_disp']),
                               confidence=True)
    finally:
        for handle in handles:
            handle.remove()
    assert len(weight_logits) == 1   # one upsampling, after the last step
    # The confidence changes nothing of the disparity.
    np.testing.assert_allclose(disp.numpy(), golden['disp_test_iters2'], atol=2e-3, rtol=1e-5)
    final_low = golden['iter1_disp_in'] + golden['iter1_delta_disp']
    expected = numpy_confidence(golden['classifier_out'] + added, final_low, weight_logits[0])
    conf = conf.numpy()
    assert conf.shape == expected.shape and conf.dtype == np.float32
    np.testing.assert_allclose(conf, expected, atol=1e-4)
    return expected


def check_both_distributions(model, golden):
    bins = golden['classifier_out'].shape[2]
    flat = check_against_golden(model, golden, np.float32(0.0))
    assert np.abs(flat - 2 * CONFIDENCE_RADIUS / bins).max() < 0.02   # nearly flat
    peaked = check_against_golden(model, golden, peaks(golden))
    assert peaked.max() > 0.9 and peaked.min() < 0.1


@pytest.mark.skipif(not FS_GOLDEN.is_file(), reason=f'FoundationStereo golden with the '
                    f'classifier logits not found at {FS_GOLDEN} (shared reference folder)')
def test_foundation_stereo_confidence_matches_numpy_on_the_official_distribution():
    model = build_model({'vit_size': 'vits', 'max_disp': 416, 'mixed_precision': False})
    model.load_state_dict(make_state_dict(load_layout(DATA_DIR / 'state_dict_vits.json')))
    with np.load(FS_GOLDEN) as z:
        check_both_distributions(model.eval(), {k: z[k] for k in z.files})


@pytest.mark.skipif(not CFFS_CHECKPOINT.is_file(),
                    reason=f'FFS reference checkpoint not found at {CFFS_CHECKPOINT}')
def test_fast_foundation_stereo_confidence_matches_numpy_on_the_official_distribution():
    model, _ = load_checkpoint(CFFS_CHECKPOINT)
    with np.load(FFS_GOLDEN) as z:
        check_both_distributions(model, {k: z[k] for k in z.files})


class _NoConfidence(DisparityBackend):
    name, device, delta_d, max_disparity = 'plain', torch.device('cpu'), 1.0, None

    def compute(self, left, right):
        return left[0] - right[0]


def test_a_backend_without_confidence_returns_none():
    backend = _NoConfidence()
    left, right = torch.full((2, 3, 4, 5), 3.0), torch.ones(2, 3, 4, 5)
    disp, conf = backend.compute_batch_with_confidence(left, right)
    assert not backend.provides_confidence and conf is None
    assert torch.equal(disp, torch.full((2, 4, 5), 2.0))

"""Why a pair's output is empty: the stage that removed the pixels, and what to check.

The pipeline counts, per pair, the share of pixels each stage removed (:data:`STAGES`, in the
order they run). When almost nothing is left (:data:`EMPTY_SHARE`), :func:`explain` names the
stage that removed the most and the likely cause: a baseline in millimetres puts every depth
beyond ``z_far``; NaN weights or a broken exported model give no valid disparity at all; a
filter set too tight removes everything. Messages name the settings as the node does
(``z_far``); the offline tools turn them into their options with
:func:`foundation_stereo_ros.settings.option_names`. Pure Python.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the pipeline imports this module
    from foundation_stereo_ros.pipeline import PipelineConfig

# Stages in the order they remove pixels; each pixel is counted under the first that drops it.
STAGES = ('invalid', 'z_range', 'left_right', 'confidence', 'edges', 'denoise')
# Below this share of pixels with a valid depth the output counts as empty.
EMPTY_SHARE = 0.01


@dataclass(frozen=True)
class EmptyFacts:
    """What the explanation needs besides the shares (host values, computed only when empty).

    nan_share, nonpositive_share, invisible_share: shares of all pixels whose disparity was NaN,
        zero or negative, or matched outside the right image.
    far_depth: median depth (metres) of the pixels beyond ``z_far`` (NaN when none).
    baseline: the camera's baseline in metres.
    """

    nan_share: float
    nonpositive_share: float
    invisible_share: float
    far_depth: float
    baseline: float


def explain(removed: Mapping[str, float], valid_share: float, facts: EmptyFacts,
            backend: str, config: PipelineConfig) -> tuple[str, str] | None:
    """Say why almost no pixel is valid: (kind, message), or None when enough are.

    ``removed``: share of all pixels each of :data:`STAGES` removed; ``valid_share``: share
    with a valid depth at the end; ``backend``: its registry name; ``config``: the
    :class:`~foundation_stereo_ros.pipeline.PipelineConfig` in force. ``kind`` is the stage,
    so a caller can say each cause once.
    """
    if valid_share >= EMPTY_SHARE:
        return None
    stage = max(STAGES, key=lambda name: removed.get(name, 0.0))
    share = removed.get(stage, 0.0)
    head = (f'only {valid_share:.1%} of the pixels have a valid depth: the {stage} stage '
            f'removed {share:.1%}')
    return stage, f'{head}; {_WHY[stage](facts, backend, config)}'


def _invalid(facts: EmptyFacts, backend: str, config: PipelineConfig) -> str:
    if facts.invisible_share > max(facts.nan_share, facts.nonpositive_share):
        return (f'{facts.invisible_share:.1%} matched outside the right image: check that left '
                'and right are not swapped, or set remove_invisible to false')
    what = (f'the {backend} backend returned NaN for {facts.nan_share:.1%} and zero or '
            f'negative disparities for {facts.nonpositive_share:.1%} of the pixels')
    check = {
        'foundation_stereo': 'check the checkpoint\'s weights (a checkpoint whose weights hold '
                             'NaN or inf gives NaN everywhere: torch.isfinite on every tensor '
                             'of its state dict finds them), and precision (fp16 can overflow)',
        'onnx': 'check the model (an exported network whose output is NaN or negative '
                'everywhere: export it again with python -m '
                'foundation_stereo_ros.model.onnx_export and compare it with the checkpoint)',
        'sgbm': 'check that the pair is rectified (rows aligned), textured, and that '
                'num_disparities covers the largest disparity',
    }.get(backend, 'check the backend')
    return f'{what}: {check}'


def _z_range(facts: EmptyFacts, backend: str, config: PipelineConfig) -> str:
    z_near, z_far = config.z_near, config.z_far
    if facts.far_depth == facts.far_depth:  # not NaN: depths beyond z_far
        return (f'the depths lie beyond z_far={z_far:g} m (median {facts.far_depth:.4g} m): '
                f'check that the baseline ({facts.baseline:g} m now) is in metres, not '
                'millimetres (the last number of K.txt; -P[3] / P[0] of the right '
                'CameraInfo) - 120.0 for a 120 mm baseline gives depths 1000 times too far; '
                'otherwise raise z_far')
    return f'the depths lie nearer than z_near={z_near:g} m: lower z_near'


def _left_right(facts: EmptyFacts, backend: str, config: PipelineConfig) -> str:
    return (f'its two disparities disagree by more than '
            f'left_right_max_diff={config.left_right_max_diff:g} px: raise it, '
            'check that left and right are not swapped, or set left_right_check to false')


def _confidence(facts: EmptyFacts, backend: str, config: PipelineConfig) -> str:
    return (f'confidence_threshold={config.confidence_threshold:g} is above '
            'almost every pixel\'s confidence: lower it (0 turns it off)')


def _edges(facts: EmptyFacts, backend: str, config: PipelineConfig) -> str:
    return (f'edge_rtol={config.edge_rtol:g} is too tight for this depth: raise it '
            '(about 0.04 drops object edges only; 0 turns it off)')


def _denoise(facts: EmptyFacts, backend: str, config: PipelineConfig) -> str:
    return (f'few points have denoise_min_neighbors='
            f'{config.denoise_min_neighbors} neighbours within '
            f'denoise_radius={config.denoise_radius:g} m: lower '
            'denoise_min_neighbors or raise denoise_radius (0 turns it off)')


_WHY = {'invalid': _invalid, 'z_range': _z_range, 'left_right': _left_right,
        'confidence': _confidence, 'edges': _edges, 'denoise': _denoise}

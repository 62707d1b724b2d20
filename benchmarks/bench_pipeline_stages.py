"""Cost of each trust stage as the pipeline runs it: postprocessing time with one stage on.

Usage: python benchmarks/bench_pipeline_stages.py [--sizes 640x480 1280x720] [--repeat 5]
       [--device cpu|cuda]

The backend returns a generated scene's exact disparity (no matching cost), so the figures are
the pipeline's own work after the disparity: resizing, validity, depth, the stage, the
per-stage shares and the host copies. For each size prints the median of ``--repeat`` runs
(after a warm-up) of the whole ``process`` call and of its 'postprocess' stage, with no filter
('none') and with each filter on alone: the confidence threshold (on a backend confidence),
the edge filter (``edge_rtol`` 0.04), the denoising (0.03 m, 30 neighbours), and the
left-right check (whose cost is mostly the second backend pass: here only the batching and the
check). Figures on a shared machine vary with its load; say so when you quote them.
"""
from __future__ import annotations

import argparse
import statistics

import torch
from common import parse_size

from foundation_stereo_ros.backends.base import DisparityBackend
from foundation_stereo_ros.pipeline import PipelineConfig, StereoPipeline
from foundation_stereo_ros.synthetic.scenes import make_scene

STAGES = {
    'none': {},
    'confidence': {'confidence_threshold': 0.5},
    'edges': {'edge_rtol': 0.04},
    'denoise': {'denoise_radius': 0.03, 'denoise_min_neighbors': 30},
    'left_right': {'left_right_check': True},
    'all': {'confidence_threshold': 0.5, 'edge_rtol': 0.04, 'denoise_radius': 0.03,
            'left_right_check': True},
}


class TruthBackend(DisparityBackend):
    """The scene's exact disparity (mirrored for the right view), and a confidence."""

    name = 'truth'
    delta_d = 1.0 / 32.0
    max_disparity = None
    provides_confidence = True

    def __init__(self, scene, device: torch.device) -> None:
        self.device = device
        self.left_view = torch.from_numpy(scene.disparity).to(device)
        # The right view's truth is not rendered: its own mirror is close enough for timing.
        self.mirrored = self.left_view.flip(-1)
        seeded = torch.Generator().manual_seed(0)
        self.confidence = torch.rand(self.left_view.shape, generator=seeded).to(device)

    def compute(self, left, right, **options):
        return self.left_view.clone()

    def compute_batch_with_confidence(self, left, right, **options):
        count = left.shape[0]
        half = count // 2 if count > 1 else count
        views = [self.left_view] * half + [self.mirrored] * (count - half)
        return torch.stack(views), torch.stack([self.confidence] * count)

    def compute_batch(self, left, right, **options):
        return self.compute_batch_with_confidence(left, right)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--sizes', nargs='+', type=parse_size,
                        default=[(640, 480), (1280, 720)])
    parser.add_argument('--repeat', type=int, default=5)
    parser.add_argument('--device', default='cpu')
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f'device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads')
    print(f'{"size":>9} {"stages":>11} {"process_ms":>10} {"postprocess_ms":>14} {"kept":>6}')
    for width, height in args.sizes:
        scene = make_scene(width, height, seed=0)
        backend = TruthBackend(scene, device)
        for name, chosen in STAGES.items():
            pipeline = StereoPipeline(backend, PipelineConfig(remove_invisible=False, **chosen))
            pipeline.process(scene.left, scene.right, scene.camera)  # warm-up
            totals, post = [], []
            for _ in range(args.repeat):
                result = pipeline.process(scene.left, scene.right, scene.camera)
                totals.append(sum(result.timings.values()))
                post.append(result.timings['postprocess'])
            print(f'{width:>4}x{height:<4} {name:>11} {statistics.median(totals) * 1e3:10.1f} '
                  f'{statistics.median(post) * 1e3:14.1f} {result.valid_share:6.3f}')


if __name__ == '__main__':
    main()

"""Checkpoint folders in the official format, built from the seeded weights (never committed)."""
from pathlib import Path

import torch
import yaml
from conftest import DATA_DIR
from seeded_weights import load_layout, make_state_dict

# The released cfg.yaml fields the model reads, with the fp32 setting of the golden files.
SEEDED_CFG = {'vit_size': 'vits', 'max_disp': 416, 'hidden_dims': [128, 128, 128],
              'n_gru_layers': 3, 'n_downsample': 2, 'corr_levels': 2, 'corr_radius': 4,
              'mixed_precision': False, 'low_memory': 0, 'valid_iters': 32}


def write_seeded_checkpoint(folder: Path, vit_size: str = 'vits') -> Path:
    """Write ``model_best_bp2.pth`` ({'model': state_dict}) and ``cfg.yaml`` into folder."""
    folder.mkdir(parents=True, exist_ok=True)
    state_dict = make_state_dict(load_layout(DATA_DIR / f'state_dict_{vit_size}.json'))
    path = folder / 'model_best_bp2.pth'
    torch.save({'model': state_dict, 'epoch': 0, 'global_step': 0}, path)
    (folder / 'cfg.yaml').write_text(yaml.safe_dump({**SEEDED_CFG, 'vit_size': vit_size}))
    return path

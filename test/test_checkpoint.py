"""load_checkpoint / build_model on small checkpoints built here from seeded weights.

No .pth file is committed: each test writes its checkpoint folder (weights + cfg.yaml) into
tmp_path. Error tests use tiny stand-in state dicts (a few tensors, or stride-0 expanded
tensors that serialise to a few bytes each) so they stay fast.
"""
import zipfile

import numpy as np
import pytest
import torch
import yaml
from conftest import DATA_DIR
from seeded_weights import load_layout, make_state_dict

from foundation_stereo_ros.model import (
    CheckpointError,
    FoundationStereo,
    build_model,
    load_checkpoint,
)
from foundation_stereo_ros.model.checkpoint import (
    checkpoint_filter_fn,
    read_config,
    vit_size_of_state_dict,
)

CLS_KEY = 'feature.dino.depth_anything.pretrained.cls_token'
CFG = {'vit_size': 'vits', 'max_disp': 416, 'hidden_dims': [128, 128, 128], 'n_gru_layers': 3,
       'n_downsample': 2, 'corr_levels': 2, 'corr_radius': 4, 'mixed_precision': True,
       'low_memory': 0, 'valid_iters': 32, 'notes': '', 'tags_more': []}


@pytest.fixture(scope='module')
def layout():
    return load_layout(DATA_DIR / 'state_dict_vits.json')


@pytest.fixture(scope='module')
def seeded(layout):
    return make_state_dict(layout)


def _tiny_state_dict(layout, drop=(), extra=None):
    """Every key of the layout as a stride-0 tensor (a few bytes on disk)."""
    sd = {k: torch.zeros((), dtype=getattr(torch, dt)).expand(shape)
          for k, shape, dt in layout if k not in drop}
    sd.update(extra or {})
    return sd


def _write(folder, payload, cfg=CFG, name='model_best_bp2.pth'):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    torch.save(payload, path)
    if cfg is not None:
        (folder / 'cfg.yaml').write_text(yaml.safe_dump(cfg))
    return path


def test_loads_official_layout(tmp_path, seeded):
    path = _write(tmp_path / 'run', {'model': seeded, 'epoch': 3, 'global_step': 1000})
    model, cfg = load_checkpoint(path, device='cpu')
    assert isinstance(model, FoundationStereo) and not model.training
    assert cfg['vit_size'] == 'vits' and cfg['valid_iters'] == 32 and cfg['notes'] == ''
    reference = FoundationStereo(CFG)
    reference.load_state_dict(seeded, strict=True)   # shared norm3/downsample.1 resolved alike
    expected = reference.state_dict()
    loaded = model.state_dict()
    assert list(loaded) == list(expected)
    assert all(torch.equal(loaded[k], expected[k]) for k in expected)
    assert next(model.parameters()).device.type == 'cpu'
    # The folder itself is accepted too.
    model2, _ = load_checkpoint(tmp_path / 'run')
    assert torch.equal(model2.update_block.encoder.conv.weight,
                       expected['update_block.encoder.conv.weight'])


def test_accepts_bare_and_ddp_state_dicts(tmp_path, layout):
    sd = _tiny_state_dict(layout)
    sd[CLS_KEY] = torch.full((1, 1, 384), 0.25)
    path = _write(tmp_path / 'bare', {f'module.{k}': v for k, v in sd.items()})
    model, _ = load_checkpoint(path)
    assert torch.all(model.feature.dino.depth_anything.pretrained.cls_token == 0.25)
    assert float(model.cnet.conv1.weight.detach().abs().sum()) == 0.0
    assert checkpoint_filter_fn({'a.b': 1}) == {'a.b': 1}


def test_missing_cfg_says_copy_the_folder(tmp_path, layout):
    path = _write(tmp_path / 'run', {'model': {CLS_KEY: torch.zeros(1, 1, 384)}}, cfg=None)
    with pytest.raises(CheckpointError, match='copy the whole folder'):
        load_checkpoint(path)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match='not found'):
        load_checkpoint(tmp_path / 'nothing.pth')


@pytest.mark.parametrize('cfg_vit,weights_dim,expected', [
    (None, 384, 'ViT-S weights .* no vit_size .*vit_size: vits'),
    ('vitb', 1024, 'ViT-L weights .* vit_size: vitb.*vit_size: vitl'),
    ('vits', 768, 'ViT-B weights .*vit_size: vitb'),
])
def test_vit_size_mismatch_names_the_right_size(tmp_path, cfg_vit, weights_dim, expected):
    cfg = {k: v for k, v in CFG.items() if k != 'vit_size'}
    if cfg_vit:
        cfg['vit_size'] = cfg_vit
    path = _write(tmp_path, {'model': {CLS_KEY: torch.zeros(1, 1, weights_dim)}}, cfg=cfg)
    with pytest.raises(CheckpointError, match=expected):
        load_checkpoint(path)


def test_missing_and_unexpected_keys_are_named(tmp_path, layout):
    sd = _tiny_state_dict(layout, drop={'stem_2.1.weight', 'cnet.conv1.bias'},
                          extra={'head.extra.weight': torch.zeros(2)})
    path = _write(tmp_path, {'model': sd})
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    text = str(info.value)
    assert 'missing keys: cnet.conv1.bias, stem_2.1.weight' in text
    assert 'unexpected keys: head.extra.weight' in text


def test_shape_mismatch(tmp_path, layout):
    sd = _tiny_state_dict(layout)
    sd['proj_cmb.weight'] = torch.zeros(12, 64, 1, 1)
    with pytest.raises(CheckpointError, match='does not fit .*proj_cmb.weight'):
        load_checkpoint(_write(tmp_path, {'model': sd}))


@pytest.mark.parametrize('kind', ['random', 'zip', 'empty', 'text_pickle', 'no_model'])
def test_not_a_checkpoint(tmp_path, kind):
    path = tmp_path / 'model_best_bp2.pth'
    (tmp_path / 'cfg.yaml').write_text(yaml.safe_dump(CFG))
    if kind == 'random':
        path.write_bytes(np.random.default_rng(0).bytes(4096))
        match = 'not a PyTorch checkpoint'
    elif kind == 'zip':
        with zipfile.ZipFile(path, 'w') as archive:
            archive.writestr('readme.txt', 'weights are elsewhere')
        match = 'zip archive but not a PyTorch checkpoint'
    elif kind == 'empty':
        path.write_bytes(b'')
        match = 'empty'
    elif kind == 'text_pickle':
        torch.save({'model': {'a': torch.zeros(1)}, 'args': zipfile.ZipInfo('x')}, path)
        match = 'weights_only=True'
    else:
        torch.save({'epoch': 3, 'optimizer': {}}, path)
        match = "under 'model'"
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(path)


def test_bad_cfg_yaml(tmp_path):
    path = _write(tmp_path, {'model': {CLS_KEY: torch.zeros(1, 1, 384)}},
                  cfg=dict(CFG, max_disp=100))
    with pytest.raises(CheckpointError, match='cfg.yaml.*max_disp'):
        load_checkpoint(path)
    (tmp_path / 'cfg.yaml').write_text('vit_size: [vits\n')
    with pytest.raises(CheckpointError, match='not valid YAML'):
        load_checkpoint(path)
    (tmp_path / 'cfg.yaml').write_text('- just\n- a list\n')
    with pytest.raises(CheckpointError, match='mapping'):
        read_config(tmp_path / 'cfg.yaml')


def test_build_model_and_vit_detection():
    model = build_model({'vit_size': 'vits', 'max_disp': 192})
    assert not model.training and model.max_disp == 192
    sd = {CLS_KEY: torch.zeros(1, 1, 768)}
    assert vit_size_of_state_dict(sd) == 'vitb' and vit_size_of_state_dict({}) is None

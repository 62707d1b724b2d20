"""Fast-FoundationStereo loading: restricted unpickling, generality of the rebuild, conversion.

Serialized checkpoints are written here with stand-in official classes (``ffs_fakes``); the
shared ``cffs_like`` checkpoint is re-serialized with edits where a golden is the oracle.
"""
import os
import pickle
import zipfile

import numpy as np
import pytest
import torch
import yaml
from conftest import DATA_DIR, SHARED_REFERENCE
from ffs_fakes import TinyFFS, official_classes, record_to_modules
from ffs_fakes import write_tiny_serialized as write_tiny
from torch import nn

from foundation_stereo_ros.backends import make_backend
from foundation_stereo_ros.model import CheckpointError, FastFoundationStereo, load_checkpoint
from foundation_stereo_ros.model.checkpoint import check_checkpoint
from foundation_stereo_ros.model.convert import main as convert_main
from foundation_stereo_ros.model.ffs import safe_pickle
from foundation_stereo_ros.model.ffs.builder import BUILDERS
from foundation_stereo_ros.model.ffs.safe_pickle import (
    MODULE_CLASSES,
    UnsafeCheckpointError,
    is_serialized_module,
    read_module_records,
)

CFFS = SHARED_REFERENCE / 'ffs' / 'cffs_like' / 'model_best_bp2_serialize.pth'
needs_cffs = pytest.mark.skipif(not CFFS.is_file(),
                                reason=f'FFS reference checkpoint not found at {CFFS}')
FULL_RES_DISP = {'atol': 2e-3, 'rtol': 1e-5}


def pair(height=64, width=96, seed=0):
    gen = torch.Generator().manual_seed(seed)
    left = torch.rand(1, 3, height, width, generator=gen) * 255
    return left, torch.roll(left, -3, dims=-1)


# ----------------------------------------------------------------------------- safety
class RunsCommand:
    """Unpickling this calls os.system (what a malicious checkpoint would do)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'touch {self.marker}',)


def test_crafted_checkpoint_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / 'pwned'
    path = tmp_path / 'model_best_bp2_serialize.pth'
    with official_classes() as fakes:
        model = TinyFFS(fakes).network()
        # Hidden in a plain attribute of a plausible FastFoundationStereo.
        model.cost_agg.post8_to_4.extra = {'note': RunsCommand(marker)}
        torch.save(model, path)
        # Control: the unrestricted loader really runs the command.
        torch.load(path, weights_only=False)
        assert marker.exists()
    marker.unlink()
    with pytest.raises(CheckpointError, match=r"refusing global 'posix\.system'"):
        load_checkpoint(path)
    with pytest.raises(UnsafeCheckpointError, match='posix.system'):
        read_module_records(path)
    assert not marker.exists()


class CallsGlobal:
    def __init__(self, fn, args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


@pytest.mark.parametrize('fn, args, name', [
    (eval, ('1',), '__builtin__.eval'),   # protocol 2 spells builtins so
    (getattr, (0, 'real'), '__builtin__.getattr'),
    (zipfile.ZipFile, ('/nonexistent',), 'zipfile.ZipFile'),
    (torch.load, ('/nonexistent',), 'torch.serialization.load'),
])
def test_other_globals_are_refused_by_name(tmp_path, fn, args, name):
    path = tmp_path / 'm.pth'
    with official_classes() as fakes:
        model = TinyFFS(fakes).network()
        model.cv_group = CallsGlobal(fn, args)
        torch.save(model, path)
    with pytest.raises(UnsafeCheckpointError, match=name.replace('.', r'\.')):
        read_module_records(path)


def test_allowlisted_class_called_with_arguments_is_refused(tmp_path):
    path = tmp_path / 'm.pth'
    with official_classes() as fakes:
        model = TinyFFS(fakes).network()
        model.volume_dim = CallsGlobal(fakes.cls('core.update.DispHead'), ('x',))
        torch.save(model, path)
    with pytest.raises(UnsafeCheckpointError, match='called with arguments'):
        read_module_records(path)


def test_unknown_block_type_is_named(tmp_path):
    path = tmp_path / 'm.pth'
    with official_classes() as fakes:
        model = TinyFFS(fakes).network()
        model.cost_agg.post16_to_8.out[1] = fakes.make('core.submodule.FancyBlock3D',
                                                       conv=nn.Conv3d(16, 16, 1))
        torch.save(model, path)
    with pytest.raises(CheckpointError, match=r"core\.submodule\.FancyBlock3D"):
        load_checkpoint(path)


@pytest.mark.parametrize('edit, message', [
    (lambda m: setattr(m.cost_agg.post32_to_16, 'op', 'mul'), r"cost_agg\.post32_to_16.*'mul'"),
    (lambda m: setattr(m.corr_feature_att, 'gate_mode', 'hard'),
     r"corr_feature_att \(FeatureAtt\): unknown attributes \['gate_mode'\]"),
    (lambda m: setattr(m.feature.stages[0].blocks[0], 'shortcut_after_dw', True),
     'shortcut_after_dw=True'),
    (lambda m: setattr(m.update_block.disp_head.conv[2].act, 'approximate', 'tanh'),
     "approximate='tanh'"),
    (lambda m: m.proj_cmb.__dict__.update(weight_standardization=True),
     r"proj_cmb \(Conv2d\): unknown attribute 'weight_standardization'"),
])
def test_unsupported_attribute_layouts_are_named(tmp_path, edit, message):
    path = tmp_path / 'm.pth'
    with official_classes() as fakes:
        model = TinyFFS(fakes).network()
        edit(model)
        torch.save(model, path)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


def test_every_allowlisted_class_has_a_builder():
    assert MODULE_CLASSES <= set(BUILDERS)


def test_state_dict_checkpoints_are_not_taken_for_serialized_modules(tmp_path):
    path = tmp_path / 'model_best_bp2.pth'
    torch.save({'model': {'w': torch.zeros(2)}}, path)
    assert not is_serialized_module(path)
    assert is_serialized_module(write_tiny(tmp_path / 'ffs.pth'))
    text = tmp_path / 'notes.pth'
    text.write_text('hello')
    assert not is_serialized_module(text)


def test_pickle_protocol_4_files_load_too(tmp_path):
    path = tmp_path / 'p4.pth'
    with official_classes() as fakes:
        torch.save(TinyFFS(fakes).network(), path, pickle_protocol=4)
    assert is_serialized_module(path)
    model, _ = load_checkpoint(path)
    assert isinstance(model, FastFoundationStereo)


# ----------------------------------------------------------------------------- generality
@pytest.mark.parametrize('searched', ['sum', 'concat', None])
def test_other_widths_and_searched_blocks_load_strictly_and_run(tmp_path, searched):
    path = write_tiny(tmp_path / 'model_best_bp2_serialize.pth', searched=searched)
    model, cfg = load_checkpoint(path)
    assert isinstance(model, FastFoundationStereo)
    assert (model.family, model.default_iters, cfg['valid_iters']) == (
        'fast_foundation_stereo', 8, 8)
    summary = model.architecture_summary()
    assert 'features [40, 48, 64, 40]' in summary and 'GRU hidden 20' in summary
    op = searched or 'default'
    assert f'32_to_16:{op} 16_to_8:{op} 8_to_4:{op}' in summary
    # Every tensor of the file is in the model, unchanged.
    record = read_module_records(path)
    state = model.state_dict()
    assert set(state) == set(record.state_dict())
    assert all(torch.equal(state[k], v) for k, v in record.state_dict().items())
    left, right = pair()
    with torch.inference_mode():
        init_disp, preds = model(left, right, iters=2)
        disp = model(left, right, iters=2, test_mode=True)
    assert init_disp.shape == (1, 1, 16, 24) and len(preds) == 2
    assert torch.equal(disp, preds[-1]) and torch.isfinite(disp).all()


def test_concat_step_concatenates_upsampled_then_skip(tmp_path):
    model, _ = load_checkpoint(write_tiny(tmp_path / 'm.pth', searched='concat'))
    post = model.cost_agg.post16_to_8
    skip, coarse = torch.randn(1, 16, 8, 8, 12), torch.randn(1, 32, 4, 4, 6)
    with torch.inference_mode():
        got = post(skip, coarse)
        x = torch.cat((post.upsample(coarse), skip), dim=1)
        for layer in post.out:
            x = layer(x)
    assert torch.equal(got, x)


def test_missing_weight_is_named(tmp_path):
    path = tmp_path / 'm.pth'
    with official_classes() as fakes:
        model = TinyFFS(fakes).network()
        del model.proj_cmb._parameters['bias']
        torch.save(model, path)
    # A conv without bias parameter entry at all is a layout the builder names.
    with pytest.raises(CheckpointError, match=r"proj_cmb \(Conv2d\): parameter 'bias'"):
        load_checkpoint(path)


def test_cfg_yaml_overrides_max_disp(tmp_path):
    path = write_tiny(tmp_path / 'model_best_bp2_serialize.pth')
    (tmp_path / 'cfg.yaml').write_text(yaml.safe_dump({'max_disp': 32, 'valid_iters': 4}))
    model, cfg = load_checkpoint(tmp_path)          # the folder works too
    assert model.max_disp == 32 and cfg['valid_iters'] == 4
    with torch.inference_mode():
        assert model(*pair(), iters=1, test_mode=True).shape == (1, 1, 64, 96)
    (tmp_path / 'cfg.yaml').write_text(yaml.safe_dump({'max_disp': 128}))
    with pytest.raises(CheckpointError, match='max_disp 128 is too large.*at most 64'):
        load_checkpoint(path)


@needs_cffs
def test_foundation_stereo_ori_class_paths_match_the_goldens(tmp_path):
    record = read_module_records(CFFS)
    path = tmp_path / 'model_best_bp2_serialize.pth'
    with official_classes() as fakes:
        torch.save(record_to_modules(record, fakes, {'core.': 'foundation_stereo_ori.'}), path)
    names = {n for n in zipfile.ZipFile(path).read(
        'model_best_bp2_serialize/data.pkl').split(b'\n') if b'foundation_stereo_ori' in n}
    assert names, 'the re-serialized file should name foundation_stereo_ori classes'
    golden = np.load(DATA_DIR / 'golden_ffs_synth.npz')
    model, _ = load_checkpoint(path)
    with torch.inference_mode():
        disp = model(torch.from_numpy(golden['left']), torch.from_numpy(golden['right']),
                     iters=2, test_mode=True)
    np.testing.assert_allclose(disp.numpy(), golden['disp_test_iters2'], **FULL_RES_DISP)


@needs_cffs
def test_normalize_false_gives_plain_group_correlation(tmp_path):
    record = read_module_records(CFFS)
    record.attrs['args']['normalize'] = False
    path = tmp_path / 'model_best_bp2_serialize.pth'
    with official_classes() as fakes:
        torch.save(record_to_modules(record, fakes), path)
    model, cfg = load_checkpoint(path)
    assert cfg['normalize'] is False
    seen = {}

    def keep(name, value):
        seen.setdefault(name, value)        # returns None: hooks must not replace values
    model.feature.register_forward_hook(lambda _m, _i, out: keep('feat', out[0]))
    model.corr_stem.register_forward_pre_hook(lambda _m, args: keep('vol', args[0]))
    golden = np.load(DATA_DIR / 'golden_ffs_synth.npz')
    with torch.inference_mode():
        model(torch.from_numpy(golden['left']), torch.from_numpy(golden['right']), iters=1,
              test_mode=True)
    feat = seen['feat'].numpy().astype(np.float64)
    left, right = feat[0].reshape(8, 28, 16, 24), feat[1].reshape(8, 28, 16, 24)
    expected = np.zeros((8, 48, 16, 24))
    for d in range(24):
        expected[:, d, :, d:] = (left[..., d:] * right[..., :24 - d]).sum(1)
    np.testing.assert_allclose(seen['vol'][0, :8].numpy(), expected, atol=1e-3, rtol=1e-4)
    assert np.abs(expected).max() > 2, 'unnormalised products should exceed cosine range'


# ----------------------------------------------------------------------------- converted format
def test_converted_tiny_checkpoint_round_trips_without_unpickling(
        tmp_path, monkeypatch, capsys):
    src = write_tiny(tmp_path / 'model_best_bp2_serialize.pth', searched='concat')
    out = tmp_path / 'tiny.safetensors'
    assert convert_main([str(src), str(out)]) == 0
    assert 'Fast-FoundationStereo' in capsys.readouterr().out
    original, _ = load_checkpoint(src)

    def no_unpickling(*_args, **_kwargs):
        raise AssertionError('the converted format must not be unpickled')
    monkeypatch.setattr(safe_pickle, '_RestrictedUnpickler', no_unpickling)
    monkeypatch.setattr(pickle, 'Unpickler', no_unpickling)
    monkeypatch.setattr(pickle, 'loads', no_unpickling)
    converted, cfg = load_checkpoint(out)
    assert cfg['max_disp'] == 64
    assert converted.architecture_summary() == original.architecture_summary()
    left, right = pair(seed=3)
    with torch.inference_mode():
        assert torch.equal(converted(left, right, iters=3, test_mode=True),
                           original(left, right, iters=3, test_mode=True))


def test_convert_cli_rejects_what_it_cannot_convert(tmp_path, capsys):
    state_dict_ckpt = tmp_path / 'model_best_bp2.pth'
    torch.save({'model': {'w': torch.zeros(2)}}, state_dict_ckpt)
    assert convert_main([str(state_dict_ckpt), str(tmp_path / 'o.safetensors')]) == 1
    assert 'not a serialized Fast-FoundationStereo checkpoint' in capsys.readouterr().err
    assert convert_main([str(tmp_path / 'missing.pth'), str(tmp_path / 'o.safetensors')]) == 1
    assert 'not found' in capsys.readouterr().err
    src = write_tiny(tmp_path / 'ffs.pth')
    assert convert_main([str(src), str(tmp_path / 'o.bin')]) == 1
    assert 'must end in .safetensors' in capsys.readouterr().err


@needs_cffs
def test_converted_cffs_like_matches_the_goldens(tmp_path):
    out = tmp_path / 'cffs.safetensors'
    assert convert_main([str(CFFS), str(out)]) == 0
    model, cfg = load_checkpoint(out)
    assert cfg['max_disp'] == 192
    golden = np.load(DATA_DIR / 'golden_ffs_synth.npz')
    with torch.inference_mode():
        init_disp, preds = model(torch.from_numpy(golden['left']),
                                 torch.from_numpy(golden['right']), iters=2)
    np.testing.assert_allclose(init_disp.numpy(), golden['init_disp'], atol=1e-3, rtol=1e-5)
    np.testing.assert_allclose(torch.stack(preds).numpy(), golden['disp_preds'],
                               **FULL_RES_DISP)


# ----------------------------------------------------------------------------- what a file is
FFS_CFG = {'max_disp': 64, 'valid_iters': 8, 'hidden_dims': [20], 'n_gru_layers': 1,
           'corr_levels': 2, 'corr_radius': 4, 'normalize': True}


def with_ffs_cfg(folder):
    """Put an FFS cfg.yaml (not a FoundationStereo one) beside the file under test."""
    (folder / 'cfg.yaml').write_text(yaml.safe_dump(FFS_CFG))


def zip_without_data_pkl(path):
    with zipfile.ZipFile(path, 'w') as archive:
        archive.writestr('archive/version', '3\n')
        archive.writestr('archive/data/0', b'\0' * 64)
    return path


def unknown_root_class(path):
    with official_classes() as fakes:
        model = TinyFFS(fakes).network()
        torch.save(fakes.retype(model, 'core.foundation_stereo.FasterFoundationStereo'), path)
    return path


def truncated(path):
    whole = write_tiny(path).read_bytes()
    path.write_bytes(whole[:len(whole) * 6 // 10])
    return path


@pytest.mark.parametrize('make, fault', [
    (unknown_root_class, r'class core\.foundation_stereo\.FasterFoundationStereo'),
    (truncated, 'is a truncated zip archive'),
    (zip_without_data_pkl, r'zip archive but not a PyTorch checkpoint \(no data\.pkl'),
])
def test_the_loader_names_what_a_file_is_before_any_cfg_check(tmp_path, make, fault):
    path = make(tmp_path / 'model_best_bp2_serialize.pth')
    with_ffs_cfg(tmp_path)
    for check in (load_checkpoint, check_checkpoint):
        with pytest.raises(CheckpointError, match=fault) as info:
            check(path)
        assert 'hidden_dims' not in str(info.value)


def test_cfg_yaml_valid_iters_is_the_checkpoint_default_also_after_conversion(tmp_path):
    src = write_tiny(tmp_path / 'src' / 'model_best_bp2_serialize.pth')
    (src.parent / 'cfg.yaml').write_text(yaml.safe_dump({'valid_iters': 3}))
    model, cfg = load_checkpoint(src)
    assert model.default_iters == cfg['valid_iters'] == 3
    assert FastFoundationStereo.default_iters == 8, 'the family default stays'
    out = tmp_path / 'deploy' / 'c.safetensors'
    assert convert_main([str(src), str(out)]) == 0
    converted, _ = load_checkpoint(out.parent)          # alone in its folder: baked in
    assert converted.default_iters == 3
    left, right = pair(seed=5)
    backend = make_backend('foundation_stereo', checkpoint=str(out), device='cpu')
    assert backend.valid_iters == 3
    with torch.inference_mode():
        three = model(left, right, iters=3, test_mode=True)[0, 0]
        eight = model(left, right, iters=8, test_mode=True)[0, 0]
    got = backend.compute(left[0], right[0])      # no count asked for: the checkpoint's 3
    torch.testing.assert_close(got, three, atol=1e-4, rtol=1e-5)
    assert not torch.allclose(got, eight, atol=1e-3)
    (src.parent / 'cfg.yaml').write_text(yaml.safe_dump({'valid_iters': 'many'}))
    with pytest.raises(CheckpointError, match="'valid_iters' must be a positive integer"):
        load_checkpoint(src)

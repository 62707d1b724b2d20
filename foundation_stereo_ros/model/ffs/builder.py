"""Build the package's own modules from a :class:`.records.ModuleRecord` tree.

Every class path a checkpoint may name (:data:`.safe_pickle.MODULE_CLASSES`) has one builder
here. ``torch.nn`` layers are rebuilt through their constructors from the recorded
hyper-parameters; official FFS / timm blocks become the package's implementations with their
children built recursively. Where FoundationStereo's class computes exactly what the official
one does, it is reused: the layers read from the file are installed in its slots (its own
constructor would fix the unpruned widths). Unknown classes, attributes or layouts raise
:class:`ArchitectureError` naming the module path and what was unexpected.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from .. import context, cost_aggregation, edgenext, layers, update
from ..cost_attention import ATTEND_HEADS, CostVolumeDisparityAttention, sinusoidal_embedding
from . import blocks, network
from .records import ClassRef, ModuleRecord, TensorSpec
from .safe_pickle import MODULE_CLASSES, canonical_class_path

__all__ = ['BUILDERS', 'ArchitectureError', 'build_network', 'load_weights']


class ArchitectureError(ValueError):
    """The module tree names a block or an attribute layout this package cannot build."""


Builder = Callable[[ModuleRecord, str], nn.Module]
BUILDERS: dict[str, Builder] = {}

# Plain attributes that never change the computation of a torch.nn layer.
_IGNORED_LEAF_ATTRS = {'inplace', 'name'}


def _register(*paths: str) -> Callable[[Builder], Builder]:
    def decorate(fn: Builder) -> Builder:
        for path in paths:
            BUILDERS[path] = fn
        return fn
    return decorate


def _where(path: str) -> str:
    return path or '<root>'


def build(record: ModuleRecord, path: str = '') -> nn.Module:
    """Build the module for ``record`` (found at dotted ``path`` in the tree)."""
    canonical = canonical_class_path(record.class_path)
    builder = BUILDERS.get(canonical)
    if builder is None:
        raise ArchitectureError(f'{_where(path)}: unknown block type {record.class_path!r}; '
                                f'this package cannot build it')
    return builder(record, path)


def _child(record: ModuleRecord, name: str, path: str) -> nn.Module:
    child = record.children.get(name)
    if child is None:
        raise ArchitectureError(f'{_where(path)} ({record.class_name}): missing sub-module '
                                f'{name!r}')
    return build(child, f'{path}.{name}' if path else name)


def _children(record: ModuleRecord, path: str, required: Iterable[str],
              optional: Iterable[str] = ()) -> dict[str, nn.Module | None]:
    required, optional = list(required), list(optional)
    unknown = [n for n in record.children if n not in required and n not in optional]
    if unknown:
        raise ArchitectureError(f'{_where(path)} ({record.class_name}): unexpected sub-modules '
                                f'{unknown}; this layout is not supported')
    out: dict[str, nn.Module | None] = {name: _child(record, name, path) for name in required}
    for name in optional:
        if record.children.get(name) is not None:
            out[name] = _child(record, name, path)
    return out


def _check_attrs(record: ModuleRecord, path: str, known: Iterable[str]) -> None:
    unknown = sorted(set(record.attrs) - set(known))
    if unknown:
        raise ArchitectureError(f'{_where(path)} ({record.class_name}): unknown attributes '
                                f'{unknown}; this layout is not supported')


def _attr(record: ModuleRecord, name: str, path: str, kinds: type | tuple[type, ...]) -> Any:
    if name not in record.attrs:
        raise ArchitectureError(f'{_where(path)} ({record.class_name}): attribute {name!r} '
                                f'is missing')
    value = record.attrs[name]
    if not isinstance(value, kinds) or isinstance(value, bool) and bool not in (
            kinds if isinstance(kinds, tuple) else (kinds,)):
        raise ArchitectureError(f'{_where(path)} ({record.class_name}): attribute {name!r} '
                                f'has unexpected value {value!r:.60}')
    return value


def _shape(value: torch.Tensor | TensorSpec) -> tuple[int, ...]:
    return tuple(value.shape)


def _param(record: ModuleRecord, name: str, path: str) -> tuple[int, ...] | None:
    if name not in record.params:
        raise ArchitectureError(f'{_where(path)} ({record.class_name}): parameter {name!r} '
                                f'is missing')
    value = record.params[name]
    return None if value is None else _shape(value)


def _check_tensors(record: ModuleRecord, path: str, params: Iterable[str] = (),
                   buffers: Iterable[str] = ()) -> None:
    extra = sorted((set(record.params) - set(params)) | (set(record.buffers) - set(buffers)))
    if extra:
        raise ArchitectureError(f'{_where(path)} ({record.class_name}): unexpected tensors '
                                f'{extra}')


def _kind(module_record: ModuleRecord | None) -> str:
    return '' if module_record is None else canonical_class_path(module_record.class_path)


def adopt(cls: type[nn.Module], record: ModuleRecord, path: str,
          children: dict[str, nn.Module | None], params: Iterable[str] = ()) -> nn.Module:
    """Make an instance of FoundationStereo's ``cls`` whose layers are the ones from the file.

    ``cls.forward`` must read only these children and parameters (all state-dict names).
    """
    module = cls.__new__(cls)
    nn.Module.__init__(module)
    for name, child in children.items():
        module.add_module(name, child)
    for name in params:
        shape = _param(record, name, path)
        module.register_parameter(name, None if shape is None else
                                  nn.Parameter(torch.zeros(shape)))
    return module


# ----------------------------------------------------------------------------- torch.nn
def _same_attrs(module: nn.Module, record: ModuleRecord, path: str) -> nn.Module:
    """Every recorded hyper-parameter must be what the rebuilt layer has."""
    for key, value in record.attrs.items():
        if key in _IGNORED_LEAF_ATTRS:
            continue
        if not hasattr(module, key):
            raise ArchitectureError(f'{_where(path)} ({record.class_name}): unknown attribute '
                                    f'{key!r}')
        mine = getattr(module, key)
        if mine != value and not (isinstance(mine, tuple) and list(mine) == value):
            raise ArchitectureError(f'{_where(path)} ({record.class_name}): attribute {key!r} '
                                    f'is {value!r}, rebuilt layer has {mine!r}')
    return module


_CONVS = {'Conv2d': nn.Conv2d, 'Conv3d': nn.Conv3d, 'ConvTranspose2d': nn.ConvTranspose2d,
          'ConvTranspose3d': nn.ConvTranspose3d}


@_register(*(f'torch.nn.modules.conv.{n}' for n in _CONVS))
def _build_conv(record: ModuleRecord, path: str) -> nn.Module:
    _check_tensors(record, path, params=('weight', 'bias'))
    a = record.attrs
    kwargs: dict[str, Any] = {k: a[k] for k in ('in_channels', 'out_channels', 'kernel_size',
                                                'stride', 'padding', 'dilation', 'groups',
                                                'padding_mode') if k in a}
    if record.class_name.startswith('ConvTranspose'):
        kwargs['output_padding'] = a.get('output_padding', 0)
    try:
        conv = _CONVS[record.class_name](**kwargs, bias=_param(record, 'bias', path) is not None)
    except (TypeError, ValueError) as err:
        raise ArchitectureError(f'{_where(path)} ({record.class_name}): {err}') from err
    return _same_attrs(conv, record, path)


def _leaf(factory: Callable[..., nn.Module], keys: Iterable[str], params: Iterable[str] = (),
          buffers: Iterable[str] = (), bias_flag: bool = False) -> Builder:
    """Builder of a torch.nn layer from the recorded constructor arguments ``keys``.

    ``bias_flag``: the constructor takes ``bias=`` (Linear, LayerNorm): whether the file has a
    bias parameter.
    """
    keys, params, buffers = tuple(keys), tuple(params), tuple(buffers)

    def build_leaf(record: ModuleRecord, path: str) -> nn.Module:
        _check_tensors(record, path, params, buffers)
        kwargs = {k: record.attrs[k] for k in keys if k in record.attrs}
        if bias_flag:
            kwargs['bias'] = record.params.get('bias') is not None
        try:
            module = factory(**kwargs)
        except (TypeError, ValueError) as err:
            raise ArchitectureError(f'{_where(path)} ({record.class_name}): {err}') from err
        return _same_attrs(module, record, path)
    return build_leaf


_NORM_KEYS = ('num_features', 'eps', 'momentum', 'affine', 'track_running_stats')
_NORM_BUFFERS = ('running_mean', 'running_var', 'num_batches_tracked')
_NN = 'torch.nn.modules.'
BUILDERS.update({
    _NN + 'linear.Linear': _leaf(nn.Linear, ('in_features', 'out_features'), ('weight', 'bias'),
                                 bias_flag=True),
    _NN + 'linear.Identity': _leaf(nn.Identity, ()),
    _NN + 'batchnorm.BatchNorm2d': _leaf(nn.BatchNorm2d, _NORM_KEYS, ('weight', 'bias'),
                                         _NORM_BUFFERS),
    _NN + 'batchnorm.BatchNorm3d': _leaf(nn.BatchNorm3d, _NORM_KEYS, ('weight', 'bias'),
                                         _NORM_BUFFERS),
    _NN + 'instancenorm.InstanceNorm2d': _leaf(nn.InstanceNorm2d, _NORM_KEYS, ('weight', 'bias'),
                                               _NORM_BUFFERS),
    _NN + 'instancenorm.InstanceNorm3d': _leaf(nn.InstanceNorm3d, _NORM_KEYS, ('weight', 'bias'),
                                               _NORM_BUFFERS),
    _NN + 'normalization.LayerNorm': _leaf(nn.LayerNorm, ('normalized_shape', 'eps',
                                                          'elementwise_affine'),
                                           ('weight', 'bias'), bias_flag=True),
    _NN + 'activation.GELU': _leaf(nn.GELU, ('approximate',)),
    _NN + 'activation.LeakyReLU': _leaf(nn.LeakyReLU, ('negative_slope',)),
    _NN + 'activation.ReLU': _leaf(nn.ReLU, ()),
    _NN + 'activation.Sigmoid': _leaf(nn.Sigmoid, ()),
    _NN + 'activation.Tanh': _leaf(nn.Tanh, ()),
    _NN + 'dropout.Dropout': _leaf(nn.Dropout, ('p',)),
    _NN + 'pooling.AdaptiveAvgPool2d': _leaf(nn.AdaptiveAvgPool2d, ('output_size',)),
    _NN + 'pooling.AdaptiveMaxPool2d': _leaf(nn.AdaptiveMaxPool2d, ('output_size',
                                                                    'return_indices')),
    _NN + 'upsampling.Upsample': _leaf(nn.Upsample, ('size', 'scale_factor', 'mode',
                                                     'align_corners', 'recompute_scale_factor')),
})


def _container_children(record: ModuleRecord, path: str) -> OrderedDict[str, nn.Module]:
    _check_attrs(record, path, ())
    _check_tensors(record, path)
    none = [n for n, c in record.children.items() if c is None]
    if none:
        raise ArchitectureError(f'{_where(path)} ({record.class_name}): empty slots {none}')
    return OrderedDict((n, _child(record, n, path)) for n in record.children)


@_register(_NN + 'container.Sequential')
def _build_sequential(record: ModuleRecord, path: str) -> nn.Module:
    return nn.Sequential(_container_children(record, path))


@_register(_NN + 'container.ModuleList')
def _build_module_list(record: ModuleRecord, path: str) -> nn.Module:
    children = _container_children(record, path)
    if list(children) != [str(i) for i in range(len(children))]:
        raise ArchitectureError(f'{_where(path)} (ModuleList): keys {list(children)} are not '
                                f'0..n-1')
    return nn.ModuleList(children.values())


@_register(_NN + 'container.ModuleDict')
def _build_module_dict(record: ModuleRecord, path: str) -> nn.Module:
    return nn.ModuleDict(_container_children(record, path))


# ----------------------------------------------------------------------------- timm EdgeNeXt
def _require_kind(record: ModuleRecord, name: str, path: str, kinds: Iterable[str]) -> None:
    kinds = tuple(kinds)
    kind = _kind(record.children.get(name))
    if not any(kind.endswith(k) for k in kinds):
        raise ArchitectureError(f'{_where(path)} ({record.class_name}): {name!r} is '
                                f'{kind or None}, expected one of {list(kinds)}')


def _require_gelu(record: ModuleRecord, name: str, path: str) -> None:
    _require_kind(record, name, path, ('GELU',))
    approx = record.children[name].attrs.get('approximate', 'none')
    if approx != 'none':
        raise ArchitectureError(f"{_where(path)}.{name}: GELU approximate={approx!r}; only "
                                f"'none' is supported")


@_register('timm.layers.norm.LayerNorm2d', 'core.submodule.LayerNorm2d')
def _build_layer_norm_2d(record: ModuleRecord, path: str) -> nn.Module:
    _check_tensors(record, path, params=('weight', 'bias'))
    shape = _attr(record, 'normalized_shape', path, (tuple, list))
    if len(shape) != 1 or record.attrs.get('elementwise_affine', True) is not True:
        raise ArchitectureError(f'{_where(path)} (LayerNorm2d): normalized_shape {shape} / '
                                f'elementwise_affine not supported')
    norm = layers.LayerNorm2d(int(shape[0]), eps=float(_attr(record, 'eps', path, float)))
    return _same_attrs(norm, record, path)


@_register('timm.layers.mlp.Mlp')
def _build_mlp(record: ModuleRecord, path: str) -> nn.Module:
    _check_attrs(record, path, ('use_conv',))
    if record.attrs.get('use_conv', False):
        raise ArchitectureError(f'{_where(path)} (Mlp): use_conv=True is not supported')
    _check_tensors(record, path)
    _require_gelu(record, 'act', path)
    _require_kind(record, 'norm', path, ('Identity',))
    children = _children(record, path, ('fc1', 'act', 'drop1', 'norm', 'fc2', 'drop2'))
    # layers.Mlp.forward = fc2(gelu(fc1(x))); dropouts are inactive at inference.
    return adopt(layers.Mlp, record, path, children)


@_register('timm.models.edgenext.ConvBlock')
def _build_convblock(record: ModuleRecord, path: str) -> nn.Module:
    _check_attrs(record, path, ('shortcut_after_dw',))
    if record.attrs.get('shortcut_after_dw', False):
        raise ArchitectureError(f'{_where(path)} (ConvBlock): shortcut_after_dw=True is not '
                                f'supported')
    _check_tensors(record, path, params=('gamma',))
    if _param(record, 'gamma', path) is None:
        raise ArchitectureError(f'{_where(path)} (ConvBlock): blocks without layer scale '
                                f'(gamma None) are not supported')
    _require_kind(record, 'drop_path', path, ('Identity',))
    children = _children(record, path, ('conv_dw', 'norm', 'mlp', 'drop_path'))
    return blocks.EdgeNeXtConvBlock(children, _param(record, 'gamma', path)[0])


@_register('timm.models.edgenext.PositionalEncodingFourier')
def _build_pos_fourier(record: ModuleRecord, path: str) -> nn.Module:
    _check_attrs(record, path, ('dim', 'hidden_dim', 'scale', 'temperature'))
    _check_tensors(record, path)
    scale = float(record.attrs.get('scale', 2 * math.pi))
    if not math.isclose(scale, 2 * math.pi):
        raise ArchitectureError(f'{_where(path)} (PositionalEncodingFourier): scale {scale} '
                                f'is not supported (only 2*pi)')
    proj = record.children.get('token_projection')
    if proj is None:
        raise ArchitectureError(f'{_where(path)}: missing token_projection')
    module = edgenext.FourierPositionalEncoding(
        int(_attr(record, 'dim', path, int)), int(_attr(record, 'hidden_dim', path, int)),
        float(_attr(record, 'temperature', path, (int, float))))
    module.token_projection = _child(record, 'token_projection', path)
    return module


@_register('timm.models.edgenext.CrossCovarianceAttn')
def _build_xca(record: ModuleRecord, path: str) -> nn.Module:
    _check_attrs(record, path, ('num_heads',))
    _check_tensors(record, path, params=('temperature',))
    children = _children(record, path, ('qkv', 'attn_drop', 'proj', 'proj_drop'))
    qkv, proj = children['qkv'], children['proj']
    if not (isinstance(qkv, nn.Linear) and isinstance(proj, nn.Linear)
            and qkv.out_features == 3 * qkv.in_features == 3 * proj.in_features):
        raise ArchitectureError(f'{_where(path)} (CrossCovarianceAttn): qkv/proj widths '
                                f'do not match')
    module = edgenext.CrossCovarianceAttention(qkv.in_features,
                                               int(_attr(record, 'num_heads', path, int)))
    for name, child in children.items():
        module.add_module(name, child)
    return module


@_register('timm.models.edgenext.SplitTransposeBlock')
def _build_sdta(record: ModuleRecord, path: str) -> nn.Module:
    _check_attrs(record, path, ('num_scales', 'width', 'pos_embd'))
    _check_tensors(record, path, params=('gamma_xca', 'gamma'))
    if record.attrs.get('pos_embd') is not None:
        raise ArchitectureError(f'{_where(path)}.pos_embd: must be a module or None')
    # timm stores num_scales as the number of convolved splits (scales - 1).
    num_convs = int(_attr(record, 'num_scales', path, int))
    convs = record.children.get('convs')
    if convs is None or len(convs.children) != num_convs:
        raise ArchitectureError(f'{_where(path)} (SplitTransposeBlock): expected '
                                f'{num_convs} convs')
    if _param(record, 'gamma', path) is None or _param(record, 'gamma_xca', path) is None:
        raise ArchitectureError(f'{_where(path)} (SplitTransposeBlock): layer scale missing')
    _require_kind(record, 'drop_path', path, ('Identity',))
    children = _children(record, path, ('convs', 'norm_xca', 'xca', 'norm', 'mlp', 'drop_path'),
                         optional=('pos_embd',))
    children.setdefault('pos_embd', None)
    return adopt(edgenext.SplitTransposeBlock, record, path, children,
                 params=('gamma_xca', 'gamma'))


@_register('timm.models.edgenext.EdgeNeXtStage')
def _build_stage(record: ModuleRecord, path: str) -> nn.Module:
    _check_attrs(record, path, ('grad_checkpointing',))
    _check_tensors(record, path)
    return adopt(edgenext.EdgeNeXtStage, record, path,
                 _children(record, path, ('downsample', 'blocks')))


# ----------------------------------------------------------------------------- core.submodule
_SUB = 'core.submodule.'


@_register(_SUB + 'BasicConv', _SUB + 'BasicConv_IN')
def _build_basic_conv(record: ModuleRecord, path: str) -> nn.Module:
    norm_name, flag = ('bn', 'use_bn') if record.class_name == 'BasicConv' else ('IN', 'use_in')
    _check_attrs(record, path, (flag, 'relu'))
    _check_tensors(record, path)
    use_norm = bool(_attr(record, flag, path, bool))
    children = _children(record, path, ('conv', norm_name), optional=('relu',))
    if 'relu' not in children:
        # Old pickles keep the flag as a bool and build the activation in forward.
        relu = record.attrs.get('relu')
        if not isinstance(relu, bool):
            raise ArchitectureError(f'{_where(path)} ({record.class_name}): no activation')
        children['relu'] = nn.LeakyReLU() if relu else nn.Identity()
    order = ['conv'] + ([norm_name] if use_norm else []) + ['relu']
    return blocks.ConvNormAct(children, order)


@_register(_SUB + 'Conv3dNormActReduced')
def _build_conv3d_reduced(record: ModuleRecord, path: str) -> nn.Module:
    _check_attrs(record, path, ())
    _check_tensors(record, path)
    # layers.Conv3dNormActReduced.forward = conv2(conv1(x)).
    return adopt(layers.Conv3dNormActReduced, record, path,
                 _children(record, path, ('conv1', 'conv2')))


@_register(_SUB + 'ResnetBasicBlock', _SUB + 'ResnetBasicBlock3D')
def _build_resnet_block(record: ModuleRecord, path: str) -> nn.Module:
    _check_attrs(record, path, ('norm_layer', 'stride', 'downsample'))
    _check_tensors(record, path)
    norm = record.attrs.get('norm_layer')
    if norm is not None and not isinstance(norm, ClassRef):
        raise ArchitectureError(f'{_where(path)} ({record.class_name}): norm_layer {norm!r}')
    if record.attrs.get('downsample') is not None:
        raise ArchitectureError(f'{_where(path)}: downsample attribute must be a module')
    norms = ('bn1', 'bn2') if norm is not None else ()
    children = _children(record, path, ('conv1', 'relu', 'conv2', *norms),
                         optional=('downsample',))
    return blocks.ResnetBlock(children)


@_register(_SUB + 'Conv2x', _SUB + 'Conv2x_IN')
def _build_conv2x(record: ModuleRecord, path: str) -> nn.Module:
    _check_attrs(record, path, ('concat', 'is_3d'))
    _check_tensors(record, path)
    if _attr(record, 'is_3d', path, bool):
        raise ArchitectureError(f'{_where(path)} ({record.class_name}): is_3d=True is not '
                                f'supported')
    children = _children(record, path, ('conv1', 'conv2'))
    return blocks.MergeUp(children['conv1'], children['conv2'],
                          _attr(record, 'concat', path, bool))


@_register(_SUB + 'FeatureAtt')
def _build_feature_att(record: ModuleRecord, path: str) -> nn.Module:
    _check_attrs(record, path, ())
    _check_tensors(record, path)
    # cost_aggregation.FeatureAtt.forward = sigmoid(feat_att(feat)).unsqueeze(2) * cv.
    return adopt(cost_aggregation.FeatureAtt, record, path,
                 _children(record, path, ('feat_att',)))


@_register(_SUB + 'ChannelAttentionEnhancement')
def _build_cam(record: ModuleRecord, path: str) -> nn.Module:
    _check_attrs(record, path, ())
    _check_tensors(record, path)
    for name, size in (('avg_pool', 'AdaptiveAvgPool2d'), ('max_pool', 'AdaptiveMaxPool2d')):
        _require_kind(record, name, path, (size,))
        if record.children[name].attrs.get('output_size') not in (1, (1, 1)):
            raise ArchitectureError(f'{_where(path)}.{name}: output size must be 1')
    _require_kind(record, 'sigmoid', path, ('Sigmoid',))
    # context.ChannelAttention.forward = sigmoid(fc(mean) + fc(max)) over the pixels.
    return adopt(context.ChannelAttention, record, path,
                 _children(record, path, ('avg_pool', 'max_pool', 'fc', 'sigmoid')))


@_register(_SUB + 'SpatialAttentionExtractor')
def _build_sam(record: ModuleRecord, path: str) -> nn.Module:
    _check_attrs(record, path, ())
    _check_tensors(record, path)
    _require_kind(record, 'sigmoid', path, ('Sigmoid',))
    # context.SpatialAttention.forward = sigmoid(samconv([mean_c, max_c])).
    return adopt(context.SpatialAttention, record, path,
                 _children(record, path, ('samconv', 'sigmoid')))


@_register(_SUB + 'EdgeNextConvEncoder')
def _build_edgenext_encoder(record: ModuleRecord, path: str) -> nn.Module:
    _check_attrs(record, path, ())
    _check_tensors(record, path, params=('gamma',))
    _require_gelu(record, 'act', path)
    children = _children(record, path, ('dwconv', 'norm', 'pwconv1', 'act', 'pwconv2'))
    gamma = _param(record, 'gamma', path) if 'gamma' in record.params else None
    return blocks.EdgeNextConvEncoder(children, None if gamma is None else gamma[0])


@_register(_SUB + 'CostVolumeDisparityAttention')
def _build_disparity_attention(record: ModuleRecord, path: str) -> nn.Module:
    _check_attrs(record, path, ('resize_embed',))
    _check_tensors(record, path)
    if record.attrs.get('resize_embed', False):
        raise ArchitectureError(f'{_where(path)}: resize_embed=True is not supported')
    pos = record.children.get('pos_embed0')
    sa = record.children.get('sa')
    if pos is None or sa is None or not sa.children or set(record.children) != {
            'sa', 'pos_embed0'}:
        raise ArchitectureError(f'{_where(path)} (CostVolumeDisparityAttention): expected '
                                f'sa and pos_embed0, got {list(record.children)}')
    table = pos.attrs.get('pe')
    if not isinstance(table, torch.Tensor) or table.dim() != 3:
        raise ArchitectureError(f'{_where(path)}.pos_embed0: position table missing')
    max_len, d_model = int(table.shape[1]), int(table.shape[2])
    reference = sinusoidal_embedding(max_len, d_model, device=torch.device('cpu'))
    if not torch.allclose(table.float(), reference, atol=1e-5):
        raise ArchitectureError(f'{_where(path)}.pos_embed0: position table is not the '
                                f'sine/cosine table; not supported')
    widths = set()
    heads = set()
    for index, layer in sa.children.items():
        where = f'{path}.sa.{index}'
        if _kind(layer) != _SUB + 'FlashAttentionTransformerEncoderLayer':
            raise ArchitectureError(f'{where}: unknown transformer layer {_kind(layer)!r}')
        _require_gelu(layer, 'act', where)
        for norm in ('norm1', 'norm2'):
            _require_kind(layer, norm, where, ('LayerNorm',))
        attn = layer.children.get('self_attn')
        if _kind(attn) != _SUB + 'FlashMultiheadAttention':
            raise ArchitectureError(f'{where}.self_attn: unknown attention {_kind(attn)!r}')
        heads.add(int(_attr(attn, 'num_heads', f'{where}.self_attn', int)))
        widths.add(_shape(layer.children['linear1'].params['weight'])[0])
    if len(widths) != 1 or len(heads) != 1:
        raise ArchitectureError(f'{_where(path)}: transformer layers of different widths '
                                f'{sorted(widths)} / heads {sorted(heads)} are not supported')
    # Upstream's attention is scaled_dot_product_attention over (B', L, heads, head_dim):
    # the "heads" semantics of cost_attention.
    return CostVolumeDisparityAttention(d_model, heads.pop(), widths.pop(),
                                        num_transformer=len(sa.children), max_len=max_len,
                                        attention=ATTEND_HEADS)


@_register(_SUB + 'FlashAttentionTransformerEncoderLayer', _SUB + 'FlashMultiheadAttention',
           _SUB + 'PositionalEmbedding')
def _build_only_inside(record: ModuleRecord, path: str) -> nn.Module:
    raise ArchitectureError(f'{_where(path)}: {record.class_name} outside a '
                            f'CostVolumeDisparityAttention is not supported')


# ----------------------------------------------------------------------------- core.update
@_register('core.update.BasicMotionEncoder')
def _build_motion_encoder(record: ModuleRecord, path: str) -> nn.Module:
    _check_attrs(record, path, ('args',))
    _check_tensors(record, path)
    # update.MotionEncoder.forward: cat(relu(conv(cat(cor, dsp))), disp) with the
    # official convc1/convc2/convd1/convd2/conv chain.
    return adopt(update.MotionEncoder, record, path,
                 _children(record, path, ('convc1', 'convc2', 'convd1', 'convd2', 'conv')))


@_register('core.update.RaftConvGRU')
def _build_raft_gru(record: ModuleRecord, path: str) -> nn.Module:
    _check_attrs(record, path, ())
    _check_tensors(record, path)
    return adopt(update.ConvGRUCell, record, path,
                 _children(record, path, ('convz', 'convr', 'convq')))


@_register('core.update.SelectiveConvGRU')
def _build_selective_gru(record: ModuleRecord, path: str) -> nn.Module:
    _check_attrs(record, path, ())
    _check_tensors(record, path)
    return adopt(update.SelectiveConvGRU, record, path,
                 _children(record, path, ('conv0', 'conv1', 'small_gru', 'large_gru')))


@_register('core.update.DispHead')
def _build_disp_head(record: ModuleRecord, path: str) -> nn.Module:
    _check_attrs(record, path, ())
    _check_tensors(record, path)
    return adopt(update.DispHead, record, path, _children(record, path, ('conv',)))


@_register('core.update.BasicSelectiveMultiUpdateBlock')
def _build_update_block(record: ModuleRecord, path: str) -> nn.Module:
    _check_attrs(record, path, ('args',))
    _check_tensors(record, path)
    return blocks.UpdateBlock(_children(record, path, ('encoder', 'gru04', 'disp_head',
                                                       'mask')))


# ----------------------------------------------------------------------------- FFS specific
@_register('core.distill_block.ForwardHelper')
def _build_forward_helper(record: ModuleRecord, path: str) -> nn.Module:
    _check_attrs(record, path, ())
    _check_tensors(record, path)
    return blocks.ForwardHelper(_children(record, path, ('layers',))['layers'])


@_register('core.distill_block.PostForwardHelper')
def _build_post_forward_helper(record: ModuleRecord, path: str) -> nn.Module:
    _check_attrs(record, path, ('op',))
    _check_tensors(record, path)
    op = _attr(record, 'op', path, str)
    if op not in blocks.PostForwardHelper.OPS:
        raise ArchitectureError(f'{_where(path)} (PostForwardHelper): unknown op {op!r}')
    children = _children(record, path, ('upsample', 'out'))
    return blocks.PostForwardHelper(children['upsample'], op, children['out'])


@_register('core.extractor.ContextNetSharedBackbone')
def _build_context(record: ModuleRecord, path: str) -> nn.Module:
    _check_attrs(record, path, ('args',))
    _check_tensors(record, path)
    heads = _children(record, path, ('conv04',))['conv04']
    if len(heads) != 2:
        raise ArchitectureError(f'{_where(path)}.conv04: expected 2 heads (hidden state, '
                                f'context), got {len(heads)}')
    return blocks.ContextHeads(heads)


@_register('core.extractor.Feature')
def _build_feature(record: ModuleRecord, path: str) -> nn.Module:
    _check_attrs(record, path, ('args', 'chans', 'd_out'))
    _check_tensors(record, path)
    if record.children.get('model') is not None:
        raise ArchitectureError(f'{_where(path)} (Feature): the timm "model" backbone form '
                                f'is not supported (expected stem + stages)')
    children = _children(record, path, ('stem', 'stages', 'deconv32_16', 'deconv16_8',
                                        'deconv8_4', 'conv4'),
                         optional=('conv8', 'conv16', 'conv32'))
    heads = [n for n in ('conv8', 'conv16', 'conv32') if n in children]
    if heads and len(heads) != 3:
        raise ArchitectureError(f'{_where(path)} (Feature): has {heads} but not all of '
                                f'conv8/conv16/conv32')
    stages = children['stages']
    if len(stages) != 4:
        raise ArchitectureError(f'{_where(path)}.stages: expected 4 EdgeNeXt stages')
    return network.FFSFeature(children, _attr(record, 'd_out', path, (list, tuple)))


_HOURGLASS = ('conv1', 'conv2', 'conv3', 'conv3_up', 'conv2_up', 'conv1_up', 'conv_out',
              'agg_0', 'agg_1', 'atts', 'conv_patch', 'feature_att_8', 'feature_att_16',
              'feature_att_32', 'feature_att_up_16', 'feature_att_up_8')


@_register('core.foundation_stereo.hourglass')
def _build_hourglass(record: ModuleRecord, path: str) -> nn.Module:
    _check_attrs(record, path, ('cfg', *network.FFSHourglass.POST))
    _check_tensors(record, path)
    for name in network.FFSHourglass.POST:
        if record.attrs.get(name) is not None:
            raise ArchitectureError(f'{_where(path)}.{name}: must be a module or None')
    children = _children(record, path, _HOURGLASS, optional=network.FFSHourglass.POST)
    for name in network.FFSHourglass.POST:
        if name in children and not isinstance(children[name], blocks.PostForwardHelper):
            raise ArchitectureError(f'{_where(path)}.{name}: expected a PostForwardHelper')
        children.setdefault(name, None)
    return network.FFSHourglass(children)


_TOP = ('update_block', 'sam', 'cam', 'context_zqr_convs', 'feature', 'proj_cmb', 'cnet',
        'stem_2', 'spx_2_gru', 'spx_gru', 'corr_stem', 'corr_feature_att', 'cost_agg',
        'classifier')
_ARGS_REQUIRED = ('max_disp', 'corr_levels', 'corr_radius')


def _checked_args(record: ModuleRecord) -> dict[str, Any]:
    args = record.attrs.get('args')
    if not isinstance(args, dict):
        raise ArchitectureError(f'<root>.args: expected the model config (a mapping), got '
                                f'{type(args).__name__}')
    missing = [k for k in (*_ARGS_REQUIRED, 'normalize') if k not in args]
    if missing:
        raise ArchitectureError(f'<root>.args: missing config fields {missing}')
    for key in _ARGS_REQUIRED:
        if isinstance(args[key], bool) or not isinstance(args[key], int) or args[key] < 1:
            raise ArchitectureError(f'<root>.args.{key}: expected a positive integer, got '
                                    f'{args[key]!r}')
    if args.get('n_gru_layers', 1) != 1:
        raise ArchitectureError(f"<root>.args.n_gru_layers is {args['n_gru_layers']}; FFS "
                                f"networks have a single GRU level (1)")
    return dict(args)


@_register('core.foundation_stereo.FastFoundationStereo')
def _build_ffs(record: ModuleRecord, path: str) -> nn.Module:
    _check_attrs(record, path, ('args', 'dtype', 'cv_group', 'concat_channel', 'volume_dim',
                                'dx'))
    _check_tensors(record, path, buffers=('dx',))
    args = _checked_args(record)
    dtype = record.attrs.get('dtype', torch.float32)
    if dtype != torch.float32:
        raise ArchitectureError(f'<root>.dtype is {dtype}; only float32 models are supported '
                                f'(autocast is applied at run time)')
    cv_group = int(_attr(record, 'cv_group', path, int))
    radius = int(args['corr_radius'])
    dx = record.buffers.get('dx', record.attrs.get('dx'))
    if isinstance(dx, (torch.Tensor, TensorSpec)) and _shape(dx) != (1, 1, 2 * radius + 1, 1):
        raise ArchitectureError(f'<root>.dx: shape {_shape(dx)} does not match corr_radius '
                                f'{radius}')
    if isinstance(dx, torch.Tensor) and not torch.equal(
            dx.flatten().long(), torch.arange(-radius, radius + 1, device='cpu')):
        raise ArchitectureError('<root>.dx: offsets are not -r..r; not supported')
    buffer = record.buffers.get('dx')
    if isinstance(buffer, TensorSpec):
        buffer = torch.arange(-radius, radius + 1, dtype=buffer.dtype,
                              device='cpu').reshape(buffer.shape)
    children = _children(record, path, _TOP)
    return network.FastFoundationStereo(children, args, cv_group, dx_buffer=buffer)


# ----------------------------------------------------------------------------- entry points
def build_network(record: ModuleRecord) -> network.FastFoundationStereo:
    """Build the network described by a record tree, without weights (``meta`` tensors).

    Give it its weights with :func:`load_weights`.
    """
    if canonical_class_path(record.class_path) != 'core.foundation_stereo.FastFoundationStereo':
        raise ArchitectureError(f'the file holds a {record.class_path}, not a '
                                f'FastFoundationStereo model')
    # No random initialisation of 10^7 weights that the checkpoint replaces anyway (checks
    # above that compute on the file's tensors name the CPU device explicitly).
    with torch.device('meta'):
        model = build(record)
    assert isinstance(model, network.FastFoundationStereo)
    return model


def load_weights(model: nn.Module, state_dict: dict[str, torch.Tensor]) -> None:
    """``load_state_dict(strict=True)`` with an :class:`ArchitectureError` naming the keys.

    The checkpoint's tensors become the model's (``assign``), so the ``meta`` placeholders of
    :func:`build_network` are replaced.
    """
    try:
        model.load_state_dict(state_dict, strict=True, assign=True)
    except RuntimeError as err:
        lines = str(err).splitlines()
        raise ArchitectureError('weights do not fit the rebuilt network: '
                                + ' '.join(line.strip() for line in lines[:6])) from err


# Every allowlisted module class has a builder (checked at import: one list, two uses).
_MISSING = sorted(MODULE_CLASSES - set(BUILDERS))
if _MISSING:
    raise ImportError(f'no builder for allowlisted classes {_MISSING}')

"""Test-side stand-ins for the official FFS / timm classes, to write serialized checkpoints.

A serialized FFS checkpoint pickles its modules under the official class paths
(``core.*``, ``foundation_stereo_ori.*``, ``timm.*``). The tests write such files without the
official code: :func:`official_classes` registers empty ``nn.Module`` subclasses under those
paths in ``sys.modules`` for the duration of a ``with`` block (they have no ``forward``; only
their pickled state matters). ``torch.nn`` layers are the real ones.

:func:`tiny_ffs` builds a small network of other widths (and optional NAS decoder steps);
:func:`record_to_modules` turns a record tree (e.g. the shared ``cffs_like`` checkpoint, read
by the package) back into modules, to re-serialize it with edits.
"""
from __future__ import annotations

import contextlib
import importlib
import math
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from foundation_stereo_ros.model.ffs.records import ClassRef, ModuleRecord


class OfficialClasses:
    """Factory of stand-in classes named by official paths (see :func:`official_classes`)."""

    def __init__(self) -> None:
        self.added: dict[str, types.ModuleType | None] = {}
        self.classes: dict[str, type] = {}

    def _module(self, name: str) -> types.ModuleType:
        if name not in sys.modules or name not in self.added:
            parent = name.rpartition('.')[0]
            if parent:
                self._module(parent)
            self.added.setdefault(name, sys.modules.get(name))
            sys.modules[name] = types.ModuleType(name)
        return sys.modules[name]

    def cls(self, path: str) -> type:
        """Return the stand-in class for ``path`` (torch.nn paths give the real class)."""
        if path.startswith('torch.'):
            module, _, name = path.rpartition('.')
            return getattr(importlib.import_module(module), name)
        if path not in self.classes:
            module, _, name = path.rpartition('.')
            cls = type(name, (nn.Module,), {'__module__': module, '__qualname__': name})
            setattr(self._module(module), name, cls)
            self.classes[path] = cls
        return self.classes[path]

    def make(self, path: str, **members: Any) -> nn.Module:
        """Make an instance of the stand-in for ``path`` with these attributes / children."""
        obj = self.cls(path).__new__(self.cls(path))
        nn.Module.__init__(obj)
        for name, value in members.items():
            setattr(obj, name, value)
        return obj

    def retype(self, module: nn.Module, path: str) -> nn.Module:
        """Give a real layer the stand-in class ``path`` (its state is kept)."""
        module.__class__ = self.cls(path)
        return module


@contextlib.contextmanager
def official_classes() -> Iterator[OfficialClasses]:
    """Register stand-in official modules in ``sys.modules`` while the block runs."""
    fakes = OfficialClasses()
    try:
        yield fakes
    finally:
        for name, previous in fakes.added.items():
            if previous is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = previous


# ----------------------------------------------------------------------------- record -> modules
def _value(value: Any, fakes: OfficialClasses) -> Any:
    if isinstance(value, ClassRef):
        return fakes.cls(value.path)
    if isinstance(value, dict):
        return {k: _value(v, fakes) for k, v in value.items()}
    if isinstance(value, list):
        return [_value(v, fakes) for v in value]
    return value


def record_to_modules(record: ModuleRecord, fakes: OfficialClasses,
                      rename: dict[str, str] | None = None) -> nn.Module:
    """Modules with the record's classes (paths renamed by prefix), attributes and tensors."""
    path = record.class_path
    for old, new in (rename or {}).items():
        if path.startswith(old):
            path = new + path[len(old):]
    cls = fakes.cls(path)
    obj = cls.__new__(cls)
    nn.Module.__init__(obj)
    obj.__dict__.update({k: _value(v, fakes) for k, v in record.attrs.items()})
    for name, value in record.params.items():
        obj._parameters[name] = None if value is None else nn.Parameter(value.clone())
    for name, value in record.buffers.items():
        obj._buffers[name] = None if value is None else value.clone()
    for name, child in record.children.items():
        obj._modules[name] = (None if child is None else
                              record_to_modules(child, fakes, rename))
    return obj


# ----------------------------------------------------------------------------- a tiny FFS network
def sincos_table(length: int, d_model: int) -> torch.Tensor:
    """Return the sine/cosine position table (1, length, d_model), written independently."""
    table = torch.zeros(length, d_model)
    for pos in range(length):
        for i in range(0, d_model, 2):
            angle = pos / 10000 ** (i / d_model)
            table[pos, i] = math.sin(angle)
            if i + 1 < d_model:
                table[pos, i + 1] = math.cos(angle)
    return table[None]


class TinyFFS:
    """Builder of a small FFS network of other widths with stand-in official classes."""

    def __init__(self, fakes: OfficialClasses, prefix: str = 'core') -> None:
        self.f = fakes
        self.p = prefix

    def sub(self, name: str, **members: Any) -> nn.Module:
        return self.f.make(f'{self.p}.submodule.{name}', **members)

    def basic_conv(self, cin: int, cout: int, dims: int = 3, deconv: bool = False,
                   bn: bool = True, relu: bool = True, **conv: Any) -> nn.Module:
        conv_cls = {(2, False): nn.Conv2d, (3, False): nn.Conv3d, (2, True): nn.ConvTranspose2d,
                    (3, True): nn.ConvTranspose3d}[(dims, deconv)]
        norm = (nn.BatchNorm3d if dims == 3 else nn.BatchNorm2d)(cout) if bn else nn.Identity()
        return self.sub('BasicConv', relu=nn.LeakyReLU(inplace=True) if relu else nn.Identity(),
                        use_bn=bn, bn=norm, conv=conv_cls(cin, cout, bias=False, **conv))

    def c3r(self, cin: int, cout: int, kd: int, hidden: int | None = None) -> nn.Module:
        hidden = hidden or cout
        return self.sub('Conv3dNormActReduced',
                        conv1=nn.Sequential(nn.Conv3d(cin, hidden, (1, 3, 3), padding=(0, 1, 1)),
                                            nn.BatchNorm3d(hidden), nn.ReLU()),
                        conv2=nn.Sequential(nn.Conv3d(hidden, cout, (kd, 1, 1),
                                                      padding=(kd // 2, 0, 0)),
                                            nn.BatchNorm3d(cout), nn.ReLU()))

    def feature_att(self, cv: int, feat: int) -> nn.Module:
        return self.sub('FeatureAtt', feat_att=nn.Sequential(
            self.basic_conv(feat, feat // 2, dims=2, kernel_size=1), nn.Conv2d(feat // 2, cv, 1)))

    def resnet_block(self, ch: int, dims: int, norm: type) -> nn.Module:
        conv = nn.Conv3d if dims == 3 else nn.Conv2d
        name = 'ResnetBasicBlock3D' if dims == 3 else 'ResnetBasicBlock'
        return self.sub(name, norm_layer=norm, downsample=None, stride=1,
                        conv1=conv(ch, ch, 3, padding=1, bias=False), bn1=norm(ch),
                        relu=nn.ReLU(inplace=True), conv2=conv(ch, ch, 3, padding=1, bias=False),
                        bn2=norm(ch))

    def attention(self, d_model: int, heads: int, ff: int, layers: int,
                  max_len: int) -> nn.Module:
        def layer() -> nn.Module:
            attn = self.sub('FlashMultiheadAttention', num_heads=heads, embed_dim=d_model,
                            head_dim=d_model // heads, q_proj=nn.Linear(d_model, d_model),
                            k_proj=nn.Linear(d_model, d_model),
                            v_proj=nn.Linear(d_model, d_model),
                            out_proj=nn.Linear(d_model, d_model))
            return self.sub('FlashAttentionTransformerEncoderLayer', self_attn=attn,
                            act=nn.GELU(), linear1=nn.Linear(d_model, ff), dropout=nn.Dropout(),
                            linear2=nn.Linear(ff, d_model), norm1=nn.LayerNorm(d_model),
                            norm2=nn.LayerNorm(d_model), dropout1=nn.Dropout(),
                            dropout2=nn.Dropout())
        return self.sub('CostVolumeDisparityAttention', resize_embed=False,
                        sa=nn.ModuleList([layer() for _ in range(layers)]),
                        pos_embed0=self.sub('PositionalEmbedding',
                                            pe=sincos_table(max_len, d_model)))

    # -- timm EdgeNeXt
    def timm(self, name: str, **members: Any) -> nn.Module:
        return self.f.make(f'timm.models.edgenext.{name}', **members)

    def layer_norm_2d(self, ch: int) -> nn.Module:
        return self.f.retype(nn.LayerNorm(ch, eps=1e-6), 'timm.layers.norm.LayerNorm2d')

    def mlp(self, ch: int, hidden: int) -> nn.Module:
        return self.f.make('timm.layers.mlp.Mlp', fc1=nn.Linear(ch, hidden), act=nn.GELU(),
                           drop1=nn.Dropout(0.0), norm=nn.Identity(),
                           fc2=nn.Linear(hidden, ch), drop2=nn.Dropout(0.0))

    def conv_block(self, ch: int, kernel: int, hidden: int) -> nn.Module:
        return self.timm('ConvBlock', shortcut_after_dw=False,
                         conv_dw=nn.Conv2d(ch, ch, kernel, padding=kernel // 2, groups=ch),
                         norm=nn.LayerNorm(ch, eps=1e-6), mlp=self.mlp(ch, hidden),
                         gamma=nn.Parameter(torch.full((ch,), 0.5)), drop_path=nn.Identity())

    def sdta(self, ch: int, convs: int, heads: int, pos: bool) -> nn.Module:
        width = math.ceil(ch / (convs + 1))
        members: dict[str, Any] = {}
        if pos:
            members['pos_embd'] = self.timm('PositionalEncodingFourier', hidden_dim=32, dim=ch,
                                            temperature=10000, scale=2 * math.pi,
                                            token_projection=nn.Conv2d(64, ch, 1))
        else:
            members['pos_embd'] = None
        xca = self.timm('CrossCovarianceAttn', num_heads=heads,
                        temperature=nn.Parameter(torch.full((heads, 1, 1), 2.0)),
                        qkv=nn.Linear(ch, 3 * ch), attn_drop=nn.Dropout(0.0),
                        proj=nn.Linear(ch, ch), proj_drop=nn.Dropout(0.0))
        return self.timm('SplitTransposeBlock', width=width, num_scales=convs,
                         convs=nn.ModuleList(nn.Conv2d(width, width, 3, padding=1, groups=width)
                                             for _ in range(convs)),
                         **members, norm_xca=nn.LayerNorm(ch, eps=1e-6),
                         gamma_xca=nn.Parameter(torch.full((ch,), 0.5)), xca=xca,
                         norm=nn.LayerNorm(ch, eps=1e-6), mlp=self.mlp(ch, 2 * ch),
                         gamma=nn.Parameter(torch.full((ch,), 0.5)), drop_path=nn.Identity())

    def feature(self, chans: list[int], phantom: int, args: dict) -> nn.Module:
        c0, c1, c2, c3 = chans
        stages = []
        for i, blocks in enumerate([
                [self.conv_block(c0, 3, 4 * c0)],
                [self.conv_block(c1, 5, 4 * c1), self.sdta(c1, 1, 4, pos=True)],
                [self.conv_block(c2, 7, 3 * c2), self.sdta(c2, 2, 4, pos=False)],
                [self.conv_block(c3, 9, 2 * c3)]]):
            down = (nn.Identity() if i == 0 else
                    nn.Sequential(self.layer_norm_2d(chans[i - 1]),
                                  nn.Conv2d(chans[i - 1], chans[i], 2, stride=2)))
            stages.append(self.timm('EdgeNeXtStage', grad_checkpointing=False, downsample=down,
                                    blocks=nn.Sequential(*blocks)))

        def up(cin: int, cout: int) -> nn.Module:
            conv1 = self.sub('BasicConv_IN', relu=nn.LeakyReLU(inplace=True), use_in=True,
                             conv=nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False),
                             IN=nn.InstanceNorm2d(cout))
            return self.sub('Conv2x_IN', concat=True, is_3d=False, conv1=conv1,
                            conv2=self.resnet_block(2 * cout, 2, nn.InstanceNorm2d))
        f4 = 2 * c0 + phantom
        return self.f.make(f'{self.p}.extractor.Feature', args=args, chans=chans,
                           d_out=[f4, 2 * c1, 2 * c2, c3],
                           stem=nn.Sequential(nn.Conv2d(3, c0, 4, 4), self.layer_norm_2d(c0)),
                           stages=nn.Sequential(*stages), deconv32_16=up(c3, c2),
                           deconv16_8=up(2 * c2, c1), deconv8_4=up(2 * c1, c0),
                           conv4=nn.Conv2d(2 * c0, f4, 1))

    def post(self, upsample: list[nn.Module], op: str, out: list[nn.Module]) -> nn.Module:
        return self.f.make(f'{self.p}.distill_block.PostForwardHelper', op=op,
                           upsample=nn.Sequential(*upsample), out=nn.ModuleList(out))

    def helper(self, layers: list[nn.Module]) -> nn.Module:
        return self.f.make(f'{self.p}.distill_block.ForwardHelper', layers=nn.ModuleList(layers))

    def hourglass(self, c: int, d_out: list[int], max_disp: int, args: dict,
                  searched: str | None) -> nn.Module:
        deconv = {'dims': 3, 'deconv': True, 'kernel_size': 4, 'stride': 2, 'padding': 1}
        down = {'kernel_size': 3, 'stride': 2, 'padding': 1}
        members: dict[str, Any] = {
            'cfg': args, 'conv1': nn.Identity(),
            'feature_att_8': self.helper([self.basic_conv(c, 2 * c, **down),
                                          self.c3r(2 * c, 2 * c, 5, hidden=3 * c),
                                          self.feature_att(2 * c, d_out[1])]),
            'conv2': nn.Identity(),
            'feature_att_16': self.helper([self.basic_conv(2 * c, 4 * c, **down),
                                           self.feature_att(4 * c, d_out[2])]),
            'conv3': nn.Sequential(self.basic_conv(4 * c, 6 * c, **down),
                                   self.c3r(6 * c, 6 * c, 3)),
            'feature_att_32': self.feature_att(6 * c, d_out[3]),
            'conv3_up': self.basic_conv(6 * c, 4 * c, **deconv),
            'conv2_up': self.basic_conv(4 * c, 2 * c, **deconv),
            'conv1_up': self.basic_conv(2 * c, c, **deconv),
            'conv_out': nn.Sequential(self.c3r(c, c, 5)),
            'agg_0': nn.Sequential(self.basic_conv(8 * c, 4 * c, kernel_size=1)),
            'agg_1': nn.Sequential(self.basic_conv(4 * c, 2 * c, kernel_size=1)),
            'atts': nn.ModuleDict({'4': self.attention(c, 2, c, 2, max_disp // 16)}),
            'conv_patch': nn.Sequential(nn.Conv3d(c, c, 4, stride=4, groups=c),
                                        nn.BatchNorm3d(c)),
            'feature_att_up_16': self.feature_att(4 * c, d_out[2]),
            'feature_att_up_8': self.feature_att(2 * c, d_out[1]),
        }
        if searched is None:
            members.update(post32_to_16=None, post16_to_8=None, post8_to_4=None)
        else:
            cat = 2 if searched == 'concat' else 1
            members['post32_to_16'] = self.post(
                [nn.ConvTranspose3d(6 * c, 4 * c, 3, stride=2, padding=1, output_padding=1),
                 nn.BatchNorm3d(4 * c), nn.LeakyReLU()], searched,
                [self.basic_conv(cat * 4 * c, 4 * c, kernel_size=1),
                 self.feature_att(4 * c, d_out[2])])
            members['post16_to_8'] = self.post(
                [self.basic_conv(4 * c, 2 * c, **deconv)], searched,
                [self.basic_conv(cat * 2 * c, 2 * c, kernel_size=3, padding=1),
                 self.c3r(2 * c, 2 * c, 3)])
            members['post8_to_4'] = self.post(
                [nn.Conv3d(c, c, 4, stride=4), nn.BatchNorm3d(c),
                 self.attention(c, 2, 2 * c, 1, max_disp // 16),
                 nn.Upsample(scale_factor=4, mode='trilinear', align_corners=False)], searched,
                [self.basic_conv(cat * c, c, kernel_size=3, padding=1),
                 self.resnet_block(c, 3, nn.BatchNorm3d)])
        return self.f.make(f'{self.p}.foundation_stereo.hourglass', **members)

    def update_block(self, geo: int, hidden: int, ctx: int, args: dict) -> nn.Module:
        upd = f'{self.p}.update'
        encoder = self.f.make(f'{upd}.BasicMotionEncoder', args=args,
                              convc1=nn.Conv2d(geo, 24, 1), convc2=nn.Conv2d(24, 16, 3, padding=1),
                              convd1=nn.Conv2d(1, 8, 7, padding=3),
                              convd2=nn.Conv2d(8, 6, 3, padding=1),
                              conv=nn.Conv2d(22, 11, 3, padding=1))
        x_in, x_mid, hx = ctx + 12, 30, 44

        def gru(k: int) -> nn.Module:
            return self.f.make(f'{upd}.RaftConvGRU',
                               convz=nn.Conv2d(hx, hidden, k, padding=k // 2),
                               convr=nn.Conv2d(hx, hidden, k, padding=k // 2),
                               convq=nn.Conv2d(hidden + x_mid, hidden, k, padding=k // 2))
        gru04 = self.f.make(f'{upd}.SelectiveConvGRU',
                            conv0=nn.Sequential(nn.Conv2d(x_in, x_mid, 3, padding=1), nn.ReLU()),
                            conv1=nn.Sequential(nn.Conv2d(x_mid + hidden, hx, 3, padding=1),
                                                nn.ReLU()),
                            small_gru=gru(1), large_gru=gru(3))
        encoder_block = self.sub('EdgeNextConvEncoder',
                                 dwconv=nn.Conv2d(12, 12, 7, padding=3, groups=12),
                                 norm=nn.Identity(), pwconv1=nn.Linear(12, 30), act=nn.GELU(),
                                 pwconv2=nn.Linear(30, 12),
                                 gamma=nn.Parameter(torch.full((12,), 0.3)))
        head = self.f.make(f'{upd}.DispHead', conv=nn.Sequential(
            nn.Conv2d(hidden, 12, 3, padding=1), nn.ReLU(), encoder_block,
            nn.Conv2d(12, 1, 3, padding=1)))
        mask = nn.Sequential(nn.Conv2d(hidden, 16, 3, padding=1), nn.ReLU(inplace=True),
                             nn.Conv2d(16, 8, 3, padding=1), nn.ReLU(inplace=True))
        return self.f.make(f'{upd}.BasicSelectiveMultiUpdateBlock', args=args, encoder=encoder,
                           gru04=gru04, disp_head=head, mask=mask)

    def network(self, searched: str | None = 'sum', normalize: bool = True,
                max_disp: int = 64) -> nn.Module:
        """Build the whole network: random weights and BatchNorm statistics, eval mode."""
        torch.manual_seed(0)
        args = {'max_disp': max_disp, 'valid_iters': 8, 'normalize': normalize,
                'hidden_dims': [20], 'n_gru_layers': 1, 'corr_levels': 2, 'corr_radius': 4,
                'mixed_precision': False, 'low_memory': 0, 'volume_dim': 8, 'cv_group': 4}
        c, hidden, ctx = 8, 20, 16
        feature = self.feature([16, 24, 32, 40], 8, args)
        d_out = feature.d_out
        geo = 2 * 9 * (c + 1)
        cam = self.sub('ChannelAttentionEnhancement', avg_pool=nn.AdaptiveAvgPool2d(1),
                       max_pool=nn.AdaptiveMaxPool2d(1),
                       fc=nn.Sequential(nn.Conv2d(ctx, 4, 1, bias=False), nn.ReLU(),
                                        nn.Conv2d(4, ctx, 1, bias=False)),
                       sigmoid=nn.Sigmoid())
        sam = self.sub('SpatialAttentionExtractor',
                       samconv=nn.Conv2d(2, 1, 7, padding=3, bias=False), sigmoid=nn.Sigmoid())
        cnet = self.f.make(f'{self.p}.extractor.ContextNetSharedBackbone', args=args,
                           conv04=nn.ModuleList([
                               self.basic_conv(d_out[0], hidden, dims=2, kernel_size=3,
                                               padding=1),
                               self.basic_conv(d_out[0], ctx, dims=2, kernel_size=3,
                                               padding=1)]))
        stem_2 = nn.Sequential(
            self.sub('BasicConv_IN', relu=nn.LeakyReLU(inplace=True), use_in=True,
                     conv=nn.Conv2d(3, 6, 3, stride=2, padding=1, bias=False),
                     IN=nn.InstanceNorm2d(6)),
            nn.Conv2d(6, 10, 3, 1, 1, bias=False), nn.InstanceNorm2d(10), nn.ReLU())
        spx_2_gru = self.sub('Conv2x', concat=True, is_3d=False,
                             conv1=self.basic_conv(8, 6, dims=2, deconv=True, bn=False,
                                                   kernel_size=4, stride=2, padding=1),
                             conv2=self.basic_conv(16, 14, dims=2, bn=False, kernel_size=3,
                                                   padding=1))
        model = self.f.make(
            f'{self.p}.foundation_stereo.FastFoundationStereo',
            args=args, dtype=torch.float32, cv_group=4, concat_channel=12, volume_dim=c,
            update_block=self.update_block(geo, hidden, ctx, args), sam=sam, cam=cam,
            context_zqr_convs=nn.ModuleList([nn.Conv2d(hidden, 3 * hidden, 3, padding=1)]),
            feature=feature, proj_cmb=nn.Conv2d(d_out[0], 6, 1), cnet=cnet, stem_2=stem_2,
            spx_2_gru=spx_2_gru, spx_gru=nn.Sequential(nn.ConvTranspose2d(14, 9, 4, 2, 1)),
            corr_stem=nn.Sequential(nn.Conv3d(4 + 12, c, 1),
                                    self.basic_conv(c, c, kernel_size=3, padding=1)),
            corr_feature_att=self.feature_att(c, d_out[0]),
            cost_agg=self.hourglass(c, d_out, max_disp, args, searched),
            classifier=self.helper([nn.Conv3d(c, 1, 3, padding=1)]),
        )
        model.dx = torch.arange(-4, 5, dtype=torch.int8).reshape(1, 1, 9, 1)
        for module in model.modules():
            if isinstance(module, nn.BatchNorm3d | nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
        return model.eval()


# ----------------------------------------------------------------------------- checkpoint files
def write_tiny_serialized(path: Path, **network_kwargs: Any) -> Path:
    """Write a tiny serialized FFS checkpoint (``torch.save`` of :meth:`TinyFFS.network`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with official_classes() as fakes:
        torch.save(TinyFFS(fakes).network(**network_kwargs), path)
    return path


def write_tiny_converted(folder: Path, source: Path) -> Path:
    """Convert a tiny serialized checkpoint written at ``source`` into ``folder``, alone.

    Returns the converted ``.safetensors``: the only file of ``folder`` (no cfg.yaml).
    """
    from foundation_stereo_ros.model.ffs.loader import save_converted
    write_tiny_serialized(source)
    folder.mkdir(parents=True, exist_ok=True)
    out, _ = save_converted(source, folder / 'c_ffs.safetensors')
    return out

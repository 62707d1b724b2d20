"""Fast-FoundationStereo building blocks whose layers are given, not derived from widths.

FFS checkpoints are pruned and NAS-searched: a block's layers have widths and kernels that
its official constructor would never produce. These modules therefore take their (already
built) layers as arguments, keep the official attribute names (they are the state-dict keys)
and implement the official computation on them.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..cost_aggregation import FeatureAtt

__all__ = ['ContextHeads', 'ConvNormAct', 'EdgeNeXtConvBlock', 'EdgeNextConvEncoder',
           'ForwardHelper', 'MergeUp',
           'NamedLayers', 'PostForwardHelper', 'ResnetBlock', 'UpdateBlock', 'run_layers']


def run_layers(layers: Sequence[nn.Module], x: torch.Tensor,
               feat: torch.Tensor | None) -> torch.Tensor:
    """Apply ``layers`` in order; :class:`FeatureAtt` layers also receive ``feat``."""
    for layer in layers:
        x = layer(x, feat) if isinstance(layer, FeatureAtt) else layer(x)
    return x


class NamedLayers(nn.Module):
    """Registers the given layers under their official names (state-dict keys).

    Subclasses implement the official ``forward`` over them.
    """

    def __init__(self, layers: Mapping[str, nn.Module | None]) -> None:
        super().__init__()
        for name, layer in layers.items():
            self.add_module(name, layer)


class ConvNormAct(NamedLayers):
    """Official ``BasicConv`` / ``BasicConv_IN``: conv, optional norm, activation.

    Args:
        layers: the named layers (``conv``, the norm under ``bn`` or ``IN``, ``relu``).
        order: names applied in order (the norm is left out when the file disables it; it
            is still registered so its state-dict entries load).
    """

    def __init__(self, layers: Mapping[str, nn.Module | None], order: Sequence[str]) -> None:
        super().__init__(layers)
        self.order = tuple(order)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name in self.order:
            x = getattr(self, name)(x)
        return x


class ResnetBlock(NamedLayers):
    """Official ``ResnetBasicBlock`` / ``ResnetBasicBlock3D`` with given layers.

    ``relu(norm2(conv2(relu(norm1(conv1(x))))) + shortcut(x))``; the norms are absent when
    the file's ``norm_layer`` is None, the shortcut is the identity without ``downsample``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(x)
        if hasattr(self, 'bn1'):
            out = self.bn1(out)
        out = self.relu(out)
        out = self.conv2(out)
        if hasattr(self, 'bn2'):
            out = self.bn2(out)
        shortcut = x if getattr(self, 'downsample', None) is None else self.downsample(x)
        return self.relu(out + shortcut)


class MergeUp(NamedLayers):
    """Official ``Conv2x`` / ``Conv2x_IN``: resample ``x``, merge with ``rem``, convolve.

    The merge is a channel concatenation (``concat``) or a sum; when the resampled ``x``
    differs from ``rem`` in shape it is bilinearly resized to ``rem``'s size first.
    """

    def __init__(self, conv1: nn.Module, conv2: nn.Module, concat: bool) -> None:
        super().__init__({'conv1': conv1, 'conv2': conv2})
        self.concat = bool(concat)

    def forward(self, x: torch.Tensor, rem: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        if x.shape[-2:] != rem.shape[-2:]:
            x = F.interpolate(x, size=rem.shape[-2:], mode='bilinear')
        x = torch.cat((x, rem), 1) if self.concat else x + rem
        return self.conv2(x)


class EdgeNextConvEncoder(NamedLayers):
    """Official ``EdgeNextConvEncoder``: depth-wise conv, norm, pointwise MLP, layer scale.

    ``x + gamma * pwconv2(act(pwconv1(norm(dwconv(x)))))`` (the MLP acts per pixel on the
    channel axis; the norm acts on the channels-first map).
    """

    def __init__(self, layers: Mapping[str, nn.Module], gamma_channels: int | None) -> None:
        super().__init__(layers)
        self.gamma = (nn.Parameter(torch.zeros(gamma_channels))
                      if gamma_channels is not None else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(self.dwconv(x)).permute(0, 2, 3, 1)
        y = self.pwconv2(self.act(self.pwconv1(y)))
        if self.gamma is not None:
            y = self.gamma * y
        return x + y.permute(0, 3, 1, 2)


class EdgeNeXtConvBlock(NamedLayers):
    """timm ``edgenext.ConvBlock`` with given layers (possibly pruned MLP widths).

    ``x + gamma * mlp(norm(conv_dw(x)))``, the norm and MLP acting per pixel on the channels.
    """

    def __init__(self, layers: Mapping[str, nn.Module], gamma_channels: int) -> None:
        super().__init__(layers)
        self.gamma = nn.Parameter(torch.zeros(gamma_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv_dw(x).permute(0, 2, 3, 1)
        y = self.gamma * self.mlp(self.norm(y))
        return x + y.permute(0, 3, 1, 2)


class ForwardHelper(nn.Module):
    """Official ``ForwardHelper``: ``layers`` in order, FeatureAtt layers get the features."""

    def __init__(self, layers: nn.ModuleList) -> None:
        super().__init__()
        self.layers = layers

    def forward(self, x: torch.Tensor, feat: torch.Tensor | None = None) -> torch.Tensor:
        return run_layers(self.layers, x, feat)


class PostForwardHelper(nn.Module):
    """Official ``PostForwardHelper``: decoder step of a NAS-searched hourglass.

    ``forward(skip, coarse, feat)``: ``upsample(coarse)`` merged with ``skip`` by ``op``
    ('sum', or 'concat' as ``[upsampled, skip]``), then the ``out`` layers.
    """

    OPS = ('sum', 'concat')

    def __init__(self, upsample: nn.Sequential, op: str, out: nn.ModuleList) -> None:
        super().__init__()
        if op not in self.OPS:
            raise ValueError(f'PostForwardHelper op must be one of {self.OPS}, got {op!r}')
        self.upsample = upsample
        self.op = op
        self.out = out

    def forward(self, skip: torch.Tensor, coarse: torch.Tensor,
                feat: torch.Tensor | None = None) -> torch.Tensor:
        up = self.upsample(coarse)
        x = up + skip if self.op == 'sum' else torch.cat((up, skip), dim=1)
        return run_layers(self.out, x, feat)


class ContextHeads(nn.Module):
    """Official ``ContextNetSharedBackbone``: convolution heads on the 1/4 feature map.

    Returns ``[[head(x4) for head in conv04]]`` (one resolution level): head 0 is the raw
    GRU hidden state, head 1 the raw context.
    """

    def __init__(self, conv04: nn.ModuleList) -> None:
        super().__init__()
        self.conv04 = conv04

    def forward(self, x4: torch.Tensor) -> list[list[torch.Tensor]]:
        return [[head(x4) for head in self.conv04]]


class UpdateBlock(NamedLayers):
    """Official FFS ``BasicSelectiveMultiUpdateBlock``: one GRU level at 1/4 resolution.

    ``motion = encoder(disp, geo)``; ``h = gru04(att, h, cat(inp, motion))``; returns the new
    hidden state list, ``0.25 * mask(h)`` (upsampling features) and ``disp_head(h)``.
    """

    def forward(self, net: Sequence[torch.Tensor], inp: Sequence[torch.Tensor],
                geo_feat: torch.Tensor, disp: torch.Tensor, att: Sequence[torch.Tensor],
                ) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        motion = self.encoder(disp, geo_feat)
        hidden = self.gru04(att[0], net[0], torch.cat([inp[0], motion], dim=1))
        # The 0.25 balances gradients in training (upstream); the upsampler expects it.
        return [hidden], 0.25 * self.mask(hidden), self.disp_head(hidden)

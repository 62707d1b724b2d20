"""Generic convolution building blocks shared by the FoundationStereo sub-networks.

Constructor arguments and sub-module attribute names follow the official
``core/submodule.py`` / ``core/extractor.py`` because the state-dict keys (and their order)
of released checkpoints depend on them. Activations, norms without parameters and other
parameter-free pieces are free to differ and are written functionally here.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    'BasicConv',
    'BasicConvIN',
    'Conv2x',
    'Conv2xIN',
    'Conv3dNormActReduced',
    'LayerNorm2d',
    'Mlp',
    'ResidualBlock',
    'ResnetBasicBlock',
    'ResnetBasicBlock3D',
]

# nn.LeakyReLU() default slope, used after every BasicConv / BasicConvIN.
LEAKY_SLOPE = 0.01


def _conv_class(is_3d: bool, deconv: bool) -> type[nn.Module]:
    if is_3d:
        return nn.ConvTranspose3d if deconv else nn.Conv3d
    return nn.ConvTranspose2d if deconv else nn.Conv2d


def _resize_like(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Resize ``x`` spatially to ``ref`` (only needed when a side is not a multiple of 32)."""
    if x.shape[2:] == ref.shape[2:]:
        return x
    mode = 'trilinear' if x.dim() == 5 else 'bilinear'
    return F.interpolate(x, size=ref.shape[2:], mode=mode, align_corners=False)


def _upsample_geometry(deconv: bool, is_3d: bool, keep_dispc: bool) -> dict[str, Any]:
    """Kernel/stride/padding of the first conv of Conv2x / Conv2xIN (x2 up or down)."""
    if deconv and is_3d and keep_dispc:
        # Upsample H and W only; the disparity axis keeps its size.
        return {'kernel_size': (1, 4, 4), 'stride': (1, 2, 2), 'padding': (0, 1, 1)}
    if deconv:
        kernel: Any = (4, 4, 4) if is_3d else 4
    else:
        kernel = 3
    return {'kernel_size': kernel, 'stride': 2, 'padding': 1}


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channel axis of a channels-first (N, C, H, W) tensor."""

    def __init__(self, normalized_shape: int, eps: float = 1e-6) -> None:
        super().__init__(normalized_shape, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias,
                         self.eps)
        return y.permute(0, 3, 1, 2).contiguous()


class Mlp(nn.Module):
    """Two-layer perceptron on the last axis: ``fc1`` -> GELU (exact erf form) -> ``fc2``."""

    def __init__(self, in_features: int, hidden_features: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.fc2 = nn.Linear(hidden_features, in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class BasicConv(nn.Module):
    """Conv (2d/3d, optionally transposed, no bias) -> optional norm -> optional LeakyReLU.

    ``norm`` is 'batch' (learned BatchNorm) or 'instance' (InstanceNorm without parameters);
    ``bn=False`` skips the norm. Remaining keyword arguments go to the convolution
    (``kernel_size``, ``stride``, ``padding``, ``dilation``, ...).
    """

    def __init__(self, in_channels: int, out_channels: int, deconv: bool = False,
                 is_3d: bool = False, bn: bool = True, relu: bool = True, norm: str = 'batch',
                 **kwargs: Any) -> None:
        super().__init__()
        if norm not in ('batch', 'instance'):
            raise ValueError(f"BasicConv: norm must be 'batch' or 'instance', got {norm!r}")
        self.relu = relu
        # 'bn' is registered before 'conv': the official state-dict order lists bn.* first.
        if not bn:
            self.bn: nn.Module = nn.Identity()
        elif norm == 'batch':
            self.bn = nn.BatchNorm3d(out_channels) if is_3d else nn.BatchNorm2d(out_channels)
        else:
            self.bn = nn.InstanceNorm3d(out_channels) if is_3d else nn.InstanceNorm2d(out_channels)
        self.conv = _conv_class(is_3d, deconv)(in_channels, out_channels, bias=False, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return F.leaky_relu(x, LEAKY_SLOPE) if self.relu else x


class BasicConvIN(nn.Module):
    """Conv (2d/3d, optionally transposed, no bias) -> InstanceNorm -> LeakyReLU.

    Official ``BasicConv_IN``; ``IN=False`` / ``relu=False`` skip the norm / activation.
    """

    def __init__(self, in_channels: int, out_channels: int, deconv: bool = False,
                 is_3d: bool = False, IN: bool = True, relu: bool = True,
                 **kwargs: Any) -> None:
        super().__init__()
        self.relu = relu
        self.use_in = IN
        self.conv = _conv_class(is_3d, deconv)(in_channels, out_channels, bias=False, **kwargs)
        self.IN = nn.InstanceNorm3d(out_channels) if is_3d else nn.InstanceNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.use_in:
            x = self.IN(x)
        return F.leaky_relu(x, LEAKY_SLOPE) if self.relu else x


class Conv3dNormActReduced(nn.Module):
    """Separable 3D conv: (1,k,k) spatial conv, then (kd,1,1) disparity conv, each norm + ReLU.

    Input (B, C, D, H, W); ``stride`` applies to H/W in the first conv and to D in the second.
    """

    def __init__(self, C_in: int, C_out: int, hidden: int | None = None,
                 kernel_size: int = 3, kernel_disp: int | None = None, stride: int = 1,
                 norm: Callable[[int], nn.Module] = nn.BatchNorm3d) -> None:
        super().__init__()
        kernel_disp = kernel_size if kernel_disp is None else kernel_disp
        hidden = C_out if hidden is None else hidden
        self.conv1 = nn.Sequential(
            nn.Conv3d(C_in, hidden, kernel_size=(1, kernel_size, kernel_size),
                      padding=(0, kernel_size // 2, kernel_size // 2), stride=(1, stride, stride)),
            norm(hidden),
            nn.ReLU(),
        )
        self.conv2 = nn.Sequential(
            nn.Conv3d(hidden, C_out, kernel_size=(kernel_disp, 1, 1),
                      padding=(kernel_disp // 2, 0, 0), stride=(stride, 1, 1)),
            norm(C_out),
            nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(x))


class _ResnetBasicBlockNd(nn.Module):
    """conv-norm-relu-conv-norm plus identity (or ``downsample(x)``), then ReLU."""

    _conv: type[nn.Module] = nn.Conv2d

    def __init__(self, inplanes: int, planes: int, kernel_size: int = 3, stride: int = 1,
                 padding: int = 1, downsample: nn.Module | None = None, groups: int = 1,
                 base_width: int = 64, dilation: int = 1,
                 norm_layer: Callable[[int], nn.Module] | None = None,
                 bias: bool = False) -> None:
        super().__init__()
        if groups != 1 or base_width != 64:
            raise ValueError(f'{type(self).__name__} supports only groups=1 and base_width=64')
        if dilation > 1:
            raise NotImplementedError(f'{type(self).__name__} does not support dilation > 1')
        self.norm_layer = norm_layer
        # Both convolutions use `stride` (as the official block does; only stride 1 is used).
        self.conv1 = self._conv(inplanes, planes, kernel_size=kernel_size, stride=stride,
                                bias=bias, padding=padding)
        if norm_layer is not None:
            self.bn1 = norm_layer(planes)
        self.conv2 = self._conv(planes, planes, kernel_size=kernel_size, stride=stride,
                                bias=bias, padding=padding)
        if norm_layer is not None:
            self.bn2 = norm_layer(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(x)
        if self.norm_layer is not None:
            out = self.bn1(out)
        out = F.relu(out)
        out = self.conv2(out)
        if self.norm_layer is not None:
            out = self.bn2(out)
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity)


class ResnetBasicBlock(_ResnetBasicBlockNd):
    """2D ResNet basic block (default norm: BatchNorm2d)."""

    _conv = nn.Conv2d

    def __init__(self, inplanes: int, planes: int, kernel_size: int = 3, stride: int = 1,
                 padding: int = 1, downsample: nn.Module | None = None, groups: int = 1,
                 base_width: int = 64, dilation: int = 1,
                 norm_layer: Callable[[int], nn.Module] | None = nn.BatchNorm2d,
                 bias: bool = False) -> None:
        super().__init__(inplanes, planes, kernel_size, stride, padding, downsample, groups,
                         base_width, dilation, norm_layer, bias)


class ResnetBasicBlock3D(_ResnetBasicBlockNd):
    """3D ResNet basic block (default norm: BatchNorm3d)."""

    _conv = nn.Conv3d

    def __init__(self, inplanes: int, planes: int, kernel_size: int = 3, stride: int = 1,
                 padding: int = 1, downsample: nn.Module | None = None, groups: int = 1,
                 base_width: int = 64, dilation: int = 1,
                 norm_layer: Callable[[int], nn.Module] | None = nn.BatchNorm3d,
                 bias: bool = False) -> None:
        super().__init__(inplanes, planes, kernel_size, stride, padding, downsample, groups,
                         base_width, dilation, norm_layer, bias)


def _residual_norm(norm_fn: str, planes: int) -> nn.Module:
    if norm_fn == 'group':
        return nn.GroupNorm(num_groups=planes // 8, num_channels=planes)
    if norm_fn == 'batch':
        return nn.BatchNorm2d(planes)
    if norm_fn == 'instance':
        return nn.InstanceNorm2d(planes)
    if norm_fn == 'layer':
        return LayerNorm2d(planes)
    if norm_fn == 'none':
        return nn.Sequential()
    raise ValueError(f"ResidualBlock: norm_fn must be one of 'group', 'batch', 'instance', "
                     f"'layer', 'none'; got {norm_fn!r}")


class ResidualBlock(nn.Module):
    """RAFT-style residual block (official ``core/extractor.py``): two 3x3 convs with bias.

    When the shape changes (``stride != 1`` or ``in_planes != planes``) the shortcut is a
    1x1 conv + ``norm3``; ``norm3`` is the same module as ``downsample[1]`` so that both
    state-dict entries exist, as in official checkpoints.
    """

    def __init__(self, in_planes: int, planes: int, norm_fn: str = 'group',
                 stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, padding=1, stride=stride)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, padding=1)
        self.norm1 = _residual_norm(norm_fn, planes)
        self.norm2 = _residual_norm(norm_fn, planes)
        if stride == 1 and in_planes == planes:
            self.downsample: nn.Module | None = None
        else:
            self.norm3 = _residual_norm(norm_fn, planes)
            self.downsample = nn.Sequential(
                nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride), self.norm3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.norm1(self.conv1(x)))
        y = F.relu(self.norm2(self.conv2(y)))
        if self.downsample is not None:
            x = self.downsample(x)
        return F.relu(x + y)


class Conv2x(nn.Module):
    """x2 resampling (strided conv or deconv) of ``x``, then merge with the skip ``rem``.

    The merge concatenates (``concat=True``; output ``2*out_channels`` channels when
    ``keep_concat``, else ``out_channels``) or adds, followed by a 3x3 BasicConv.
    """

    def __init__(self, in_channels: int, out_channels: int, deconv: bool = False,
                 is_3d: bool = False, concat: bool = True, keep_concat: bool = True,
                 bn: bool = True, relu: bool = True, keep_dispc: bool = False) -> None:
        super().__init__()
        self.concat = concat
        self.conv1 = BasicConv(in_channels, out_channels, deconv, is_3d, bn=bn, relu=True,
                               **_upsample_geometry(deconv, is_3d, keep_dispc))
        if concat:
            mul = 2 if keep_concat else 1
            self.conv2 = BasicConv(out_channels * 2, out_channels * mul, False, is_3d, bn, relu,
                                   kernel_size=3, stride=1, padding=1)
        else:
            self.conv2 = BasicConv(out_channels, out_channels, False, is_3d, bn, relu,
                                   kernel_size=3, stride=1, padding=1)

    def forward(self, x: torch.Tensor, rem: torch.Tensor) -> torch.Tensor:
        x = _resize_like(self.conv1(x), rem)
        x = torch.cat((x, rem), 1) if self.concat else x + rem
        return self.conv2(x)


class Conv2xIN(nn.Module):
    """Instance-norm variant of :class:`Conv2x` (official ``Conv2x_IN``).

    With ``concat=True`` the merge is followed by a 2D ResNet basic block with
    InstanceNorm (as in the official code, also for ``is_3d``).
    """

    def __init__(self, in_channels: int, out_channels: int, deconv: bool = False,
                 is_3d: bool = False, concat: bool = True, keep_concat: bool = True,
                 IN: bool = True, relu: bool = True,
                 keep_dispc: bool = False) -> None:
        super().__init__()
        if concat and not keep_concat:
            raise ValueError('Conv2xIN: keep_concat=False is unsupported with concat=True '
                             '(the residual block needs equal input and output channels)')
        self.concat = concat
        self.conv1 = BasicConvIN(in_channels, out_channels, deconv, is_3d, IN=True, relu=True,
                                 **_upsample_geometry(deconv, is_3d, keep_dispc))
        if concat:
            self.conv2: nn.Module = ResnetBasicBlock(
                out_channels * 2, out_channels * 2, kernel_size=3, stride=1, padding=1,
                norm_layer=nn.InstanceNorm2d)
        else:
            self.conv2 = BasicConvIN(out_channels, out_channels, False, is_3d, IN, relu,
                                     kernel_size=3, stride=1, padding=1)

    def forward(self, x: torch.Tensor, rem: torch.Tensor) -> torch.Tensor:
        x = _resize_like(self.conv1(x), rem)
        x = torch.cat((x, rem), 1) if self.concat else x + rem
        return self.conv2(x)

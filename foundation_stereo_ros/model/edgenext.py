"""EdgeNeXt backbone (Maaz et al. 2022), the CNN branch of FoundationStereo's feature network.

FoundationStereo takes the stem and the four stages of timm's ``edgenext_small`` (channels
48/96/160/304 at strides 4/8/16/32) and nothing else (no head). This is an independent,
inference-only implementation of that path; module and parameter names follow timm's
EdgeNeXt (Apache-2.0) so that FoundationStereo checkpoints load unchanged. Stochastic depth,
dropout, the classifier head and unused block variants are left out.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .layers import LayerNorm2d, Mlp

__all__ = ['ConvBlock', 'EdgeNeXt', 'edgenext_small', 'stage_outputs']

LAYER_SCALE_INIT = 1e-6


class ConvBlock(nn.Module):
    """Depth-wise kxk conv, optional LayerNorm, inverted-bottleneck MLP, layer scale.

    ``x + gamma * MLP(norm(dwconv(x)))``, the norm and MLP acting per pixel on channels.
    Two checkpoints use this block under different parameter names, chosen by ``names``:
    ``'timm'`` (EdgeNeXt backbone: ``conv_dw``, ``norm``, ``mlp.fc1``, ``mlp.fc2``) and
    ``'flat'`` (FoundationStereo's disparity head: ``dwconv``, ``pwconv1``, ``pwconv2``).
    """

    def __init__(self, dim: int, kernel_size: int, expand_ratio: int = 4, norm: bool = True,
                 names: str = 'timm') -> None:
        super().__init__()
        if names not in ('timm', 'flat'):
            raise ValueError(f"ConvBlock: names must be 'timm' or 'flat', got {names!r}")
        self.gamma = nn.Parameter(torch.full((dim,), LAYER_SCALE_INIT))
        conv = nn.Conv2d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        mlp = Mlp(dim, expand_ratio * dim)
        if names == 'timm':
            self.conv_dw = conv
        else:
            self.dwconv = conv
        self.norm = nn.LayerNorm(dim, eps=1e-6) if norm else nn.Identity()
        if names == 'timm':
            self.mlp = mlp
        else:
            self.pwconv1, self.pwconv2 = mlp.fc1, mlp.fc2
        # The same modules, held outside the registry so that forward needs no name switch
        # (they are shared objects, so .to() and load_state_dict reach them).
        self.__dict__['_parts'] = (conv, mlp)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv, mlp = self._parts
        y = conv(x).permute(0, 2, 3, 1)
        y = self.gamma * mlp(self.norm(y))
        return x + y.permute(0, 3, 1, 2)


class FourierPositionalEncoding(nn.Module):
    """Sine/cosine encoding of normalized (y, x) pixel positions, projected by a 1x1 conv."""

    def __init__(self, dim: int, hidden_dim: int = 32, temperature: float = 10000.0) -> None:
        super().__init__()
        self.token_projection = nn.Conv2d(hidden_dim * 2, dim, kernel_size=1)
        self.hidden_dim = hidden_dim
        self.temperature = temperature

    def _encode(self, length: int, device: torch.device) -> torch.Tensor:
        """(length, hidden_dim) features [sin(a_0), cos(a_0), sin(a_1), ...] of positions."""
        pos = torch.arange(1, length + 1, dtype=torch.float32, device=device)
        # Positions 1..n scaled to (0, 2*pi]; the epsilon is part of the trained model.
        pos = pos / (pos[-1:] + 1e-6) * (2 * math.pi)
        freq = torch.arange(self.hidden_dim, dtype=torch.float32, device=device)
        freq = self.temperature ** (2 * torch.div(freq, 2, rounding_mode='floor')
                                    / self.hidden_dim)
        angles = pos[:, None] / freq
        return torch.stack((angles[:, 0::2].sin(), angles[:, 1::2].cos()), dim=2).flatten(1)

    def forward(self, height: int, width: int) -> torch.Tensor:
        """Encode a height x width grid as (1, dim, height, width)."""
        weight = self.token_projection.weight
        enc_y = self._encode(height, weight.device)[:, None, :].expand(height, width, -1)
        enc_x = self._encode(width, weight.device)[None, :, :].expand(height, width, -1)
        pos = torch.cat((enc_y, enc_x), dim=2).permute(2, 0, 1).unsqueeze(0)
        return self.token_projection(pos.to(weight.dtype))


class CrossCovarianceAttention(nn.Module):
    """XCA: attention across channels (head_dim x head_dim maps) instead of across tokens.

    Queries and keys are L2-normalized along the tokens; a learned per-head temperature
    scales the logits.
    """

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, dim // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 4, 1).unbind(0)  # each (B, heads, head_dim, N)
        attn = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)
        attn = (attn * self.temperature).softmax(dim=-1)
        y = (attn @ v).permute(0, 3, 1, 2).reshape(batch, tokens, dim)
        return self.proj(y)


class SplitTransposeBlock(nn.Module):
    """Split depth-wise transpose attention (SDTA) block.

    Channels are split into ``num_scales`` groups (torch.chunk sizes); all but the last go
    through a chain of depth-wise 3x3 convs, each group adding the previous group's output
    (Res2Net style). Then optional positional encoding, XCA and an MLP, each on channel-last
    tokens with layer scale.
    """

    def __init__(self, dim: int, num_scales: int, num_heads: int, expand_ratio: int = 4,
                 use_pos_emb: bool = False) -> None:
        super().__init__()
        if num_scales < 2:
            raise ValueError('SplitTransposeBlock needs num_scales >= 2')
        width = math.ceil(dim / num_scales)
        self.gamma_xca = nn.Parameter(torch.full((dim,), LAYER_SCALE_INIT))
        self.gamma = nn.Parameter(torch.full((dim,), LAYER_SCALE_INIT))
        self.convs = nn.ModuleList(
            nn.Conv2d(width, width, kernel_size=3, padding=1, groups=width)
            for _ in range(num_scales - 1))
        self.pos_embd = FourierPositionalEncoding(dim) if use_pos_emb else None
        self.norm_xca = nn.LayerNorm(dim, eps=1e-6)
        self.xca = CrossCovarianceAttention(dim, num_heads)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, expand_ratio * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        groups = x.chunk(len(self.convs) + 1, dim=1)
        outputs = []
        for index, conv in enumerate(self.convs):
            group = groups[0] if index == 0 else outputs[-1] + groups[index]
            outputs.append(conv(group))
        outputs.append(groups[-1])
        tokens = torch.cat(outputs, dim=1).flatten(2).transpose(1, 2)  # (B, HW, C)
        if self.pos_embd is not None:
            tokens = tokens + self.pos_embd(height, width).flatten(2).transpose(1, 2)
        tokens = tokens + self.gamma_xca * self.xca(self.norm_xca(tokens))
        tokens = self.gamma * self.mlp(self.norm(tokens))
        return x + tokens.transpose(1, 2).reshape(batch, channels, height, width)


class EdgeNeXtStage(nn.Module):
    """Optional 2x2/2 downsampling (LayerNorm + conv), conv blocks, then global SDTA blocks."""

    def __init__(self, in_chs: int, out_chs: int, depth: int, num_global_blocks: int,
                 kernel_size: int, num_heads: int, num_scales: int, use_pos_emb: bool,
                 downsample: bool, expand_ratio: int = 4) -> None:
        super().__init__()
        if downsample:
            self.downsample: nn.Module = nn.Sequential(
                LayerNorm2d(in_chs), nn.Conv2d(in_chs, out_chs, kernel_size=2, stride=2))
        elif in_chs != out_chs:
            raise ValueError('an EdgeNeXt stage without downsampling keeps its channel count')
        else:
            self.downsample = nn.Identity()
        blocks: list[nn.Module] = [ConvBlock(out_chs, kernel_size, expand_ratio)
                                   for _ in range(depth - num_global_blocks)]
        blocks += [SplitTransposeBlock(out_chs, num_scales, num_heads, expand_ratio, use_pos_emb)
                   for _ in range(num_global_blocks)]
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.downsample(x))


class EdgeNeXt(nn.Module):
    """EdgeNeXt feature pyramid: ``forward`` returns the outputs of the four stages."""

    def __init__(self, dims: Sequence[int] = (48, 96, 160, 304),
                 depths: Sequence[int] = (3, 3, 9, 3),
                 global_block_counts: Sequence[int] = (0, 1, 1, 1),
                 kernel_sizes: Sequence[int] = (3, 5, 7, 9),
                 heads: Sequence[int] = (8, 8, 8, 8),
                 d2_scales: Sequence[int] = (2, 2, 3, 4),
                 use_pos_emb: Sequence[bool] = (False, True, False, False),
                 expand_ratio: int = 4) -> None:
        super().__init__()
        self.dims = list(dims)
        # 'patch' stem: 4x4/4 conv + LayerNorm; stage 0 keeps stride 4, later stages halve.
        self.stem = nn.Sequential(nn.Conv2d(3, dims[0], kernel_size=4, stride=4),
                                  LayerNorm2d(dims[0]))
        self.stages = nn.Sequential(*(
            EdgeNeXtStage(dims[max(i - 1, 0)], dims[i], depths[i], global_block_counts[i],
                          kernel_sizes[i], heads[i], d2_scales[i], use_pos_emb[i],
                          downsample=i > 0, expand_ratio=expand_ratio)
            for i in range(4)))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return stage_outputs(self.stem, self.stages, x)


def stage_outputs(stem: nn.Module, stages: nn.Sequential, x: torch.Tensor) -> list[torch.Tensor]:
    """Run the stem and stages, returning each stage's output (strides 4, 8, 16, 32)."""
    x = stem(x)
    outputs = []
    for stage in stages:
        x = stage(x)
        outputs.append(x)
    return outputs


def edgenext_small() -> EdgeNeXt:
    """Build timm's ``edgenext_small`` without head: channels 48/96/160/304, depths 3/3/9/3."""
    return EdgeNeXt()

"""Transformer over the disparity axis of a cost volume (FoundationStereo's hourglass).

Every pixel of a (B, C, D, H, W) volume becomes a sequence of D tokens of width C; a few
post-norm transformer encoder layers mix information across disparities.

Attention semantics: the released checkpoints were trained with flash-attention over the
disparity tokens (full, non-causal, per head). Upstream code after June 2025 calls
``scaled_dot_product_attention`` on (batch, tokens, heads, head_dim) tensors, which attends
across the heads instead. ``ATTEND_DISPARITY`` (default) reproduces the former,
``ATTEND_HEADS`` the latter for comparison with that code.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    'ATTEND_DISPARITY',
    'ATTEND_HEADS',
    'ATTENTION_MODES',
    'CostVolumeDisparityAttention',
    'DisparityMultiheadAttention',
    'DisparityTransformerLayer',
    'sinusoidal_embedding',
]

ATTEND_DISPARITY = 'disparity'
ATTEND_HEADS = 'heads'
ATTENTION_MODES = (ATTEND_DISPARITY, ATTEND_HEADS)


def _check_mode(attention: str) -> str:
    if attention not in ATTENTION_MODES:
        raise ValueError(f'attention must be one of {ATTENTION_MODES}, got {attention!r}')
    return attention


def sinusoidal_embedding(length: int, d_model: int, device: torch.device | None = None,
                         dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Return the Transformer sine/cosine position table, (1, length, d_model).

    Even channels ``2i`` hold ``sin(p * w_i)``, odd channels ``2i+1`` hold ``cos(p * w_i)``
    with ``w_i = 10000 ** (-2i / d_model)``. Computed in float32 (matching the reference
    table bit for bit) and cast to ``dtype``.
    """
    position = torch.arange(length, dtype=torch.float32, device=device).unsqueeze(1)
    freq = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32, device=device)
                     * (-math.log(10000.0) / d_model))
    angle = position * freq                                   # (length, ceil(d_model/2))
    table = torch.stack([angle.sin(), angle.cos()], dim=-1).flatten(1)[:, :d_model]
    return table.unsqueeze(0).to(dtype)


class DisparityMultiheadAttention(nn.Module):
    """Multi-head self-attention with separate q/k/v/out projections (official key names)."""

    def __init__(self, embed_dim: int, num_heads: int, attention: str = ATTEND_DISPARITY):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f'embed_dim {embed_dim} is not divisible by num_heads {num_heads}')
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.attention = _check_mode(attention)
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.k_proj = nn.Linear(embed_dim, embed_dim)
        self.v_proj = nn.Linear(embed_dim, embed_dim)
        self.out_proj = nn.Linear(embed_dim, embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, L, C) -> (N, L, C)."""
        n, length, _ = x.shape
        split = (n, length, self.num_heads, self.head_dim)
        q = self.q_proj(x).view(split)
        k = self.k_proj(x).view(split)
        v = self.v_proj(x).view(split)
        if self.attention == ATTEND_DISPARITY:
            # (N, heads, L, head_dim): each head attends over the L tokens.
            out = F.scaled_dot_product_attention(
                q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)).transpose(1, 2)
        else:
            # Literal upstream call: the heads axis plays the role of the sequence.
            out = F.scaled_dot_product_attention(q, k, v)
        return self.out_proj(out.reshape(n, length, self.embed_dim))


class DisparityTransformerLayer(nn.Module):
    """Post-norm encoder layer: x = norm1(x + attn(x)); x = norm2(x + ffn(x))."""

    def __init__(self, embed_dim: int, num_heads: int, dim_feedforward: int,
                 dropout: float = 0.1, attention: str = ATTEND_DISPARITY):
        super().__init__()
        self.self_attn = DisparityMultiheadAttention(embed_dim, num_heads, attention)
        self.act = nn.GELU()
        self.linear1 = nn.Linear(embed_dim, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, embed_dim)
        self.norm1 = nn.LayerNorm(embed_dim)
        self.norm2 = nn.LayerNorm(embed_dim)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, L, C) -> (N, L, C)."""
        x = self.norm1(x + self.dropout1(self.self_attn(x)))
        ffn = self.linear2(self.dropout(self.act(self.linear1(x))))
        return self.norm2(x + self.dropout2(ffn))


class CostVolumeDisparityAttention(nn.Module):
    """Stack of transformer layers along the disparity axis of a cost volume.

    Args:
        d_model: channels C of the volume (token width).
        nhead: attention heads.
        dim_feedforward: hidden width of the feed-forward block.
        dropout: dropout rate (training only).
        num_transformer: number of encoder layers (state-dict ``sa.<i>``).
        max_len: longest disparity axis the position table covers.
        resize_embed: if True, longer axes get the table linearly resampled instead of an
            error.
        attention: ``ATTEND_DISPARITY`` (flash-attention semantics, default) or
            ``ATTEND_HEADS`` (literal upstream HEAD call).
    """

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int, dropout: float = 0.1,
                 num_transformer: int = 6, max_len: int = 512, resize_embed: bool = False,
                 attention: str = ATTEND_DISPARITY):
        super().__init__()
        self.d_model = d_model
        self.max_len = max_len
        self.resize_embed = resize_embed
        self.attention = _check_mode(attention)
        self.sa = nn.ModuleList(
            DisparityTransformerLayer(d_model, nhead, dim_feedforward, dropout, attention)
            for _ in range(num_transformer))

    def position_embedding(self, length: int, device: torch.device,
                           dtype: torch.dtype) -> torch.Tensor:
        """(1, length, d_model) position table for a disparity axis of ``length`` bins."""
        if length <= self.max_len:
            return sinusoidal_embedding(length, self.d_model, device, dtype)
        if not self.resize_embed:
            raise ValueError(
                f'disparity axis of {length} bins exceeds max_len={self.max_len} of the '
                'position embedding; lower max_disp or build with resize_embed=True')
        table = sinusoidal_embedding(self.max_len, self.d_model, device, torch.float32)
        table = F.interpolate(table.transpose(1, 2), size=length, mode='linear',
                              align_corners=False).transpose(1, 2)
        return table.to(dtype)

    def forward(self, cv: torch.Tensor) -> torch.Tensor:
        """cv: (B, C, D, H, W) -> (B, C, D, H, W)."""
        b, c, d, h, w = cv.shape
        x = cv.permute(0, 3, 4, 2, 1).reshape(b * h * w, d, c)
        x = x + self.position_embedding(d, x.device, x.dtype)
        for layer in self.sa:
            x = layer(x)
        return x.view(b, h, w, d, c).permute(0, 4, 3, 1, 2)

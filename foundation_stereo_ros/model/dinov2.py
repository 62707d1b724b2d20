"""DINOv2 vision transformer (ViT-S/B/L with 14x14 patches), the encoder of Depth Anything.

Matches the torch-hub ``dinov2_vit{s,b,l}14`` models that FoundationStereo builds: image size
518 (a 37x37 grid of learned position embeddings), LayerScale on both residual branches,
LayerNorm eps 1e-6, no register tokens, and bicubic interpolation of the position embeddings
to other grid sizes with the historical +0.1 offset in the scale factor. Parameter names
follow the hub models so that FoundationStereo checkpoints load unchanged. Inference only
(no masking, no stochastic depth).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .layers import Mlp

__all__ = ['VIT_CONFIGS', 'DinoVisionTransformer']

# embed_dim, depth, num_heads of the three DINOv2 sizes FoundationStereo can use.
VIT_CONFIGS: dict[str, dict[str, int]] = {
    'vits': {'embed_dim': 384, 'depth': 12, 'num_heads': 6},
    'vitb': {'embed_dim': 768, 'depth': 12, 'num_heads': 12},
    'vitl': {'embed_dim': 1024, 'depth': 24, 'num_heads': 16},
}


class PatchEmbed(nn.Module):
    """Non-overlapping patch projection: (B, 3, H, W) -> (B, H/p * W/p, D), row-major tokens."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention with a fused qkv projection (PyTorch SDPA kernel)."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, dim // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, heads, N, head_dim)
        y = F.scaled_dot_product_attention(q, k, v)
        return self.proj(y.transpose(1, 2).reshape(batch, tokens, dim))


class LayerScale(nn.Module):
    """Learned per-channel scale of a residual branch."""

    def __init__(self, dim: int, init_value: float = 1.0) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), init_value))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Block(nn.Module):
    """Pre-norm transformer block: x + ls1(attn(norm1(x))), then x + ls2(mlp(norm2(x)))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: int = 4) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, dim * mlp_ratio)
        self.ls2 = LayerScale(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class DinoVisionTransformer(nn.Module):
    """DINOv2 ViT returning normalized patch and class tokens of selected blocks.

    Args:
        embed_dim, depth, num_heads: transformer size (see :data:`VIT_CONFIGS`).
        patch_size: side of the square patches.
        img_size: training image size; fixes the learned position-embedding grid
            (``img_size // patch_size`` per side).
        interpolate_offset: added to the target grid size when computing the scale factor of
            the position-embedding interpolation (kept for checkpoint compatibility).
    """

    def __init__(self, embed_dim: int, depth: int, num_heads: int, patch_size: int = 14,
                 img_size: int = 518, interpolate_offset: float = 0.1) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.patch_size = patch_size
        self.pos_grid = img_size // patch_size
        self.interpolate_offset = interpolate_offset
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.pos_grid ** 2 + 1, embed_dim))
        # Masked-token embedding of DINOv2 training: unused here, kept for strict loading.
        self.mask_token = nn.Parameter(torch.zeros(1, embed_dim))
        self.patch_embed = PatchEmbed(patch_size, 3, embed_dim)
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)

    @classmethod
    def from_size(cls, vit_size: str) -> DinoVisionTransformer:
        """Build the ViT-S/B/L of the hub model ``dinov2_{vit_size}14``."""
        if vit_size not in VIT_CONFIGS:
            raise ValueError(f'unknown ViT size {vit_size!r}; use one of {sorted(VIT_CONFIGS)}')
        return cls(**VIT_CONFIGS[vit_size])

    def position_embedding(self, grid_h: int, grid_w: int) -> torch.Tensor:
        """Position embeddings (1, 1 + grid_h*grid_w, D) for a grid of patches.

        The learned grid is resized bicubically with ``scale_factor = (g + offset) / grid``,
        i.e. the sampling positions follow these factors rather than the size ratio.
        """
        # Plain ints: while tracing (ONNX export) shapes are tensors, which F.interpolate's
        # scale_factor does not accept; export is at a fixed size, so constants are right.
        grid_h, grid_w = int(grid_h), int(grid_w)
        m = self.pos_grid
        if (grid_h, grid_w) == (m, m):
            return self.pos_embed
        pos = self.pos_embed.float()
        patch_pos = pos[:, 1:].reshape(1, m, m, self.embed_dim).permute(0, 3, 1, 2)
        scale = ((grid_h + self.interpolate_offset) / m, (grid_w + self.interpolate_offset) / m)
        patch_pos = F.interpolate(patch_pos, scale_factor=scale, mode='bicubic',
                                  align_corners=False)
        if patch_pos.shape[-2:] != (grid_h, grid_w):
            raise RuntimeError(f'position-embedding interpolation gave {patch_pos.shape[-2:]}, '
                               f'expected {(grid_h, grid_w)}')
        patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, grid_h * grid_w, self.embed_dim)
        return torch.cat((pos[:, :1], patch_pos), dim=1).to(self.pos_embed.dtype)

    def prepare_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) image, H and W multiples of the patch size -> (B, 1 + N, D) tokens."""
        height, width = x.shape[-2:]
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(f'DINOv2 input {height}x{width} is not a multiple of the patch '
                             f'size {self.patch_size}; resize it first')
        tokens = self.patch_embed(x)
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)
        tokens = torch.cat((cls, tokens), dim=1)
        pos = self.position_embedding(height // self.patch_size, width // self.patch_size)
        return tokens + pos.to(tokens.dtype)

    def get_intermediate_layers(self, x: torch.Tensor, layers: Sequence[int]
                                ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Run the blocks and return ``(patch_tokens (B,N,D), class_token (B,D))`` per layer.

        ``layers`` are block indices (ascending); every output goes through the final norm.
        """
        wanted = sorted(set(layers))
        if not wanted or wanted[0] < 0 or wanted[-1] >= len(self.blocks):
            raise ValueError(f'layer indices {list(layers)} out of range '
                             f'0..{len(self.blocks) - 1}')
        x = self.prepare_tokens(x)
        taken: dict[int, torch.Tensor] = {}
        for index, block in enumerate(self.blocks[:wanted[-1] + 1]):
            x = block(x)
            if index in wanted:
                taken[index] = x
        outputs = []
        for index in layers:
            normed = self.norm(taken[index])
            outputs.append((normed[:, 1:], normed[:, 0]))
        return outputs

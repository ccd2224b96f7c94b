"""A small VisionTransformer with timm-compatible parameter names.

timm is not importable here, and SHARP only needs the plain pre-norm ViT with a class token and
LayerScale, so we build it ourselves; attribute names follow timm's `VisionTransformer` so the
official weights load strictly. The classifier `head` exists only for strict loading.

Attention: by default `F.scaled_dot_product_attention` (fast and memory-light in eager; the
torch 2.13 dynamo ONNX exporter decomposes it at opset 18). `fused_attention=False` gives the
explicit softmax path (timm's "exportable" path), which is numerically slightly different.
Checked on an H200 (tests/network/gpu_check.py): with SDPA, a strict load of a timm 1.0.29
`vit_large_patch16_384` state_dict gives bit-identical final and block-5/11 features; the
explicit path differs by ~2e-6 relative. Both export to the same ONNX ops (MatMul + Softmax).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mlsharp.presets import ViTConfig


class PatchEmbed(nn.Module):
    """Non-overlapping patch projection (timm `patch_embed.proj`)."""

    def __init__(self, patch_size_px: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size_px, stride=patch_size_px)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)  # (B, C, g, g)
        return x.flatten(2).transpose(1, 2)  # (B, g*g, C)


class Attention(nn.Module):
    """Multi-head self-attention with a fused qkv projection."""

    def __init__(self, dim: int, num_heads: int, fused_attention: bool) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.fused_attention = fused_attention
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (B, heads, N, head_dim)
        if self.fused_attention:
            x = F.scaled_dot_product_attention(q, k, v)
        else:
            attn = (q * self.scale) @ k.transpose(-2, -1)  # (B, heads, N, N)
            x = attn.softmax(dim=-1) @ v
        x = x.transpose(1, 2).reshape(b, n, c)
        out: torch.Tensor = self.proj(x)
        return out


class LayerScale(nn.Module):
    """Per-channel learnable residual scale (timm `ls*.gamma`)."""

    def __init__(self, dim: int, init_value: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), init_value))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Mlp(nn.Module):
    """Two-layer MLP with exact (erf) GELU."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.fc2(self.act(self.fc1(x)))
        return out


class Block(nn.Module):
    """Pre-norm transformer block with LayerScale on both residual branches."""

    def __init__(self, cfg: ViTConfig, fused_attention: bool) -> None:
        super().__init__()
        dim = cfg.embed_dim
        self.norm1 = nn.LayerNorm(dim, eps=cfg.norm_eps)
        self.attn = Attention(dim, cfg.num_heads, fused_attention)
        self.ls1 = LayerScale(dim, cfg.layer_scale_init)
        self.norm2 = nn.LayerNorm(dim, eps=cfg.norm_eps)
        self.mlp = Mlp(dim, int(dim * cfg.mlp_ratio))
        self.ls2 = LayerScale(dim, cfg.layer_scale_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        out: torch.Tensor = x + self.ls2(self.mlp(self.norm2(x)))
        return out


class VisionTransformer(nn.Module):
    """ViT returning NCHW token maps: the final normed map plus raw intermediate block outputs."""

    def __init__(self, cfg: ViTConfig, fused_attention: bool = True) -> None:
        super().__init__()
        self.cfg = cfg
        dim = cfg.embed_dim
        self.patch_embed = PatchEmbed(cfg.patch_size_px, 3, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.grid_size**2 + 1, dim))
        self.blocks = nn.ModuleList(Block(cfg, fused_attention) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(dim, eps=cfg.norm_eps)
        # unused at inference; kept so the official checkpoint loads strictly
        self.head = nn.Linear(dim, cfg.num_classes) if cfg.num_classes > 0 else nn.Identity()
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)

    def _to_map(self, tokens: torch.Tensor) -> torch.Tensor:
        """Drop the class token and reshape row-major to (B, C, g, g)."""
        g = self.cfg.grid_size
        x = tokens[:, 1:]  # (B, g*g, C)
        return x.reshape(x.shape[0], g, g, x.shape[-1]).permute(0, 3, 1, 2)

    def forward(
        self, x: torch.Tensor, intermediate_ids: tuple[int, ...] = ()
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """x: (B, 3, T, T) -> final (B, C, g, g) and one (B, C, g, g) per intermediate id."""
        tokens = self.patch_embed(x)  # (B, g*g, C)
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)
        tokens = torch.cat([cls, tokens], dim=1) + self.pos_embed  # pos added after the class token
        intermediates: list[torch.Tensor] = []
        for i, block in enumerate(self.blocks):
            tokens = block(tokens)
            if i in intermediate_ids:
                intermediates.append(self._to_map(tokens))  # before the final norm
        return self._to_map(self.norm(tokens)), intermediates

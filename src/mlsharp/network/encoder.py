"""Sliding pyramid network (Depth-Pro style): two ViTs over a 3-level image pyramid.

The full-resolution and half-resolution images are cut into overlapping ViT tiles, the
quarter-resolution image is one tile; all go through the patch encoder in one batch. The image
encoder sees the quarter-resolution image alone for global context. Outputs five feature maps,
finest first, at working/2, /4, /8, /16, /32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mlsharp.network.blocks import project_upsample
from mlsharp.network.tiling import merge_tiles, pyramid_grids, split_tiles
from mlsharp.network.vit import VisionTransformer
from mlsharp.presets import SharpConfig


class SlidingPyramidEncoder(nn.Module):
    """Image (B, 3, S, S) normalised to [-1, 1] -> five encodings (finest first)."""

    def __init__(self, config: SharpConfig, fused_attention: bool = True) -> None:
        super().__init__()
        vit = config.encoder.vit
        dims = config.encoder.dims_encoder
        dim_decoder = config.depth.decoder_dim
        embed = vit.embed_dim
        if config.working_size_px != 4 * vit.img_size_px:
            raise ValueError("the quarter-resolution image must be exactly one ViT tile")
        self.grids = pyramid_grids(
            config.working_size_px, vit.img_size_px, vit.patch_size_px, config.use_patch_overlap
        )
        self.hook_block_ids = tuple(config.encoder.hook_block_ids[:2])
        if max(self.hook_block_ids) >= vit.depth:
            raise ValueError("intermediate block ids must be < ViT depth")

        self.patch_encoder = VisionTransformer(vit, fused_attention)
        self.image_encoder = VisionTransformer(vit, fused_attention)
        self.upsample_latent0 = project_upsample(embed, dim_decoder, 3, dim_mid=dims[0])
        self.upsample_latent1 = project_upsample(embed, dims[0], 2)
        self.upsample0 = project_upsample(embed, dims[1], 1)
        self.upsample1 = project_upsample(embed, dims[2], 1)
        self.upsample2 = project_upsample(embed, dims[3], 1)
        self.upsample_lowres = nn.ConvTranspose2d(embed, dims[3], 2, 2, 0, bias=True)
        self.fuse_lowres = nn.Conv2d(2 * dims[3], dims[3], 1, bias=True)
        #: channel widths of the five encodings, finest first
        self.dims_out: tuple[int, ...] = (dim_decoder, *dims)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        grid0, grid1 = self.grids
        # pyramid: bilinear, align_corners=False, given as scale factors (reference behaviour)
        x1 = F.interpolate(x, scale_factor=0.5, mode="bilinear", align_corners=False)
        x2 = F.interpolate(x, scale_factor=0.25, mode="bilinear", align_corners=False)  # (B, 3, T, T)
        tiles = torch.cat([split_tiles(x, grid0), split_tiles(x1, grid1), x2], dim=0)  # (K*B, 3, T, T)

        final, (hook0, hook1) = self.patch_encoder(tiles, self.hook_block_ids)  # (K*B, E, g, g)
        n0, n1 = grid0.num_tiles, grid1.num_tiles
        latent0 = merge_tiles(_tile_range(hook0, n0 + n1 + 1, 0, n0), grid0)
        latent1 = merge_tiles(_tile_range(hook1, n0 + n1 + 1, 0, n0), grid0)
        feat0 = merge_tiles(_tile_range(final, n0 + n1 + 1, 0, n0), grid0)  # (B, E, S/16, S/16)
        feat1 = merge_tiles(_tile_range(final, n0 + n1 + 1, n0, n0 + n1), grid1)  # (B, E, S/32, S/32)
        feat2 = _tile_range(final, n0 + n1 + 1, n0 + n1, n0 + n1 + 1)  # (B, E, g, g)

        global_map, _ = self.image_encoder(x2)  # (B, E, g, g)
        lowres = torch.cat([self.upsample2(feat2), self.upsample_lowres(global_map)], dim=1)
        return [
            self.upsample_latent0(latent0),  # (B, D, S/2, S/2)
            self.upsample_latent1(latent1),  # (B, d0, S/4, S/4)
            self.upsample0(feat0),  # (B, d1, S/8, S/8)
            self.upsample1(feat1),  # (B, d2, S/16, S/16)
            self.fuse_lowres(lowres),  # (B, d3, S/32, S/32)
        ]


def _tile_range(maps: torch.Tensor, num_tiles: int, start: int, stop: int) -> torch.Tensor:
    """Tiles start..stop-1 of a tile-major (num_tiles*B, ...) batch, without naming B."""
    grouped = maps.reshape(num_tiles, -1, *maps.shape[1:])  # (K, B, C, g, g)
    return grouped[start:stop].reshape(-1, *maps.shape[1:])

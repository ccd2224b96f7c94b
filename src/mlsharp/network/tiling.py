"""Batch-agnostic tiling of the image pyramid into ViT tiles, and merging of the token maps.

The reference loops over tiles and slices the tile batch with Python ints derived from the batch
size, which bakes the batch into traced graphs. Here splitting is two `unfold`s and merging is a
reshape plus static crops, so the batch axis stays symbolic while the order is the reference one:
row-major over tile positions, tile-major over the batch (tile 0 of every image, then tile 1...).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class TileGrid:
    """Square tiling of one pyramid level."""

    size_px: int  # side of the image at this level
    tile_px: int  # side of one tile (the ViT input size)
    stride_px: int
    count: int  # tiles per side
    crop_tokens: int  # tokens removed at each interior tile edge when merging

    @property
    def num_tiles(self) -> int:
        return self.count * self.count

    def merged_tokens(self, grid_tokens: int) -> int:
        """Side of the merged token map."""
        return self.count * grid_tokens - 2 * self.crop_tokens * (self.count - 1)


def make_grid(size_px: int, tile_px: int, patch_px: int, overlap_ratio: float) -> TileGrid:
    """Tile geometry for one level; overlapping tiles share `overlap` pixels split evenly on merge."""
    stride_px = int(tile_px * (1.0 - overlap_ratio))
    count = math.ceil((size_px - tile_px) / stride_px) + 1 if size_px > tile_px else 1
    if (count - 1) * stride_px + tile_px != size_px:
        raise ValueError(
            f"{size_px} px is not covered exactly by {tile_px} px tiles at stride {stride_px} px"
        )
    overlap_tokens = (tile_px - stride_px) // patch_px
    return TileGrid(size_px, tile_px, stride_px, count, overlap_tokens // 2 if count > 1 else 0)


def pyramid_grids(
    working_size_px: int, tile_px: int, patch_px: int, use_patch_overlap: bool
) -> tuple[TileGrid, TileGrid]:
    """Grids of the full- and half-resolution levels (5x5 @288 and 3x3 @192 for 1536 px)."""
    ratios = (0.25, 0.5) if use_patch_overlap else (0.0, 0.0)
    return (
        make_grid(working_size_px, tile_px, patch_px, ratios[0]),
        make_grid(working_size_px // 2, tile_px, patch_px, ratios[1]),
    )


def split_tiles(image: torch.Tensor, grid: TileGrid) -> torch.Tensor:
    """(B, C, S, S) -> (n*n*B, C, T, T) in row-major, tile-major order."""
    c, t = image.shape[1], grid.tile_px
    tiles = image.unfold(2, t, grid.stride_px).unfold(3, t, grid.stride_px)  # (B, C, n, n, T, T)
    tiles = tiles.permute(2, 3, 0, 1, 4, 5)  # (n, n, B, C, T, T)
    return tiles.reshape(-1, c, t, t)


def merge_tiles(maps: torch.Tensor, grid: TileGrid) -> torch.Tensor:
    """(n*n*B, C, g, g) token maps -> (B, C, M, M), cropping `crop_tokens` at interior edges."""
    n, p = grid.count, grid.crop_tokens
    c, g = maps.shape[1], maps.shape[-1]
    maps = maps.reshape(n, n, -1, c, g, g)  # (n, n, B, C, g, g)
    rows = []
    for j in range(n):
        top, bottom = (p if j > 0 else 0), (g - p if j < n - 1 else g)
        cols = []
        for i in range(n):
            left, right = (p if i > 0 else 0), (g - p if i < n - 1 else g)
            cols.append(maps[j, i, :, :, top:bottom, left:right])
        rows.append(torch.cat(cols, dim=-1))
    return torch.cat(rows, dim=-2)

"""Unfold-based tiling must reproduce the reference loop order and crops exactly."""

from __future__ import annotations

import pytest
import torch

from mlsharp.network.tiling import TileGrid, make_grid, merge_tiles, pyramid_grids, split_tiles


def naive_split(image: torch.Tensor, grid: TileGrid) -> torch.Tensor:
    """Reference order: tile rows, tile columns (row-major), then every batch item per tile."""
    tiles = []
    for j in range(grid.count):
        for i in range(grid.count):
            y, x = j * grid.stride_px, i * grid.stride_px
            tiles.append(image[:, :, y : y + grid.tile_px, x : x + grid.tile_px])
    return torch.cat(tiles, dim=0)  # (n*n*B, C, T, T), tile-major


def naive_merge(maps: torch.Tensor, grid: TileGrid, batch: int) -> torch.Tensor:
    n, p = grid.count, grid.crop_tokens
    out = []
    for b in range(batch):
        rows = []
        for j in range(n):
            cols = []
            for i in range(n):
                tile = maps[(j * n + i) * batch + b]
                if j > 0:
                    tile = tile[:, p:, :]
                if j < n - 1:
                    tile = tile[:, : tile.shape[1] - p, :]
                if i > 0:
                    tile = tile[:, :, p:]
                if i < n - 1:
                    tile = tile[:, :, : tile.shape[2] - p]
                cols.append(tile)
            rows.append(torch.cat(cols, dim=2))
        out.append(torch.cat(rows, dim=1))
    return torch.stack(out)


def test_reference_geometry_1536():
    g0, g1 = pyramid_grids(1536, 384, 16, use_patch_overlap=True)
    assert (g0.count, g0.stride_px, g0.crop_tokens) == (5, 288, 3)
    assert (g1.count, g1.stride_px, g1.crop_tokens) == (3, 192, 6)
    assert (g0.merged_tokens(24), g1.merged_tokens(24)) == (96, 48)


def test_geometry_without_overlap_512():
    g0, g1 = pyramid_grids(512, 128, 16, use_patch_overlap=False)
    assert (g0.count, g0.stride_px, g0.crop_tokens) == (4, 128, 0)
    assert (g1.count, g1.stride_px, g1.crop_tokens) == (2, 128, 0)
    assert (g0.merged_tokens(8), g1.merged_tokens(8)) == (32, 16)


def test_ragged_tiling_is_rejected():
    with pytest.raises(ValueError, match="not covered exactly"):
        make_grid(1000, 384, 16, 0.25)


@pytest.mark.parametrize("level", [0, 1])
def test_unfold_split_and_merge_equal_naive_loops(level):
    grid = pyramid_grids(1536, 384, 16, use_patch_overlap=True)[level]
    batch = 2
    g = torch.Generator().manual_seed(level)
    image = torch.rand(batch, 2, grid.size_px, grid.size_px, generator=g)
    assert torch.equal(split_tiles(image, grid), naive_split(image, grid))

    maps = torch.rand(grid.num_tiles * batch, 3, 24, 24, generator=g)
    merged = merge_tiles(maps, grid)
    assert merged.shape == (batch, 3, grid.merged_tokens(24), grid.merged_tokens(24))
    assert torch.equal(merged, naive_merge(maps, grid, batch))


def test_merge_of_split_positions_is_consistent():
    """Merging per-tile token coordinates recovers a seamless global coordinate map."""
    grid = make_grid(1536, 384, 16, 0.25)
    tokens_per_px = 1 / 16
    rows = torch.arange(96.0).reshape(1, 1, 96, 1).expand(1, 1, 96, 96)
    # tile (j, i) token (r, c) sits at global token (j*stride/16 + r, i*stride/16 + c)
    tiles = []
    for j in range(grid.count):
        for _ in range(grid.count):
            r0 = j * grid.stride_px * tokens_per_px
            tiles.append((torch.arange(24.0) + r0).reshape(1, 1, 24, 1).expand(1, 1, 24, 24))
    merged = merge_tiles(torch.cat(tiles), grid)
    assert torch.equal(merged, rows)

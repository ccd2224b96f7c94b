"""Tile lists: for every screen tile, the gaussians whose discs reach it, front to back.

Why a counting sort on the CPU: the lists are ~2 entries per gaussian (2.5 M for a SHARP scene at
512 x 512). One stable sort by tile over all of them, with the gaussians already in depth order,
is the simple form (used on GPUs); on a CPU the entries are made and sorted in small depth-ordered
chunks on the render pool, and each chunk's entries are then placed at their final positions
(tile start + entries of earlier chunks in that tile + rank within the chunk), which keeps the
depth order within every tile without one large sort.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from mlsharp.render.workers import run_chunks

#: gaussians per CPU work item (~2 entries each: the entry tensors stay below ATen's grain)
ENTRY_CHUNK = 8192


@dataclass
class TileLists:
    """Each tile's depth-ordered gaussians: ids[starts[t] : starts[t] + counts[t]]."""

    ids: Tensor  # (E,) int64 rows of the depth-sorted gaussians
    starts: Tensor  # (tiles,) int64
    counts: Tensor  # (tiles,) int64
    tiles_x: int
    tiles_y: int


def _entries(
    means2d: Tensor, radii: Tensor, first_id: int, width: int, height: int, tile_px: int, tiles_x: int
) -> tuple[Tensor, Tensor]:
    """(tile, gaussian id) of every tile each (n,) gaussian reaches, gaussian-major, (E,) int64."""
    device = means2d.device
    u, v = means2d.unbind(-1)
    # Pixel i (centre i + 0.5) is reached when |i + 0.5 - u| < r.
    x0 = torch.ceil(u - radii - 0.5).clamp(0, width - 1).long() // tile_px
    x1 = torch.floor(u + radii - 0.5).clamp(0, width - 1).long() // tile_px
    y0 = torch.ceil(v - radii - 0.5).clamp(0, height - 1).long() // tile_px
    y1 = torch.floor(v + radii - 0.5).clamp(0, height - 1).long() // tile_px
    span_x = (x1 - x0 + 1).clamp(min=0)
    per_gaussian = span_x * (y1 - y0 + 1).clamp(min=0)  # (n,)
    local_id = torch.repeat_interleave(torch.arange(means2d.shape[0], device=device), per_gaussian)  # (E,)
    first = torch.cumsum(per_gaussian, 0) - per_gaussian
    local = torch.arange(local_id.shape[0], device=device) - first[local_id]
    sx = span_x[local_id]
    tile = (y0[local_id] + local // sx) * tiles_x + x0[local_id] + local % sx
    return tile, local_id + first_id


def _grid(width: int, height: int, tile_px: int) -> tuple[int, int]:
    return -(-width // tile_px), -(-height // tile_px)


def bin_tiles(means2d: Tensor, radii: Tensor, width: int, height: int, tile_px: int) -> TileLists:
    """Tile lists of (M,) depth-sorted gaussians in one pass (one stable sort by tile)."""
    tiles_x, tiles_y = _grid(width, height, tile_px)
    tile, gid = _entries(means2d, radii, 0, width, height, tile_px, tiles_x)
    key = tile.int() if tiles_x * tiles_y < 2**31 else tile
    order = torch.sort(key, stable=True).indices  # stable: depth order kept within a tile
    counts = torch.bincount(tile, minlength=tiles_x * tiles_y)
    return TileLists(gid[order], torch.cumsum(counts, 0) - counts, counts, tiles_x, tiles_y)


def bin_tiles_chunked(means2d: Tensor, radii: Tensor, width: int, height: int, tile_px: int) -> TileLists:
    """The same lists as :func:`bin_tiles`, made in chunks on the render pool (CPU)."""
    tiles_x, tiles_y = _grid(width, height, tile_px)
    n_tiles = tiles_x * tiles_y

    def make(start: int, stop: int) -> tuple[Tensor, Tensor, Tensor]:
        tile, gid = _entries(means2d[start:stop], radii[start:stop], start, width, height, tile_px, tiles_x)
        order = torch.sort(tile, stable=True).indices
        return tile[order], gid[order], torch.bincount(tile, minlength=n_tiles)

    parts = run_chunks(means2d.shape[0], ENTRY_CHUNK, make)
    per_chunk = torch.stack([counts for _, _, counts in parts])  # (C, tiles)
    counts = per_chunk.sum(0)
    starts = torch.cumsum(counts, 0) - counts
    earlier = torch.cumsum(per_chunk, 0) - per_chunk  # (C, tiles): entries of earlier chunks
    ids = torch.empty((int(counts.sum()),), dtype=torch.int64, device=means2d.device)
    offsets = starts[None, :] + earlier  # (C, tiles): where each chunk's run in a tile begins

    def place(c: int, _stop: int) -> None:
        tile, gid, chunk_counts = parts[c]
        within = (
            torch.arange(tile.shape[0], device=tile.device)
            - (torch.cumsum(chunk_counts, 0) - chunk_counts)[tile]
        )
        ids[offsets[c, tile] + within] = gid

    run_chunks(len(parts), 1, place)
    return TileLists(ids, starts, counts, tiles_x, tiles_y)

"""Tile-based front-to-back alpha compositing in plain torch (CPU and GPU).

Why this shape: a python loop per pixel or per gaussian is hopeless at 1.2 M gaussians, and a
sort of every (gaussian, pixel) pair costs seconds on a CPU. As in 3DGS/gsplat, the screen is cut
into square tiles; each gaussian is listed in the tiles its ellipse reaches, and one stable sort
by tile (gaussians already in depth order) gives each tile its depth-ordered list. Tiles are then
processed in batches, ``chunk`` gaussians per tile at a time, as dense (tiles, pixels, chunk)
tensors: alpha, an inclusive cumulative product of (1 - alpha) seeded with each pixel's current
transmittance, and one batched matmul for the colours. A tile leaves the batch when its list is
exhausted or every pixel in it is saturated (early termination); batches are sized so that one
op's tensors stay cache-sized on a CPU.

Blending rules (3DGS): alpha = min(0.999, o exp(-power)); a pixel skips alpha <= 1/255; a pixel
stops at the first gaussian that would take its transmittance to <= 1e-4, without blending it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from mlsharp.render.project import ALPHA_MAX, ALPHA_MIN, Projected

#: transmittance at which a pixel stops blending (3DGS)
T_MIN = 1e-4
_LOG_ALPHA_MAX = math.log(ALPHA_MAX)
_LOG_FLOOR = math.log(ALPHA_MIN) - 1.0


@dataclass(frozen=True)
class RasterSettings:
    """Work decomposition; results do not depend on it (up to float rounding)."""

    tile_px: int = 8
    chunk: int = 64  # gaussians per tile per step
    budget: int = 1 << 20  # elements of one (tiles, pixels, chunk) tensor: 4 MB


def default_settings(device: torch.device) -> RasterSettings:
    """Cache-sized batches on a CPU; a GPU wants as much work per launch as memory allows."""
    if device.type == "cpu":
        return RasterSettings()
    return RasterSettings(tile_px=16, chunk=64, budget=1 << 25)


@dataclass
class TileLists:
    """Each tile's depth-ordered gaussians: ids[starts[t] : starts[t] + counts[t]]."""

    ids: Tensor  # (E,) int64 rows of the depth-sorted projected arrays
    starts: Tensor  # (tiles,) int64
    counts: Tensor  # (tiles,) int64
    tiles_x: int
    tiles_y: int


def bin_tiles(means2d: Tensor, radii: Tensor, width: int, height: int, tile_px: int) -> TileLists:
    """List every (M,) gaussian (already depth-sorted) in each tile its disc reaches."""
    device = means2d.device
    tiles_x, tiles_y = -(-width // tile_px), -(-height // tile_px)
    u, v = means2d.unbind(-1)
    # Pixel i (centre i + 0.5) is reached when |i + 0.5 - u| < r.
    x0 = torch.ceil(u - radii - 0.5).clamp(0, width - 1).long() // tile_px
    x1 = torch.floor(u + radii - 0.5).clamp(0, width - 1).long() // tile_px
    y0 = torch.ceil(v - radii - 0.5).clamp(0, height - 1).long() // tile_px
    y1 = torch.floor(v + radii - 0.5).clamp(0, height - 1).long() // tile_px
    span_x = (x1 - x0 + 1).clamp(min=0)
    per_gaussian = span_x * (y1 - y0 + 1).clamp(min=0)  # (M,)
    total = int(per_gaussian.sum())
    gid = torch.repeat_interleave(torch.arange(means2d.shape[0], device=device), per_gaussian)  # (E,)
    first = torch.cumsum(per_gaussian, 0) - per_gaussian
    local = torch.arange(total, device=device) - first[gid]
    sx = span_x[gid]
    tile = (y0[gid] + local // sx) * tiles_x + x0[gid] + local % sx  # (E,)
    key = tile.int() if tiles_x * tiles_y < 2**31 else tile
    order = torch.sort(key, stable=True).indices  # stable: depth order kept within a tile
    counts = torch.bincount(tile, minlength=tiles_x * tiles_y)
    starts = torch.cumsum(counts, 0) - counts
    return TileLists(gid[order], starts, counts, tiles_x, tiles_y)


@dataclass
class Raster:
    """A rendered image before colour conversion and background."""

    rgb: Tensor  # (H, W, 3) blended colour, background not added
    transmittance: Tensor  # (H, W) light left for the background: 1 - alpha


def _pack(projected: Projected, order: Tensor) -> tuple[Tensor, Tensor]:
    """(M + 1, 6) [u, v, -A/2, -B, -C/2, ln o] and (M + 1, 4) [r, g, b, 1] rows in depth order,
    plus a last padding row whose alpha is 0 (ln o = -inf) and colour 0."""
    a, b, c = projected.conics[order].unbind(-1)
    u, v = projected.means2d_px[order].unbind(-1)
    params = torch.stack([u, v, -0.5 * a, -b, -0.5 * c, torch.log(projected.opacities[order])], dim=-1)
    pad = params.new_zeros((1, 6))
    pad[0, 5] = float("-inf")
    colors = projected.colors[order]
    ones = torch.ones_like(colors[:, :1])
    colors = torch.cat([torch.cat([colors, ones], dim=-1), colors.new_zeros((1, 4))])
    return torch.cat([params, pad]).contiguous(), colors.contiguous()


def _blend_step(
    params: Tensor, colors: Tensor, origin: Tensor, live: Tensor, tile_px: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Blend one chunk into a batch of tiles.

    params (n, G, 6), colors (n, G, 4), origin (n, 2) tile corner px, live (n, P) transmittance
    going in (0 where a pixel has stopped). Returns (n, P, 4) colour + weight sums and (n, P) the
    transmittance after the chunk as if nothing stopped (<= T_MIN where a pixel stops).
    """
    n, g = params.shape[0], params.shape[1]
    p = tile_px * tile_px
    u, v, na, nb, nc, log_o = params.unbind(-1)  # each (n, G)
    offsets = torch.arange(tile_px, device=params.device, dtype=params.dtype) + 0.5
    dx = (origin[:, 0:1] + offsets)[:, :, None] - u[:, None, :]  # (n, T, G): pixel column - u
    dy = (origin[:, 1:2] + offsets)[:, :, None] - v[:, None, :]  # (n, T, G): pixel row - v
    qx = torch.addcmul(log_o[:, None, :], dx * dx, na[:, None, :])  # ln o - A dx^2 / 2
    qy = dy * dy * nc[:, None, :]  # - C dy^2 / 2
    bx = dx * nb[:, None, :]  # - B dx
    alpha = qx[:, None, :, :] + qy[:, :, None, :]  # (n, Ty, Tx, G)
    # Clamping the exponent first keeps exp's results normal floats (denormals are ~20x slower on
    # x86) and caps alpha at ALPHA_MAX; anything clamped from below ends under ALPHA_MIN.
    alpha.addcmul_(bx[:, None, :, :], dy[:, :, None, :]).clamp_(_LOG_FLOOR, _LOG_ALPHA_MAX).exp_()
    alpha = F.threshold_(alpha, ALPHA_MIN, 0.0).view(n, p, g)  # (n, P, G)
    trans = torch.empty((n, p, g + 1), device=params.device, dtype=params.dtype)
    trans[:, :, 0] = live
    torch.sub(torch.ones((), dtype=alpha.dtype), alpha, out=trans[:, :, 1:])
    trans = torch.cumprod(trans, dim=-1)  # (n, P, G + 1): [:, :, i] = T before gaussian i
    weights = alpha.mul_(trans[:, :, :-1])
    weights.masked_fill_(trans[:, :, 1:] <= T_MIN, 0.0)  # the stopping gaussian and all after it
    return torch.bmm(weights, colors), trans[:, :, -1]


def _run_batch(
    tiles: Tensor, lists: TileLists, params: Tensor, colors: Tensor, settings: RasterSettings
) -> tuple[Tensor, Tensor, Tensor]:
    """Blend a batch of (n,) tiles to the end of their lists or until every pixel has stopped.

    ``lists.ids`` ends with a sentinel entry (index E) pointing at a padding row of ``params``
    whose alpha is 0. Returns the tiles' (n, P, 3) colour and (n, P) transmittance, in order.
    """
    device, tile_px, chunk = params.device, settings.tile_px, settings.chunk
    n, p = tiles.shape[0], tile_px * tile_px
    sentinel = lists.ids.shape[0] - 1
    steps = torch.arange(chunk, device=device)
    origin = torch.stack([tiles % lists.tiles_x, tiles // lists.tiles_x], dim=-1).to(params.dtype) * tile_px
    first, left = lists.starts[tiles], lists.counts[tiles]  # (n,): next list entry, entries left
    live = torch.ones((n, p), device=device)  # transmittance fed in; 0 once a pixel has stopped
    trans = torch.ones((n, p), device=device)  # transmittance where the pixel stopped (the output)
    acc = torch.zeros((n, p, 3), device=device)
    rgb_out = torch.empty((n, p, 3), device=device)
    trans_out = torch.empty((n, p), device=device)
    slots = torch.arange(n, device=device)  # each row's place in the outputs
    while slots.shape[0] > 0:
        at = first[:, None] + steps  # (n, G)
        at.masked_fill_(steps >= left[:, None], sentinel)  # past a tile's list: the padding row
        rows = lists.ids.index_select(0, at.view(-1))  # (n * G,)
        par = params.index_select(0, rows).view(-1, chunk, 6)
        col = colors.index_select(0, rows).view(-1, chunk, 4)
        out, t_after = _blend_step(par, col, origin, live, tile_px)  # (n, P, 4), (n, P)
        acc += out[..., :3]
        trans = torch.where(live == 0, trans, live - out[..., 3])
        live = torch.where(t_after <= T_MIN, 0.0, trans)
        first, left = first + chunk, left - chunk
        keep = (left > 0) & (live > 0).any(-1)
        if not bool(keep.all()):  # retire finished tiles (early termination for saturated ones)
            gone = ~keep
            rgb_out[slots[gone]] = acc[gone]
            trans_out[slots[gone]] = trans[gone]
            slots, origin, first, left = slots[keep], origin[keep], first[keep], left[keep]
            live, trans, acc = live[keep], trans[keep], acc[keep]
    return rgb_out, trans_out


def rasterize(
    projected: Projected, width: int, height: int, settings: RasterSettings | None = None
) -> Raster:
    """Composite the projected gaussians front to back into a (height, width) image."""
    device = projected.means2d_px.device
    settings = settings or default_settings(device)
    tile_px = settings.tile_px
    p = tile_px * tile_px
    order = torch.argsort(projected.depths_m, stable=True)  # front to back
    params, colors = _pack(projected, order)
    lists = bin_tiles(params[:-1, :2], projected.radii_px[order], width, height, tile_px)
    lists.ids = torch.cat([lists.ids, lists.ids.new_full((1,), params.shape[0] - 1)])  # the sentinel
    n_tiles = lists.tiles_x * lists.tiles_y
    rgb = torch.zeros((n_tiles, p, 3), device=device)
    trans_out = torch.ones((n_tiles, p), device=device)
    busy = (lists.counts > 0).nonzero().squeeze(1)
    busy = busy[torch.argsort(lists.counts[busy], descending=True)]  # similar tiles share a batch
    per_batch = max(1, settings.budget // (p * settings.chunk))
    for b0 in range(0, busy.shape[0], per_batch):
        tiles = busy[b0 : b0 + per_batch]  # (nb,)
        rgb[tiles], trans_out[tiles] = _run_batch(tiles, lists, params, colors, settings)
    # (tiles_y, tiles_x, T, T, C) -> (H, W, C), cropping the partial tiles at the edges.
    shape = (lists.tiles_y, lists.tiles_x, tile_px, tile_px)
    image = rgb.view(*shape, 3).permute(0, 2, 1, 3, 4).reshape(lists.tiles_y * tile_px, -1, 3)
    t_img = trans_out.view(*shape).permute(0, 2, 1, 3).reshape(lists.tiles_y * tile_px, -1)
    return Raster(rgb=image[:height, :width], transmittance=t_img[:height, :width])

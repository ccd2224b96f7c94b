"""Tile-based front-to-back alpha compositing in plain torch (CPU and GPU).

Why this shape: a python loop per pixel or per gaussian is hopeless at 1.2 M gaussians, and a
sort of every (gaussian, pixel) pair costs seconds on a CPU. As in 3DGS/gsplat, the screen is cut
into square tiles; each gaussian is listed in the tiles its ellipse reaches, and one stable sort
by tile (gaussians already in depth order) gives each tile its depth-ordered list. Tiles are then
processed in batches, ``chunk`` gaussians per tile at a time, as dense (tiles, pixels, chunk)
tensors: alpha, an inclusive cumulative product of (1 - alpha) seeded with each pixel's current
transmittance, and one batched matmul for the colours. A tile leaves the batch when its list is
exhausted or every pixel in it is saturated (early termination). On a CPU the batches run on the
render pool (:mod:`mlsharp.render.workers`), the tile lists are built by a chunked counting sort
(:mod:`mlsharp.render.tiles`), and no op waits on a thread barrier: on a loaded 2-core machine
that is the difference between ~3 s and ~7-30 s per 512 x 512 frame of 1.2 M gaussians.

Blending rules (3DGS): alpha = min(0.999, o exp(-power)); a pixel skips alpha <= 1/255; a pixel
stops at the first gaussian that would take its transmittance to <= 1e-4, without blending it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from mlsharp.render.project import ALPHA_MAX, ALPHA_MIN, Projected
from mlsharp.render.tiles import TileLists, bin_tiles, bin_tiles_chunked
from mlsharp.render.workers import ATEN_GRAIN, run_chunks

#: transmittance at which a pixel stops blending (3DGS)
T_MIN = 1e-4
_LOG_ALPHA_MAX = math.log(ALPHA_MAX)
_LOG_FLOOR = math.log(ALPHA_MIN) - 1.0
_GATHER_CHUNK = 4096  # rows per pooled gather: 6 x 4096 elements, below ATen's grain


@dataclass(frozen=True)
class RasterSettings:
    """Work decomposition; results do not depend on it (up to float rounding)."""

    tile_px: int = 4  # on a CPU 4 beat 8 (less wasted work per tile) and 16 (2x slower)
    chunk: int = 64  # gaussians per tile per step
    budget: int = ATEN_GRAIN - 1  # elements of one (tiles, pixels, chunk) tensor
    pool: bool = True  # batches on the render pool, single-threaded ops (CPU)


#: for a process that renders alone, inside :func:`mlsharp.render.workers.exclusive_cpu`: larger
#: batches, since no op is parallelised there (512 x 512, 1.2 M gaussians, rasterization only:
#: 1.5-1.6 CPU-s per frame vs 1.9-2.0 for batches below the grain, measured at load 5-11)
EXCLUSIVE_CPU_SETTINGS = RasterSettings(budget=1 << 18)


def default_settings(device: torch.device) -> RasterSettings:
    """CPU: batches below ATen's grain on the render pool (no thread barriers, see workers.py);
    a GPU wants as much work per launch as memory allows."""
    if device.type == "cpu":
        return RasterSettings()
    return RasterSettings(tile_px=16, chunk=64, budget=1 << 25, pool=False)


@dataclass
class Raster:
    """A rendered image before colour conversion and background."""

    rgb: Tensor  # (H, W, 3) blended colour, background not added
    transmittance: Tensor  # (H, W) light left for the background: 1 - alpha


def _pack(projected: Projected, order: Tensor, pool: bool) -> tuple[Tensor, Tensor, Tensor]:
    """Rows in depth order: (M + 1, 6) PARAMS, (M + 1, 4) [r, g, b, 1] and (M,) radii; the last
    row is padding whose alpha is 0 (ln o = -inf) and colour 0. Gathered in chunks on the pool."""
    m, device = order.shape[0], order.device
    params = torch.empty((m + 1, 6), device=device)
    colors = torch.empty((m + 1, 4), device=device)
    radii = torch.empty((m,), device=device)
    params[m] = 0.0
    params[m, 5] = float("-inf")
    colors[m] = 0.0

    def gather(start: int, stop: int) -> None:
        rows = order[start:stop]
        params[start:stop] = projected.params.index_select(0, rows)
        colors[start:stop, :3] = projected.colors.index_select(0, rows)
        colors[start:stop, 3] = 1.0
        radii[start:stop] = projected.radii_px.index_select(0, rows)

    run_chunks(m, _GATHER_CHUNK if pool else max(m, 1), gather)
    return params, colors, radii


def _blend_step(
    params: Tensor, colors: Tensor, origin: Tensor, live: Tensor, tile_px: int
) -> tuple[Tensor, Tensor]:
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
    alpha = torch.threshold_(alpha, ALPHA_MIN, 0.0).view(n, p, g)  # (n, P, G)
    trans = torch.empty((n, p, g + 1), device=params.device, dtype=params.dtype)
    trans[:, :, 0] = live
    torch.sub(torch.ones((), dtype=alpha.dtype), alpha, out=trans[:, :, 1:])
    trans = torch.cumprod(trans, dim=-1)  # (n, P, G + 1): [:, :, i] = T before gaussian i
    weights = alpha.mul_(trans[:, :, :-1])
    t_after = trans[:, :, -1]
    # T only falls, so a pixel stops within this chunk iff its last T does: most chunks have none
    # (each pixel stops once), and then the two passes of the mask are skipped.
    if bool((t_after <= T_MIN).any()):
        weights.masked_fill_(trans[:, :, 1:] <= T_MIN, 0.0)  # the stopping gaussian and all after it
    return torch.bmm(weights, colors), t_after


def _run_batch(
    tiles: Tensor, lists: TileLists, params: Tensor, colors: Tensor, settings: RasterSettings
) -> tuple[Tensor, Tensor]:
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
    device = projected.params.device
    settings = settings or default_settings(device)
    tile_px = settings.tile_px
    p = tile_px * tile_px
    order = torch.argsort(projected.depths_m, stable=True)  # front to back
    params, colors, radii = _pack(projected, order, settings.pool)
    binning = bin_tiles_chunked if settings.pool else bin_tiles
    lists = binning(params[:-1, :2], radii, width, height, tile_px)
    lists.ids = torch.cat([lists.ids, lists.ids.new_full((1,), params.shape[0] - 1)])  # the sentinel
    n_tiles = lists.tiles_x * lists.tiles_y
    rgb = torch.zeros((n_tiles, p, 3), device=device)
    trans_out = torch.ones((n_tiles, p), device=device)
    busy = (lists.counts > 0).nonzero().squeeze(1)
    busy = busy[torch.argsort(lists.counts[busy], descending=True)]  # similar tiles share a batch
    per_batch = max(1, settings.budget // (p * settings.chunk))

    def work(start: int, stop: int) -> None:
        tiles = busy[start:stop]  # (nb,), disjoint between work items
        rgb[tiles], trans_out[tiles] = _run_batch(tiles, lists, params, colors, settings)

    if settings.pool:
        run_chunks(busy.shape[0], per_batch, work)
    else:
        for b0 in range(0, busy.shape[0], per_batch):
            work(b0, min(b0 + per_batch, busy.shape[0]))
    # (tiles_y, tiles_x, T, T, C) -> (H, W, C), cropping the partial tiles at the edges.
    shape = (lists.tiles_y, lists.tiles_x, tile_px, tile_px)
    image = rgb.view(*shape, 3).permute(0, 2, 1, 3, 4).reshape(lists.tiles_y * tile_px, -1, 3)
    t_img = trans_out.view(*shape).permute(0, 2, 1, 3).reshape(lists.tiles_y * tile_px, -1)
    return Raster(rgb=image[:height, :width], transmittance=t_img[:height, :width])

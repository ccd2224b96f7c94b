"""Niantic SPZ (version 3) writer and reader, vectorised numpy + gzip.

Why hand-written: SPZ is a gzip stream of a 16-byte header and column-major attribute blocks;
~20 bytes per gaussian before compression (4-8x smaller than the SH0 PLY). The official library
has no wheel; the layout and quantisation below follow the published spec (nianticlabs/spz README
and load-spz.cc): positions 24-bit fixed point with 12 fractional bits, alpha u8 = alpha * 255,
colour u8 = f_dc * 0.15 * 255 + 127.5, scale u8 = (ln s + 10) * 16, rotation "smallest three"
(2-bit index of the largest |component| of the x, y, z, w quaternion, then 3 x (sign bit + 9-bit
magnitude / sqrt(1/2))), all rounded to nearest and clamped. Axes are stored as they are (OpenCV
frame, no RUB conversion), like the PLY; viewers flip once for every format.
"""

from __future__ import annotations

import gzip
import struct
import sys
import zlib
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
import torch

from mlsharp.formats import attributes
from mlsharp.gaussians import Gaussians3D

SPZ_MAGIC = 0x5053474E  # "NGSP" little-endian
SPZ_VERSION = 3
FRACTIONAL_BITS = 12
COLOR_SCALE = 0.15
_HEADER = struct.Struct("<IIIBBBB")  # magic, version, count, sh degree, fractional bits, flags, reserved
_SQRT1_2 = np.float32(0.7071067811865476)
#: largest number of points the reference loader accepts
MAX_POINTS = 10_000_000
#: default gzip level (zlib's default, as the reference library uses)
DEFAULT_COMPRESSLEVEL = 6


@dataclass
class SpzScene:
    """Decoded SPZ contents as float32 numpy arrays (for round-trip tests and tools)."""

    means: np.ndarray  # (N, 3)
    opacities: np.ndarray  # (N,) alpha in [0, 1]
    sh_dc: np.ndarray  # (N, 3) SH DC coefficients
    log_scales: np.ndarray  # (N, 3)
    quaternions: np.ndarray  # (N, 4) w x y z, unit
    version: int
    fractional_bits: int
    flags: int


def _to_u8(values: np.ndarray) -> np.ndarray:
    """Round to nearest and clamp to [0, 255] (the spec's toUint8)."""
    rounded: np.ndarray = np.clip(np.rint(values), 0, 255).astype(np.uint8)
    return rounded


def _pack_positions(means: np.ndarray) -> np.ndarray:
    """(N, 3) float32 -> (N * 9,) bytes: each coordinate a little-endian 24-bit signed integer.

    Coordinates beyond the representable +-2048 m are clamped (the reference wraps them).
    """
    limit = 2**23 - 1
    fixed = np.clip(np.rint(means.astype(np.float64) * (1 << FRACTIONAL_BITS)), -limit - 1, limit)
    as_u32 = fixed.astype(np.int32).view(np.uint32).reshape(-1, 1)  # (3N, 1)
    return (as_u32 >> np.array([0, 8, 16], dtype=np.uint32)).astype(np.uint8).reshape(-1)


def _pack_rotations(quats_wxyz: np.ndarray) -> np.ndarray:
    """(N, 4) w x y z -> (N, 4) uint8 "smallest three" words (v3), little-endian."""
    q = quats_wxyz[:, [1, 2, 3, 0]].astype(np.float32)  # spec order x y z w
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    largest = np.argmax(np.abs(q), axis=1)  # (N,), first maximum wins like the reference loop
    negate = np.take_along_axis(q, largest[:, None], axis=1)[:, 0] < 0
    word = largest.astype(np.uint32)
    mags = np.minimum((np.float32(511) * (np.abs(q) / _SQRT1_2) + np.float32(0.5)).astype(np.uint32), 511)
    signs = ((q < 0) ^ negate[:, None]).astype(np.uint32)
    for i in range(4):  # components in ascending index order, the first ends up in the high bits
        keep = largest != i
        word = np.where(keep, (word << 10) | (signs[:, i] << 9) | mags[:, i], word)
    packed: np.ndarray = word.astype("<u4").view(np.uint8).reshape(-1, 4)
    return packed


def spz_payload(gaussians: Gaussians3D) -> bytes:
    """The uncompressed SPZ stream: header + positions, alphas, colours, scales, rotations."""
    n = gaussians.num_gaussians
    if n > MAX_POINTS:
        raise ValueError(f"SPZ readers accept at most {MAX_POINTS} points, got {n}")
    means = gaussians.means.detach().cpu().float().numpy()
    alphas = gaussians.opacities.detach().cpu().float().numpy()
    sh_dc = attributes.sh_dc_from_linear(gaussians.colors_linear.detach().cpu()).numpy()
    logs = attributes.log_scales(gaussians.scales.detach().cpu()).numpy()
    quats = gaussians.quaternions.detach().cpu().float().numpy()
    header = spz_header(n)
    blocks = [
        _pack_positions(means),
        _to_u8(np.clip(alphas, 0.0, 1.0) * np.float32(255)),
        _to_u8(sh_dc * np.float32(COLOR_SCALE * 255) + np.float32(0.5 * 255)),
        _to_u8((logs + np.float32(10)) * np.float32(16)),
        _pack_rotations(quats),
    ]
    return header + b"".join(np.ascontiguousarray(b).reshape(-1).tobytes() for b in blocks)


def _pack_positions_tensor(means: torch.Tensor) -> torch.Tensor:
    """:func:`_pack_positions` on the means' device: (N, 3) -> (N * 9,) uint8."""
    limit = 2**23 - 1
    fixed = (means.double() * (1 << FRACTIONAL_BITS)).round_().clamp_(-limit - 1, limit).to(torch.int32)
    return fixed.reshape(-1, 1).view(torch.uint8)[:, :3].reshape(-1)  # low 3 bytes, little-endian


def _pack_rotations_tensor(quats_wxyz: torch.Tensor) -> torch.Tensor:
    """:func:`_pack_rotations` on the quaternions' device: (N, 4) w x y z -> (N * 4,) uint8."""
    q = attributes.unit_rows(quats_wxyz[:, [1, 2, 3, 0]].float())  # spec order x y z w
    largest = torch.argmax(q.abs(), dim=1)  # (N,), first maximum wins
    negate = torch.gather(q, 1, largest[:, None])[:, 0] < 0
    f32 = attributes.f32
    mags = (q.abs() / float(_SQRT1_2) * f32(511) + f32(0.5)).to(torch.int64).clamp_(max=511)
    signs = ((q < 0) ^ negate[:, None]).to(torch.int64)
    word = largest.to(torch.int64)  # at most 32 bits used: int64 holds the uint32 arithmetic
    for i in range(4):
        word = torch.where(largest != i, (word << 10) | (signs[:, i] << 9) | mags[:, i], word)
    return word.reshape(-1, 1).view(torch.uint8)[:, :4].reshape(-1)  # low 4 bytes, little-endian


def spz_payload_tensor(gaussians: Gaussians3D) -> torch.Tensor:
    """The SPZ blocks after the header as one uint8 tensor on the gaussians' device.

    The quantisation of :func:`spz_payload` op for op, so a GPU copies back ~20 bytes per
    gaussian once instead of five float columns; ``header + bytes`` equals ``spz_payload``.
    """
    n = gaussians.num_gaussians
    if n > MAX_POINTS:
        raise ValueError(f"SPZ readers accept at most {MAX_POINTS} points, got {n}")
    if sys.byteorder != "little":
        raise RuntimeError("SPZ packing views integers as little-endian bytes; this host is not")
    to_u8, f32 = attributes.to_u8, attributes.f32
    alphas = gaussians.opacities.detach().float()
    sh_dc = attributes.sh_dc_from_linear(gaussians.colors_linear.detach())
    logs = attributes.log_scales(gaussians.scales.detach())
    blocks = [
        _pack_positions_tensor(gaussians.means.detach().float()),  # (9N,)
        to_u8(alphas.clamp(0.0, 1.0) * f32(255)),  # (N,)
        to_u8(sh_dc * f32(COLOR_SCALE * 255) + f32(0.5 * 255)).reshape(-1),  # (3N,)
        to_u8((logs + f32(10)) * f32(16)).reshape(-1),  # (3N,)
        _pack_rotations_tensor(gaussians.quaternions.detach()),  # (4N,)
    ]
    return torch.cat(blocks)


def spz_header(num_gaussians: int) -> bytes:
    """The 16-byte SPZ v3 header (SH degree 0, no flags)."""
    return _HEADER.pack(SPZ_MAGIC, SPZ_VERSION, num_gaussians, 0, FRACTIONAL_BITS, 0, 0)


def encode_spz_payload(payload: bytes, *, compresslevel: int = DEFAULT_COMPRESSLEVEL) -> bytes:
    """Gzip an uncompressed SPZ stream the way :func:`encode_spz` does (mtime 0)."""
    return gzip.compress(payload, compresslevel=compresslevel, mtime=0)


def encode_spz(gaussians: Gaussians3D, *, compresslevel: int = DEFAULT_COMPRESSLEVEL) -> bytes:
    """The SPZ file as bytes (gzip with mtime 0, so equal scenes give equal bytes)."""
    return encode_spz_payload(spz_payload(gaussians), compresslevel=compresslevel)


def write_spz(
    fileobj: BinaryIO, gaussians: Gaussians3D, *, compresslevel: int = DEFAULT_COMPRESSLEVEL
) -> None:
    """Stream the SPZ file to a binary file object (the same bytes as :func:`encode_spz`)."""
    fileobj.write(encode_spz(gaussians, compresslevel=compresslevel))


def _unpack_rotations_v3(words: np.ndarray) -> np.ndarray:
    """(N,) uint32 smallest-three words -> (N, 4) x y z w."""
    largest = (words >> 30).astype(np.int64)
    q = np.zeros((words.shape[0], 4), dtype=np.float32)
    comp = words.copy()
    for i in range(3, -1, -1):  # low bits hold the last stored component
        keep = largest != i
        mag = (comp & 511).astype(np.float32)
        neg = ((comp >> 9) & 1).astype(bool)
        val = _SQRT1_2 * mag / np.float32(511)
        q[:, i] = np.where(keep, np.where(neg, -val, val), 0.0)
        comp = np.where(keep, comp >> 10, comp)
    rest = np.clip(1.0 - np.sum(q * q, axis=1), 0.0, None)
    np.put_along_axis(q, largest[:, None], np.sqrt(rest)[:, None].astype(np.float32), axis=1)
    return q


def decode_spz(data: bytes) -> SpzScene:
    """Parse an SPZ file (version 2 or 3, SH degree 0..3 read but SH ignored, no extensions)."""
    raw = zlib.decompress(data, wbits=31)
    magic, version, n, _sh_degree, frac_bits, flags, _ = _HEADER.unpack_from(raw, 0)
    if magic != SPZ_MAGIC:
        raise ValueError("not an SPZ stream (bad magic)")
    if version not in (2, 3):
        raise ValueError(f"unsupported SPZ version {version}")
    if flags & 0x2:
        raise ValueError("SPZ extensions are not supported by this reader")
    offset = _HEADER.size
    rot_bytes = 4 if version >= 3 else 3
    sizes = {"pos": 9 * n, "alpha": n, "color": 3 * n, "scale": 3 * n, "rot": rot_bytes * n}
    blocks = {}
    for name, size in sizes.items():
        blocks[name] = np.frombuffer(raw, dtype=np.uint8, count=size, offset=offset)
        offset += size
    b = blocks["pos"].reshape(-1, 3).astype(np.int32)
    fixed = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
    fixed = np.where(fixed & 0x800000, fixed - (1 << 24), fixed)
    means = (fixed.astype(np.float32) / np.float32(1 << frac_bits)).reshape(n, 3)
    if version >= 3:
        xyzw = _unpack_rotations_v3(blocks["rot"].reshape(n, 4).copy().view("<u4")[:, 0])
    else:
        xyz = blocks["rot"].reshape(n, 3).astype(np.float32) / np.float32(127.5) - 1
        w = np.sqrt(np.clip(1 - np.sum(xyz * xyz, axis=1), 0, None))
        xyzw = np.concatenate([xyz, w[:, None]], axis=1)
    return SpzScene(
        means=means,
        opacities=blocks["alpha"].astype(np.float32) / np.float32(255),
        sh_dc=(blocks["color"].reshape(n, 3).astype(np.float32) / np.float32(255) - np.float32(0.5))
        / np.float32(COLOR_SCALE),
        log_scales=blocks["scale"].reshape(n, 3).astype(np.float32) / np.float32(16) - np.float32(10),
        quaternions=xyzw[:, [3, 0, 1, 2]],
        version=version,
        fractional_bits=frac_bits,
        flags=flags,
    )

"""Output formats for metric gaussian scenes: one dispatch for the CLI, Triton and the gateway.

Every writer takes a :class:`mlsharp.gaussians.Gaussians3D` (any device) and returns bytes
(``encode_*``) or streams to a binary file object (``write_*``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO

from mlsharp.errors import InvalidParameterError
from mlsharp.formats.metadata import build_metadata, metadata_json_bytes
from mlsharp.formats.ply import (
    encode_ply,
    encode_ply_clean,
    encode_ply_from_rows,
    vertex_rows,
    write_ply,
    write_ply_clean,
)
from mlsharp.formats.splat import decode_splat, encode_splat, splat_row_bytes, write_splat
from mlsharp.formats.spz import (
    DEFAULT_COMPRESSLEVEL,
    decode_spz,
    encode_spz,
    encode_spz_payload,
    spz_header,
    spz_payload_tensor,
    write_spz,
)
from mlsharp.gaussians import CameraInfo, Gaussians3D

OUTPUT_FORMATS = ("ply", "ply-clean", "spz", "splat")


@dataclass(frozen=True)
class FormatInfo:
    """How a format is served and saved."""

    extension: str  # file suffix, with the dot
    media_type: str  # HTTP Content-Type
    description: str


FORMAT_INFO: dict[str, FormatInfo] = {
    "ply": FormatInfo(".ply", "application/x-ply", "ml-sharp PLY: 3DGS vertex + camera/disparity elements"),
    "ply-clean": FormatInfo(".ply", "application/x-ply", "vertex-only INRIA 3DGS PLY, for picky tools"),
    "spz": FormatInfo(".spz", "application/x-spz", "Niantic SPZ v3 (gzip), 4-8x smaller than PLY"),
    "splat": FormatInfo(".splat", "application/x-splat", "antimatter15 .splat, 32 bytes per gaussian"),
}


def check_format(fmt: str) -> str:
    """Return fmt if it is known, else raise InvalidParameterError listing the valid ones."""
    if fmt not in OUTPUT_FORMATS:
        raise InvalidParameterError(
            f"unknown output format {fmt!r}; valid formats: {', '.join(OUTPUT_FORMATS)}"
        )
    return fmt


def write_scene(
    fileobj: BinaryIO, fmt: str, gaussians: Gaussians3D, camera: CameraInfo, *, random_weights: bool = False
) -> None:
    """Stream one scene in the given format. Only the PLY formats can carry the random-weights mark."""
    check_format(fmt)
    if fmt == "ply":
        write_ply(fileobj, gaussians, camera, random_weights=random_weights)
    elif fmt == "ply-clean":
        write_ply_clean(fileobj, gaussians, random_weights=random_weights)
    elif fmt == "spz":
        write_spz(fileobj, gaussians)
    else:
        write_splat(fileobj, gaussians)


def encode_scene(
    fmt: str, gaussians: Gaussians3D, camera: CameraInfo, *, random_weights: bool = False
) -> bytes:
    """One scene as bytes in the given format (see :data:`OUTPUT_FORMATS`)."""
    check_format(fmt)
    if fmt == "ply":
        return encode_ply(gaussians, camera, random_weights=random_weights)
    if fmt == "ply-clean":
        return encode_ply_clean(gaussians, random_weights=random_weights)
    if fmt == "spz":
        return encode_spz(gaussians)
    return encode_splat(gaussians)


def encode_scene_on_device(
    fmt: str,
    gaussians: Gaussians3D,
    camera: CameraInfo,
    *,
    random_weights: bool = False,
    quantiles: tuple[float, float] | None = None,
    spz_compresslevel: int = DEFAULT_COMPRESSLEVEL,
) -> bytes:
    """:func:`encode_scene`'s bytes with the file rows built on the gaussians' device.

    Why: on a GPU the rows are assembled there and come back in ONE device-to-host copy per
    format (PLY rows, packed .splat rows, packed SPZ blocks); only the PLY header and elements and
    the gzip run on the CPU. ``quantiles`` (the disparity quantiles, for the ml-sharp PLY) saves
    recomputing them per format. On the CPU the bytes equal :func:`encode_scene`'s (tested),
    and at ``spz_compresslevel`` = DEFAULT_COMPRESSLEVEL the SPZ bytes too.
    """
    check_format(fmt)
    if fmt in ("ply", "ply-clean"):
        rows = vertex_rows(gaussians).cpu().numpy()  # (N, 14) float32: the one copy
        return encode_ply_from_rows(
            rows, camera if fmt == "ply" else None, random_weights=random_weights, quantiles=quantiles
        )
    if fmt == "spz":
        packed = spz_payload_tensor(gaussians).cpu().numpy()  # (20 N,) uint8: the one copy
        payload = spz_header(gaussians.num_gaussians) + packed.tobytes()
        return encode_spz_payload(payload, compresslevel=spz_compresslevel)
    return bytes(splat_row_bytes(gaussians).cpu().numpy().data)  # (N, 32) uint8: the one copy


__all__ = [
    "FORMAT_INFO",
    "OUTPUT_FORMATS",
    "FormatInfo",
    "build_metadata",
    "check_format",
    "decode_splat",
    "decode_spz",
    "encode_ply",
    "encode_ply_clean",
    "encode_scene",
    "encode_scene_on_device",
    "encode_splat",
    "encode_spz",
    "metadata_json_bytes",
    "write_ply",
    "write_ply_clean",
    "write_scene",
    "write_splat",
    "write_spz",
]

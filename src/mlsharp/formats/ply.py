"""PLY writers: ml-sharp's exact layout (vertex + 7 metadata elements) and a clean vertex-only one.

Why hand-written: plyfile fills its structured array row by row (the reference spends 4.7 s per
scene there); the bytes are just a text header plus one (N, 14) float32 array plus a few tiny
elements, so we assemble exactly what plyfile would write (tests compare byte for byte) with
vectorised ops and at most one copy.
"""

from __future__ import annotations

import threading
from typing import BinaryIO

import numpy as np
import torch

from mlsharp.formats import attributes
from mlsharp.gaussians import CameraInfo, Gaussians3D

#: the 14 float32 vertex properties, INRIA 3DGS order (SH degree 0, no normals)
VERTEX_PROPERTIES = (
    "x", "y", "z",
    "f_dc_0", "f_dc_1", "f_dc_2",
    "opacity",
    "scale_0", "scale_1", "scale_2",
    "rot_0", "rot_1", "rot_2", "rot_3",
)  # fmt: skip
#: ml-sharp's PLY layout version, stored in the ``version`` element
PLY_LAYOUT_VERSION = (1, 5, 0)
#: ``color_space`` element value: 0 = sRGB (the f_dc colours are sRGB-encoded)
COLOR_SPACE_SRGB = 0
#: header comment marking scenes made with random (untrained) weights
RANDOM_WEIGHTS_COMMENT = "mlsharp: RANDOM WEIGHTS - not a real SHARP result"

_PLY_TYPE_NAMES = {"f4": "float", "u4": "uint", "i4": "int", "u1": "uchar"}


def vertex_array(gaussians: Gaussians3D, out: np.ndarray | None = None) -> np.ndarray:
    """(N, 14) float32 C-contiguous array of the vertex properties, in VERTEX_PROPERTIES order.

    ``out``, if given, is a C-contiguous (N, 14) float32 array to fill (and return).
    """
    columns = [
        gaussians.means.detach().cpu().float(),  # (N, 3)
        attributes.sh_dc_from_linear(gaussians.colors_linear.detach().cpu()),  # (N, 3)
        attributes.opacity_logits(gaussians.opacities.detach().cpu())[:, None],  # (N, 1)
        attributes.log_scales(gaussians.scales.detach().cpu()),  # (N, 3)
        gaussians.quaternions.detach().cpu().float(),  # (N, 4)
    ]
    # One concatenate writes the interleaved rows in a single pass (faster than strided copies).
    return np.concatenate([c.numpy() for c in columns], axis=1, out=out)


def vertex_rows(gaussians: Gaussians3D) -> torch.Tensor:
    """(N, 14) float32 vertex rows built on the gaussians' own device (a GPU: one copy back).

    The same attribute functions as :func:`vertex_array`, in the same order; on the CPU the values
    are bit-identical (tests compare the files byte for byte).
    """
    columns = [
        gaussians.means.detach().float(),  # (N, 3)
        attributes.sh_dc_from_linear(gaussians.colors_linear.detach()),  # (N, 3)
        attributes.opacity_logits(gaussians.opacities.detach())[:, None],  # (N, 1)
        attributes.log_scales(gaussians.scales.detach()),  # (N, 3)
        gaussians.quaternions.detach().float(),  # (N, 4)
    ]
    return torch.cat(columns, dim=1)


_SCRATCH = threading.local()


def _scratch_rows(n: int) -> np.ndarray:
    """A per-thread reusable (n, 14) float32 buffer for the vertex rows.

    Why: the rows only live until they are copied into the result (or written to the file), and a
    fresh 66 MB buffer per scene costs ~25 ms of page faults on top of the copy. Each encoding
    thread keeps its largest buffer (66 MB for a SHARP scene).
    """
    rows = getattr(_SCRATCH, "rows", None)
    if rows is None or rows.shape[0] < n:
        rows = np.empty((n, len(VERTEX_PROPERTIES)), dtype=np.float32)
        _SCRATCH.rows = rows
    return rows[:n]


def metadata_elements(
    gaussians: Gaussians3D, camera: CameraInfo, quantiles: tuple[float, float] | None = None
) -> list[tuple[str, np.ndarray]]:
    """ml-sharp's extra one-property elements, in file order, as (name, little-endian array).

    ``quantiles``: the disparity quantiles when the caller already has them (else computed here).
    """
    if quantiles is None:
        quantiles = attributes.disparity_quantiles(gaussians.means)
    return _camera_elements(camera, gaussians.num_gaussians, quantiles)


def _camera_elements(
    camera: CameraInfo, num_gaussians: int, quantiles: tuple[float, float]
) -> list[tuple[str, np.ndarray]]:
    f, w, h = camera.focal_px, camera.width_px, camera.height_px
    lo, hi = quantiles
    return [
        ("extrinsic", np.eye(4).reshape(-1).astype("<f4")),
        ("intrinsic", np.array([f, 0, w * 0.5, 0, f, h * 0.5, 0, 0, 1], dtype=np.float64).astype("<f4")),
        ("image_size", np.array([w, h], dtype="<u4")),
        ("frame", np.array([1, num_gaussians], dtype="<i4")),
        ("disparity", np.array([lo, hi], dtype="<f4")),
        ("color_space", np.array([COLOR_SPACE_SRGB], dtype="u1")),
        ("version", np.array(PLY_LAYOUT_VERSION, dtype="u1")),
    ]


def _header(num_vertices: int, extras: list[tuple[str, np.ndarray]], comments: list[str]) -> bytes:
    """The header text exactly as plyfile writes it for these elements."""
    lines = ["ply", "format binary_little_endian 1.0"]
    lines += [f"comment {c}" for c in comments]
    lines.append(f"element vertex {num_vertices}")
    lines += [f"property float {name}" for name in VERTEX_PROPERTIES]
    for name, values in extras:
        kind = values.dtype.str.lstrip("<>|")
        lines += [f"element {name} {values.shape[0]}", f"property {_PLY_TYPE_NAMES[kind]} {name}"]
    lines.append("end_header")
    return ("\n".join(lines) + "\n").encode("ascii")


def _parts(
    gaussians: Gaussians3D, camera: CameraInfo | None, *, random_weights: bool
) -> list[bytes | memoryview]:
    """Header, vertex data and extra elements as buffer-protocol objects (no copies).

    The vertex rows live in this thread's scratch buffer: use the parts before the next call.
    """
    extras = metadata_elements(gaussians, camera) if camera is not None else []
    vertices = vertex_array(gaussians, out=_scratch_rows(gaussians.num_gaussians))  # (N, 14)
    return _file_parts(vertices, extras, random_weights=random_weights)


def _file_parts(
    vertices: np.ndarray, extras: list[tuple[str, np.ndarray]], *, random_weights: bool
) -> list[bytes | memoryview]:
    """Header, the (N, 14) C-contiguous float32 rows and the extra elements, as buffers."""
    comments = [RANDOM_WEIGHTS_COMMENT] if random_weights else []
    header = _header(vertices.shape[0], extras, comments)
    return [header, vertices.data.cast("B"), *(values.data.cast("B") for _, values in extras)]


def encode_ply_from_rows(
    vertices: np.ndarray,
    camera: CameraInfo | None,
    *,
    random_weights: bool = False,
    quantiles: tuple[float, float] | None = None,
) -> bytes:
    """A PLY from (N, 14) float32 vertex rows built elsewhere (a GPU, then copied once).

    ``camera`` None gives the clean vertex-only layout, else ml-sharp's. The disparity quantiles
    default to the rows' own z column (the means, exactly), so no second copy is needed.
    """
    if vertices.dtype != np.float32 or vertices.ndim != 2 or vertices.shape[1] != len(VERTEX_PROPERTIES):
        raise ValueError(f"vertex rows must be (N, 14) float32, got {vertices.shape} {vertices.dtype}")
    n = vertices.shape[0]
    extras: list[tuple[str, np.ndarray]] = []
    if camera is not None:
        if quantiles is None:
            quantiles = attributes.disparity_quantiles(torch.from_numpy(vertices[:, :3]))
        extras = _camera_elements(camera, n, quantiles)
    return b"".join(_file_parts(np.ascontiguousarray(vertices), extras, random_weights=random_weights))


def write_ply(
    fileobj: BinaryIO, gaussians: Gaussians3D, camera: CameraInfo, *, random_weights: bool = False
) -> None:
    """Stream an ml-sharp-layout PLY (vertex + extrinsic ... version elements) to a binary file."""
    for part in _parts(gaussians, camera, random_weights=random_weights):
        fileobj.write(part)


def encode_ply(gaussians: Gaussians3D, camera: CameraInfo, *, random_weights: bool = False) -> bytes:
    """The ml-sharp-layout PLY as bytes (the vertex array is copied once, into the result)."""
    return b"".join(_parts(gaussians, camera, random_weights=random_weights))


def write_ply_clean(fileobj: BinaryIO, gaussians: Gaussians3D, *, random_weights: bool = False) -> None:
    """Stream a vertex-only INRIA-layout PLY (for tools that reject extra elements)."""
    for part in _parts(gaussians, None, random_weights=random_weights):
        fileobj.write(part)


def encode_ply_clean(gaussians: Gaussians3D, *, random_weights: bool = False) -> bytes:
    """The vertex-only PLY as bytes."""
    return b"".join(_parts(gaussians, None, random_weights=random_weights))

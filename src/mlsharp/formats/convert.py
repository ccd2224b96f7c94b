"""Other formats from a stored ml-sharp PLY, without the network.

Why: the gateway keeps one PLY per scene (float32, every attribute the other formats derive
from). A later request for SPZ or .splat of the same photo is an encoding job, not an
inference: the PLY is parsed back to a :class:`Gaussians3D` and the usual encoders run on it.
The clean PLY reuses the vertex rows byte for byte.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch

from mlsharp.errors import InvalidParameterError
from mlsharp.formats import attributes
from mlsharp.formats.colorspace import srgb_to_linear
from mlsharp.formats.ply import RANDOM_WEIGHTS_COMMENT, VERTEX_PROPERTIES, _header
from mlsharp.gaussians import CameraInfo, Gaussians3D

_NUMPY_TYPES = {"float": "<f4", "uint": "<u4", "int": "<i4", "uchar": "u1"}


@dataclass(frozen=True)
class ParsedPly:
    """An ml-sharp PLY taken apart: vertex rows (N, 14), extra elements, header comments."""

    vertices: np.ndarray
    elements: dict[str, np.ndarray]
    comments: tuple[str, ...]

    @property
    def random_weights(self) -> bool:
        return RANDOM_WEIGHTS_COMMENT in self.comments

    def camera(self) -> CameraInfo:
        """The photo's camera from the ``intrinsic`` and ``image_size`` elements."""
        if "intrinsic" not in self.elements or "image_size" not in self.elements:
            raise InvalidParameterError("the PLY has no camera elements (a clean PLY cannot be converted)")
        width, height = (int(v) for v in self.elements["image_size"])
        return CameraInfo(focal_px=float(self.elements["intrinsic"][0]), width_px=width, height_px=height)

    def gaussians(self) -> Gaussians3D:
        """Inverse of the PLY attribute encodings (SH DC -> linear RGB, logit -> alpha, log -> scale)."""
        rows = torch.from_numpy(np.array(self.vertices, dtype=np.float32))  # a writable copy
        srgb = rows[:, 3:6] * attributes.SH_C0 + 0.5
        return Gaussians3D(
            means=rows[:, 0:3].clone(),
            scales=rows[:, 7:10].exp(),
            quaternions=rows[:, 10:14].clone(),
            colors_linear=srgb_to_linear(srgb),
            opacities=torch.sigmoid(rows[:, 6]),
        )


def parse_ply(data: bytes) -> ParsedPly:
    """Parse the binary little-endian PLY our writers produce (header, vertex, 1-property elements)."""
    end = data.find(b"end_header\n")
    if not data.startswith(b"ply\n") or end < 0:
        raise InvalidParameterError("not a binary PLY written by mlsharp")
    lines = data[:end].decode("ascii").splitlines()
    comments = tuple(line[len("comment ") :] for line in lines if line.startswith("comment "))
    layout: list[tuple[str, int, list[str]]] = []
    for line in lines:
        parts = line.split()
        if parts[0] == "element":
            layout.append((parts[1], int(parts[2]), []))
        elif parts[0] == "property":
            layout[-1][2].append(parts[1])
    offset = end + len(b"end_header\n")
    elements: dict[str, np.ndarray] = {}
    vertices = np.empty((0, len(VERTEX_PROPERTIES)), np.float32)
    for name, count, types in layout:
        if name == "vertex":
            if types != ["float"] * len(VERTEX_PROPERTIES):
                raise InvalidParameterError("unexpected vertex layout in the PLY")
            size = count * len(VERTEX_PROPERTIES) * 4
            flat = np.frombuffer(data, dtype="<f4", count=size // 4, offset=offset)
            vertices = flat.reshape(count, len(VERTEX_PROPERTIES))
        else:
            dtype = np.dtype(_NUMPY_TYPES[types[0]])
            size = count * dtype.itemsize
            elements[name] = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
        offset += size
    return ParsedPly(vertices, elements, comments)


def clean_from_parsed(parsed: ParsedPly) -> bytes:
    """The vertex-only PLY with the very same vertex bytes (and the random-weights comment)."""
    comments = [RANDOM_WEIGHTS_COMMENT] if parsed.random_weights else []
    header = _header(parsed.vertices.shape[0], [], comments)
    return header + np.ascontiguousarray(parsed.vertices, dtype="<f4").tobytes()


def convert_ply(ply: bytes, formats: Iterable[str]) -> dict[str, bytes]:
    """Every requested format from one stored ml-sharp PLY (``ply`` itself is returned as is)."""
    from mlsharp.formats import check_format, encode_scene

    wanted = [check_format(fmt) for fmt in formats]
    out: dict[str, bytes] = {}
    parsed = parse_ply(ply) if any(fmt != "ply" for fmt in wanted) else None
    gaussians: Gaussians3D | None = None
    for fmt in wanted:
        if fmt == "ply":
            out[fmt] = ply
        elif fmt == "ply-clean":
            assert parsed is not None
            out[fmt] = clean_from_parsed(parsed)
        else:
            assert parsed is not None
            gaussians = gaussians or parsed.gaussians()
            out[fmt] = encode_scene(fmt, gaussians, parsed.camera(), random_weights=parsed.random_weights)
    return out

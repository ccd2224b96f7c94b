"""Scenes to render: gaussians in their stored colour space, with the photo's camera.

Why not :class:`mlsharp.gaussians.Gaussians3D`: a renderer needs the colour space the file was
written in (our PLY and SPZ hold sRGB colours, which viewers blend as they are; a PLY marked
``color_space`` 1 holds linear ones) and the photo's camera, which only the ml-sharp PLY or the
metadata JSON beside an SPZ carry. Without either, the camera is estimated from the scene's
angular extent (a SHARP scene fills the photo's frustum) and the caller is told so.
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mlsharp.errors import MLSharpError
from mlsharp.formats import attributes
from mlsharp.formats.colorspace import linear_to_srgb
from mlsharp.gaussians import CameraInfo, Gaussians3D
from mlsharp.render.camera import Camera

COLOR_SPACES = ("srgb", "linear")
_PLY_COLOR_SPACES = {0: "srgb", 1: "linear"}


class SceneFileError(MLSharpError):
    """A scene file is missing, unreadable, or not a PLY/SPZ scene."""

    code = "invalid_scene"


@dataclass
class RenderScene:
    """Gaussians as a renderer takes them (float32 tensors on one device)."""

    means: Tensor  # (N, 3) metres, OpenCV frame
    quaternions: Tensor  # (N, 4) w x y z, any norm > 0
    scales: Tensor  # (N, 3) standard deviations, metres
    opacities: Tensor  # (N,) alpha in [0, 1]
    colors: Tensor  # (N, 3) RGB in ``color_space``
    color_space: str = "srgb"
    camera: Camera | None = None  # the photo's camera, when the file says
    camera_source: str = "none"  # "ply", "metadata", "estimated", "none"
    random_weights: bool = False

    def __post_init__(self) -> None:
        if self.color_space not in COLOR_SPACES:
            raise ValueError(f"color_space must be one of {COLOR_SPACES}, got {self.color_space!r}")

    @property
    def start_camera(self) -> Camera:
        """The camera every view starts from; ``load_scene`` always sets one, a scene built in
        memory without one is a caller's error."""
        if self.camera is None:
            raise SceneFileError("the scene carries no camera to render from")
        return self.camera

    @property
    def num_gaussians(self) -> int:
        return int(self.means.shape[0])

    def to(self, device: torch.device | str) -> RenderScene:
        """The same scene with its tensors on ``device``."""
        move = {
            k: getattr(self, k).to(device) for k in ("means", "quaternions", "scales", "opacities", "colors")
        }
        return replace(self, **move)


def photo_camera(camera: CameraInfo) -> Camera:
    """The photo's camera for a scene in its own frame (identity pose, centred principal point)."""
    f = float(camera.focal_px)
    return Camera(f, f, camera.width_px * 0.5, camera.height_px * 0.5, camera.width_px, camera.height_px)


def from_gaussians(gaussians: Gaussians3D, camera: CameraInfo | None = None) -> RenderScene:
    """A pipeline result as its files render: colours converted to sRGB, as the PLY stores them."""
    return RenderScene(
        means=gaussians.means.float(),
        quaternions=gaussians.quaternions.float(),
        scales=gaussians.scales.float(),
        opacities=gaussians.opacities.float(),
        colors=linear_to_srgb(gaussians.colors_linear.float()),
        color_space="srgb",
        camera=photo_camera(camera) if camera is not None else None,
        camera_source="pipeline" if camera is not None else "none",
    )


def focus_depth_m(scene: RenderScene) -> float:
    """Median depth of the gaussians in front of the photo's camera: where trajectories look."""
    z = scene.means[:, 2]
    z = z[z > 0]
    if z.numel() == 0:
        raise SceneFileError("the scene has no gaussian in front of the camera")
    return float(z.float().median())


def estimate_camera(scene: RenderScene, long_side_px: int = 1024) -> Camera:
    """A camera at the origin whose frustum holds 99 % of the gaussians (per axis, by angle)."""
    means = scene.means.float()
    front = means[means[:, 2] > 0]
    if front.shape[0] == 0:
        raise SceneFileError("cannot estimate a camera: no gaussian in front of the origin")
    tan = (front[:, :2] / front[:, 2:3]).abs()  # (M, 2)
    sample = tan[torch.randperm(tan.shape[0], generator=torch.Generator().manual_seed(0))[:100_000]]
    tan_x, tan_y = (max(float(v), 1e-3) for v in torch.quantile(sample, 0.99, dim=0))
    width = long_side_px if tan_x >= tan_y else max(2, round(long_side_px * tan_x / tan_y))
    height = long_side_px if tan_y > tan_x else max(2, round(long_side_px * tan_y / tan_x))
    focal = 0.5 * width / tan_x
    return Camera(focal, focal, width * 0.5, height * 0.5, width, height)


def _camera_from_metadata(meta: dict[str, Any]) -> Camera | None:
    intrinsics, size = meta.get("intrinsics"), meta.get("image_size")
    if not isinstance(intrinsics, dict) or not isinstance(size, dict):
        return None
    try:
        width, height = int(size["width_px"]), int(size["height_px"])
        focal = float(intrinsics["focal_px"])
        cx = float(intrinsics.get("cx_px", width * 0.5))
        cy = float(intrinsics.get("cy_px", height * 0.5))
        return Camera(focal, focal, cx, cy, width, height)
    except (KeyError, TypeError, ValueError):
        return None


def _read_metadata(path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SceneFileError(f"cannot read scene metadata {path}: {error}") from None
    if not isinstance(meta, dict):
        raise SceneFileError(f"scene metadata {path} is not a JSON object")
    return meta


def _scene_from_ply(data: bytes, name: str) -> RenderScene:
    from mlsharp.formats.convert import parse_ply

    if b"\nformat binary_little_endian 1.0\n" not in data[:200]:
        raise SceneFileError(f"{name} is not a 3DGS scene PLY this renderer reads (not binary little-endian)")
    try:
        parsed = parse_ply(data)
    except (MLSharpError, ValueError, UnicodeDecodeError, KeyError, IndexError) as error:
        raise SceneFileError(f"{name} is not a 3DGS scene PLY this renderer reads ({error})") from None
    rows = torch.from_numpy(np.array(parsed.vertices, dtype=np.float32))  # (N, 14), a writable copy
    code = int(parsed.elements["color_space"][0]) if "color_space" in parsed.elements else 0
    camera = None
    if "intrinsic" in parsed.elements and "image_size" in parsed.elements:
        k = [float(v) for v in parsed.elements["intrinsic"]]  # (9,) row-major K
        size = [int(v) for v in parsed.elements["image_size"]]
        pose = torch.eye(4, dtype=torch.float64)
        if "extrinsic" in parsed.elements and parsed.elements["extrinsic"].shape[0] == 16:
            pose = torch.from_numpy(parsed.elements["extrinsic"].astype(np.float64).reshape(4, 4).copy())
        try:
            camera = Camera(k[0], k[4], k[2], k[5], size[0], size[1], pose)
        except (ValueError, IndexError):
            raise SceneFileError(f"{name}: its camera elements are not a valid pinhole camera") from None
    return RenderScene(
        means=rows[:, 0:3].clone(),
        quaternions=rows[:, 10:14].clone(),
        scales=rows[:, 7:10].exp(),
        opacities=torch.sigmoid(rows[:, 6]),
        colors=rows[:, 3:6] * attributes.SH_C0 + 0.5,
        color_space=_PLY_COLOR_SPACES.get(code, "srgb"),
        camera=camera,
        camera_source="ply" if camera is not None else "none",
        random_weights=parsed.random_weights,
    )


def _scene_from_spz(data: bytes, name: str) -> RenderScene:
    from mlsharp.formats.spz import decode_spz

    try:
        spz = decode_spz(data)
    except (ValueError, OSError, EOFError, zlib.error, struct.error) as error:
        raise SceneFileError(f"{name} is not a readable SPZ scene ({error})") from None
    return RenderScene(
        means=torch.from_numpy(spz.means.copy()),
        quaternions=torch.from_numpy(np.ascontiguousarray(spz.quaternions)),
        scales=torch.from_numpy(np.exp(spz.log_scales)),
        opacities=torch.from_numpy(spz.opacities.copy()),
        colors=torch.from_numpy(spz.sh_dc * np.float32(attributes.SH_C0) + np.float32(0.5)),
        color_space="srgb",  # our SPZ writer stores the sRGB colour's SH DC, as the PLY does
    )


def _parse(data: bytes, name: str) -> RenderScene:
    """A PLY or SPZ scene by content, not by name; a camera only if the PLY carries one."""
    if data.startswith(b"ply\n"):
        scene = _scene_from_ply(data, name)
    elif data.startswith(b"\x1f\x8b"):
        scene = _scene_from_spz(data, name)
    else:
        raise SceneFileError(f"{name} is not a scene: expected a binary PLY or an SPZ file")
    if scene.num_gaussians == 0:
        raise SceneFileError(f"{name} holds no gaussians")
    return scene


def scene_from_bytes(data: bytes, name: str = "scene") -> RenderScene:
    """A scene held in memory (the gateway's stored PLY), with its camera or an estimated one."""
    scene = _parse(data, name)
    if scene.camera is None:
        scene = replace(scene, camera=estimate_camera(scene), camera_source="estimated")
    return scene


def load_scene(path: Path, metadata_path: Path | None = None) -> RenderScene:
    """Read a PLY or SPZ scene (by content, not by name) and find the photo's camera.

    The camera comes from the PLY's own elements, else from the metadata JSON (``metadata_path``
    or ``<stem>.json`` beside the scene), else it is estimated (``camera_source`` says which).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SceneFileError(f"scene file not found: {path}") from None
    except OSError as error:
        raise SceneFileError(f"cannot read scene file {path}: {error.strerror or error}") from None
    scene = _parse(data, str(path))
    sidecar = metadata_path if metadata_path is not None else path.with_suffix(".json")
    if metadata_path is not None or (scene.camera is None and sidecar.is_file()):
        meta = _read_metadata(sidecar)
        camera = _camera_from_metadata(meta)
        if camera is None:
            raise SceneFileError(f"scene metadata {sidecar} has no usable intrinsics/image_size")
        space = meta.get("color_space", scene.color_space)
        scene = replace(scene, camera=camera, camera_source="metadata")
        if space in COLOR_SPACES and space != scene.color_space and data.startswith(b"\x1f\x8b"):
            scene = replace(scene, color_space=space)
        scene.random_weights = scene.random_weights or bool(meta.get("random_weights", False))
    if scene.camera is None:
        scene = replace(scene, camera=estimate_camera(scene), camera_source="estimated")
    camera = scene.start_camera
    if not all(math.isfinite(float(v)) for v in (camera.fx_px, camera.fy_px)):
        raise SceneFileError(f"{path}: the camera's focal length is not finite")
    return scene

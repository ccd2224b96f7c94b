"""Pinhole cameras in the scenes' OpenCV frame (x right, y down, z forward), and look-at poses.

Why its own module: every renderer, trajectory and the CLI share one camera type. A SHARP scene
lives in the photo's camera frame, so the photo's camera is the identity pose with the stored
intrinsics; every other view is a pose relative to it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor


def _identity() -> Tensor:
    return torch.eye(4, dtype=torch.float64)


@dataclass(frozen=True)
class Camera:
    """A pinhole camera: intrinsics in pixels (pixel centres at +0.5) and a world-to-camera pose."""

    fx_px: float
    fy_px: float
    cx_px: float
    cy_px: float
    width_px: int
    height_px: int
    world_to_camera: Tensor = field(default_factory=_identity)  # (4, 4) float64, OpenCV frame

    def __post_init__(self) -> None:
        if not (self.fx_px > 0 and self.fy_px > 0 and self.width_px > 0 and self.height_px > 0):
            raise ValueError(f"camera focal lengths and size must be positive, got {self}")
        if tuple(self.world_to_camera.shape) != (4, 4):
            raise ValueError(f"world_to_camera must be (4, 4), got {tuple(self.world_to_camera.shape)}")

    @property
    def intrinsics(self) -> Tensor:
        """K as a (3, 3) float64 tensor."""
        return torch.tensor(
            [[self.fx_px, 0.0, self.cx_px], [0.0, self.fy_px, self.cy_px], [0.0, 0.0, 1.0]],
            dtype=torch.float64,
        )

    @property
    def camera_to_world(self) -> Tensor:
        """The inverse pose (4, 4) float64: columns are the camera axes and its position."""
        inverse: Tensor = torch.linalg.inv(self.world_to_camera.to(torch.float64))
        return inverse

    @property
    def position(self) -> Tensor:
        """(3,) float64 camera centre in world coordinates."""
        return self.camera_to_world[:3, 3]

    @property
    def vertical_fov_deg(self) -> float:
        return math.degrees(2 * math.atan(self.height_px / (2 * self.fy_px)))

    def with_pose(self, world_to_camera: Tensor) -> Camera:
        """The same intrinsics at another pose."""
        return replace(self, world_to_camera=world_to_camera.to(torch.float64))

    def resized(self, width_px: int, height_px: int) -> Camera:
        """This camera for a (width, height) image: the whole original frame fits, centred.

        Why fit (not fill): a preview of another aspect ratio must still show everything the photo
        showed; the margins show whatever the scene holds there (usually background).
        """
        if width_px <= 0 or height_px <= 0:
            raise ValueError(f"image size must be positive, got {width_px}x{height_px}")
        zoom = min(width_px / self.width_px, height_px / self.height_px)
        return replace(
            self,
            fx_px=self.fx_px * zoom,
            fy_px=self.fy_px * zoom,
            cx_px=width_px * 0.5 + (self.cx_px - self.width_px * 0.5) * zoom,
            cy_px=height_px * 0.5 + (self.cy_px - self.height_px * 0.5) * zoom,
            width_px=int(width_px),
            height_px=int(height_px),
        )


def default_size(camera: Camera, long_side_px: int) -> tuple[int, int]:
    """(width, height) with the photo's aspect ratio, the longer side long_side_px, both even.

    Even sizes because H.264 in yuv420p needs them; the rounding changes the aspect by < 1 px.
    """
    scale = long_side_px / max(camera.width_px, camera.height_px)
    width = max(2, 2 * round(camera.width_px * scale / 2))
    height = max(2, 2 * round(camera.height_px * scale / 2))
    return width, height


def look_at(position: Tensor, target: Tensor) -> Tensor:
    """World-to-camera (4, 4) float64 for a camera at position looking at target, y down.

    OpenCV axes: z = forward, x = down x z (right), y = z x x (down). The scene's "down" is +y,
    the photo's own; looking along +z from the origin gives exactly the identity.
    """
    position = position.to(torch.float64)
    forward = target.to(torch.float64) - position
    norm = torch.linalg.vector_norm(forward)
    if norm <= 0:
        raise ValueError("look_at: position and target coincide")
    z = forward / norm
    down = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
    x = torch.linalg.cross(down, z)
    x_norm = torch.linalg.vector_norm(x)
    if x_norm <= 1e-12:
        raise ValueError("look_at: the view direction is vertical")
    x = x / x_norm
    y = torch.linalg.cross(z, x)
    rotation = torch.stack([x, y, z])  # (3, 3) rows: camera axes in world coordinates
    pose = torch.eye(4, dtype=torch.float64)
    pose[:3, :3] = rotation
    pose[:3, 3] = -(rotation @ position)
    return pose

"""Camera paths around a scene, all starting at the photo's own camera.

Why small motions: a SHARP scene is a single view's 3D layer; it holds up near the photo's
viewpoint and shows holes far from it. The amplitudes are fractions of the focus depth (the
median depth of the scene), so a room and a landscape move alike on screen.

- ``orbit``: the camera circles once in the image plane (a circle through the photo's viewpoint,
  rising first), always looking at the focus point: the scene turns in front of you.
- ``dolly``: the camera moves straight in along the optical axis and back, no rotation.
- ``swing``: the camera swings left and right along an arc around the focus point (a yaw of
  +-``swing_deg``), looking at it.

Frames sample one period at t = i / N (i = 0..N-1), so a video loops without a repeated frame
and frame 0 is the photo's camera exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from mlsharp.render.camera import Camera, look_at

TRAJECTORIES = ("orbit", "dolly", "swing")


@dataclass(frozen=True)
class TrajectorySettings:
    """Amplitudes, as fractions of the focus depth (orbit, dolly) or in degrees (swing)."""

    orbit_radius: float = 0.06
    dolly_distance: float = 0.2
    swing_deg: float = 6.0


def _relative_pose(name: str, t: float, focus_depth_m: float, settings: TrajectorySettings) -> Tensor:
    """World-to-camera (4, 4) float64 in the start camera's frame at phase t in [0, 1)."""
    angle = 2 * math.pi * t
    target = torch.tensor([0.0, 0.0, focus_depth_m], dtype=torch.float64)
    if name == "orbit":
        radius = settings.orbit_radius * focus_depth_m
        position = torch.tensor(
            [radius * math.sin(angle), radius * (math.cos(angle) - 1.0), 0.0], dtype=torch.float64
        )
        return look_at(position, target)
    if name == "dolly":
        pose = torch.eye(4, dtype=torch.float64)
        pose[2, 3] = -settings.dolly_distance * focus_depth_m * 0.5 * (1.0 - math.cos(angle))
        return pose
    if name == "swing":
        yaw = math.radians(settings.swing_deg) * math.sin(angle)
        # The photo's centre rotated about the vertical axis through the focus point.
        position = torch.tensor(
            [-focus_depth_m * math.sin(yaw), 0.0, focus_depth_m * (1.0 - math.cos(yaw))], dtype=torch.float64
        )
        return look_at(position, target)
    raise ValueError(f"unknown trajectory {name!r}; known: {', '.join(TRAJECTORIES)}")


def trajectory(
    name: str,
    start: Camera,
    focus_depth_m: float,
    frames: int,
    settings: TrajectorySettings | None = None,
) -> list[Camera]:
    """``frames`` cameras along the named path; frame 0 is ``start`` itself (same pose, bit for bit)."""
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    if not (focus_depth_m > 0 and math.isfinite(focus_depth_m)):
        raise ValueError(f"focus depth must be positive and finite, got {focus_depth_m}")
    settings = settings or TrajectorySettings()
    cameras = [start]
    for i in range(1, frames):
        relative = _relative_pose(name, i / frames, focus_depth_m, settings)
        cameras.append(start.with_pose(relative @ start.world_to_camera.to(torch.float64)))
    if frames == 1:
        _relative_pose(name, 0.0, focus_depth_m, settings)  # still reject unknown names
    return cameras

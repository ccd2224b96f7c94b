"""Pictures and videos of gaussian scenes: cameras, trajectories, a torch rasterizer, metrics.

``render(scene, camera)`` gives an sRGB image; ``load_scene(path)`` reads a PLY/SPZ with the
photo's camera; ``trajectory(name, camera, focus_depth_m(scene), frames)`` gives camera paths.
"""

from mlsharp.render.camera import Camera, default_size, look_at
from mlsharp.render.metrics import psnr, ssim
from mlsharp.render.renderer import BACKENDS, render, to_uint8
from mlsharp.render.scene import RenderScene, SceneFileError, focus_depth_m, from_gaussians, load_scene
from mlsharp.render.trajectory import TRAJECTORIES, TrajectorySettings, trajectory

__all__ = [
    "BACKENDS",
    "TRAJECTORIES",
    "Camera",
    "RenderScene",
    "SceneFileError",
    "TrajectorySettings",
    "default_size",
    "focus_depth_m",
    "from_gaussians",
    "load_scene",
    "look_at",
    "psnr",
    "render",
    "ssim",
    "to_uint8",
    "trajectory",
]

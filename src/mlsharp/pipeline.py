"""The eager PyTorch path from decoded image to encoded scene files.

This is the reference the served path (Triton) is compared against: decode -> network input ->
SharpPredictor -> unproject -> encode. It holds no numerics of its own; each stage is a core
function, so the Triton models and this pipeline cannot drift apart.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from mlsharp.checkpoint import LoadedPredictor
from mlsharp.formats import build_metadata, check_format, encode_scene
from mlsharp.formats.metadata import SceneMetadata
from mlsharp.gaussians import CameraInfo, Gaussians3D, unproject
from mlsharp.imaging import DecodedImage
from mlsharp.preprocess import to_network_input


@dataclass
class PredictedScene:
    """One image's result: encoded files per format plus the metadata document."""

    gaussians: Gaussians3D
    camera: CameraInfo
    encoded: dict[str, bytes]
    metadata: SceneMetadata
    stage_seconds: dict[str, float] = field(default_factory=dict)


class ScenePipeline:
    """Runs one loaded predictor on decoded images, on the predictor's device."""

    def __init__(self, loaded: LoadedPredictor, device: str | torch.device = "cpu") -> None:
        self.loaded = loaded
        self.device = torch.device(device)
        self.model = loaded.model.to(self.device).eval()

    @property
    def working_size_px(self) -> int:
        return self.loaded.config.working_size_px

    @torch.inference_mode()
    def predict(self, decoded: DecodedImage, formats: Sequence[str] = ("ply",)) -> PredictedScene:
        """Predict and encode one image; `formats` are validated before any work is done."""
        for fmt in formats:
            check_format(fmt)
        seconds: dict[str, float] = {}
        start = time.perf_counter()
        image, disparity_factor = to_network_input(decoded.rgb, decoded.focal_px, self.working_size_px)
        seconds["preprocess"] = time.perf_counter() - start

        start = time.perf_counter()
        raw = self.model(image.to(self.device), disparity_factor.to(self.device))
        seconds["network"] = time.perf_counter() - start

        start = time.perf_counter()
        camera = CameraInfo(focal_px=decoded.focal_px, width_px=decoded.width_px, height_px=decoded.height_px)
        means, singular_values, quaternions, colors, opacities = (tensor[0] for tensor in raw)
        gaussians = unproject(
            means, singular_values, quaternions, colors, opacities, camera, self.working_size_px
        )
        seconds["unproject"] = time.perf_counter() - start

        start = time.perf_counter()
        random_weights = self.loaded.random_weights
        encoded = {
            fmt: encode_scene(fmt, gaussians, camera, random_weights=random_weights) for fmt in formats
        }
        metadata = build_metadata(
            gaussians,
            camera,
            model_id=self.loaded.model_id,
            random_weights=random_weights,
            working_size_px=self.working_size_px,
            image_info={"focal_source": decoded.focal_source, "source_format": decoded.source_format},
        )
        seconds["encode"] = time.perf_counter() - start
        return PredictedScene(gaussians, camera, encoded, metadata, seconds)

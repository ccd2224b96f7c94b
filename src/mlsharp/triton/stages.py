"""What each python-backend model computes, on numpy arrays, by calling the core package.

Why separate from ``model.py``: the same code is unit-testable without a server, and it holds no
numerics of its own — decoding, resizing, unprojection and encoding are the core functions the
eager :class:`mlsharp.pipeline.ScenePipeline` uses, so served and eager paths cannot drift.
Each ``run`` takes the arrays of ONE request (leading batch axis ``B``, usually 1).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from mlsharp.triton.backend import Arrays, as_bytes, as_text, bytes_column, flag
from mlsharp.triton.models import NETWORK_INPUTS, RAW_OUTPUT_NAMES, REQUEST_INPUTS

PREPROCESS_INPUTS = tuple(tensor.name for tensor in REQUEST_INPUTS)
if TYPE_CHECKING:
    from mlsharp.formats.metadata import ImageInfo
    from mlsharp.gaussians import CameraInfo, Gaussians3D
    from mlsharp.imaging import DecodedImage

POSTPROCESS_INPUTS = (*RAW_OUTPUT_NAMES, "camera", "image_info", "formats")


def check_formats(values: np.ndarray) -> list[str]:
    """The requested output formats of one item, validated (fails before any network time).

    At least one; duplicates are refused so that ``scenes[i]`` always answers ``formats[i]``.
    """
    from mlsharp.errors import InvalidParameterError
    from mlsharp.formats import check_format as core_check_format

    names = [core_check_format(as_text(value).strip()) for value in values.reshape(-1)]
    if not names:
        raise InvalidParameterError("request at least one output format")
    if len(set(names)) != len(names):
        raise InvalidParameterError(f"output formats repeat: {names}")
    return names


def _override(value: float) -> float | None:
    """Wire convention: <= 0 means "not set"; NaN/inf pass through so decoding rejects them."""
    value = float(value)
    return None if math.isfinite(value) and value <= 0 else value


def decode_item(inputs: Arrays, index: int, max_pixels: int | None) -> DecodedImage:
    """Item ``index`` of one preprocess request, formats checked and image decoded (typed errors)."""
    from mlsharp.imaging import DEFAULT_MAX_PIXELS, decode_image

    batch = inputs["image_bytes"].shape[0]
    check_formats(inputs["formats"].reshape(batch, -1)[index])
    return decode_image(
        as_bytes(inputs["image_bytes"].reshape(batch, -1)[index, 0]),
        focal_px=_override(inputs["focal_px"].reshape(batch, -1)[index, 0]),
        focal_mm=_override(inputs["focal_mm"].reshape(batch, -1)[index, 0]),
        max_pixels=max_pixels or DEFAULT_MAX_PIXELS,
    )


def camera_and_info(decoded: Sequence[DecodedImage]) -> tuple[np.ndarray, np.ndarray]:
    """``camera`` [B, 3] float64 (focal, width, height in px) and ``image_info`` [B, 1] JSON bytes."""
    cameras = [[float(d.focal_px), float(d.width_px), float(d.height_px)] for d in decoded]
    infos = []
    for d in decoded:
        info: ImageInfo = {"focal_source": d.focal_source, "source_format": d.source_format}
        infos.append(json.dumps(info).encode())
    return np.asarray(cameras, dtype=np.float64), bytes_column(infos)


class PreprocessStage:
    """Bytes + focal overrides -> ``image``, ``disparity_factor``, ``camera``, ``image_info``."""

    def __init__(self, parameters: Mapping[str, str]) -> None:
        self.working_size_px = int(parameters["working_size_px"])
        self.max_pixels = int(parameters["max_pixels"]) if parameters.get("max_pixels") else None

    def run(self, inputs: Arrays) -> Arrays:
        from mlsharp.preprocess import to_network_input

        images, factors, decoded = [], [], []
        for i in range(inputs["image_bytes"].shape[0]):
            item = decode_item(inputs, i, self.max_pixels)
            image, factor = to_network_input(item.rgb, item.focal_px, self.working_size_px)
            images.append(image.numpy())
            factors.append(factor.numpy().reshape(1, 1))
            decoded.append(item)
        camera, image_info = camera_and_info(decoded)
        return {
            "image": np.concatenate(images).astype(np.float32, copy=False),
            "disparity_factor": np.concatenate(factors).astype(np.float32, copy=False),
            "camera": camera,
            "image_info": image_info,
        }


def concat_requests(requests: Sequence[Arrays]) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """One network batch from the requests of an ``execute`` call, and each request's item count.

    ``requests``: per request ``image[B,3,S,S]`` and ``disparity_factor[B,1]`` (or ``[B]``).
    """
    images = [np.ascontiguousarray(r["image"], dtype=np.float32) for r in requests]
    factors = [np.asarray(r["disparity_factor"], dtype=np.float32).reshape(-1) for r in requests]
    return np.concatenate(images), np.concatenate(factors), [len(f) for f in factors]


def item_by_item(
    run_one: Callable[[np.ndarray, np.ndarray], Sequence[np.ndarray]], image: np.ndarray, factor: np.ndarray
) -> list[np.ndarray]:
    """``run_one`` on each item of ``image[B,3,S,S]`` / ``factor[B]`` (for a graph compiled for one
    item), the raw outputs concatenated back along the batch axis."""
    parts = [list(run_one(image[i : i + 1], factor[i : i + 1])) for i in range(len(factor))]
    if len(parts) == 1:
        return parts[0]
    return [np.concatenate([part[k] for part in parts]) for k in range(len(RAW_OUTPUT_NAMES))]


def split_outputs(outputs: Sequence[np.ndarray], sizes: Sequence[int]) -> list[Arrays]:
    """The batched raw outputs back per request, in request order."""
    results, start = [], 0
    for size in sizes:
        results.append(
            {name: out[start : start + size] for name, out in zip(RAW_OUTPUT_NAMES, outputs, strict=True)}
        )
        start += size
    return results


class OnnxRunner:
    """The CPU form of ``sharp``: every request of one ``execute`` call in ONE ONNX Runtime run.

    Requests are concatenated along the batch axis and the outputs split back, because the python
    backend hands over the dynamic batcher's requests as a list and never stacks them itself.

    No CPU memory arena and no memory pattern: with them ONNX Runtime keeps every activation
    buffer of the largest run resident for the life of the session. Measured at the full preset
    (one photo, 2-core AMX Xeon): peak 10.39 GiB and 10.39 GiB held after the run with both, against
    peak 6.88 GiB and 3.11 GiB held without (eager PyTorch fp32 peaks at 8.14 GiB), at 104.3 s
    against 97.9 s for the forward. The buffers are allocated per run instead, a few percent of a
    forward that takes minutes.
    """

    def __init__(self, model_path: Path, intra_op_threads: int = 0) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.enable_cpu_mem_arena = False
        options.enable_mem_pattern = False
        if intra_op_threads > 0:
            options.intra_op_num_threads = intra_op_threads
        self.session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        batch_dim = self.session.get_inputs()[0].shape[0]
        #: False when the graph was exported with a fixed batch of 1 (then items run one by one)
        self.dynamic_batch = not isinstance(batch_dim, int) or batch_dim != 1

    def run(self, requests: Sequence[Arrays]) -> list[Arrays]:
        """``requests``: per request ``image[B,3,S,S]`` and ``disparity_factor[B,1]`` (or ``[B]``)."""
        image, factor, sizes = concat_requests(requests)
        if self.dynamic_batch:
            return split_outputs(self._run(image, factor), sizes)
        return split_outputs(item_by_item(self._run, image, factor), sizes)

    def _run(self, image: np.ndarray, factor: np.ndarray) -> list[np.ndarray]:
        feed = dict(zip(NETWORK_INPUTS, (image, factor), strict=True))
        return list(self.session.run(list(RAW_OUTPUT_NAMES), feed))


def postprocess_item(inputs: Mapping[str, object], index: int) -> tuple[list[str], CameraInfo, ImageInfo]:
    """Item ``index`` of one postprocess request: its checked formats, camera and image info
    (``camera``, ``image_info`` and ``formats`` numpy; the raw outputs are not read here)."""
    from mlsharp.gaussians import CameraInfo

    camera_rows = np.asarray(inputs["camera"])
    batch = camera_rows.shape[0]
    formats = check_formats(np.asarray(inputs["formats"]).reshape(batch, -1)[index])
    focal, width, height = (float(v) for v in camera_rows[index])
    camera = CameraInfo(focal_px=focal, width_px=int(width), height_px=int(height))
    info: ImageInfo = json.loads(as_text(np.asarray(inputs["image_info"]).reshape(batch, -1)[index, 0]))
    return formats, camera, info


def scenes_array(scenes: Sequence[Sequence[bytes]]) -> np.ndarray:
    """``scenes`` [B, F] BYTES: row i holds item i's files in its requested format order."""
    out = np.empty((len(scenes), len(scenes[0])), dtype=np.object_)
    for i, row in enumerate(scenes):  # one request's items share the formats tensor's width
        out[i, :] = row
    return out


class PostprocessStage:
    """Raw outputs + camera -> ``scenes`` (one per requested format) and ``metadata`` JSON.

    One unprojection per item; every format is encoded from it.
    """

    def __init__(self, parameters: Mapping[str, str]) -> None:
        self.working_size_px = int(parameters["working_size_px"])
        self.model_id = parameters["model_id"]
        self.random_weights = flag(parameters, "random_weights")

    def metadata(
        self,
        gaussians: Gaussians3D,
        camera: CameraInfo,
        info: ImageInfo,
        quantiles: tuple[float, float] | None = None,
    ) -> bytes:
        """One item's metadata JSON, stamped with this repository's model id (both stage forms)."""
        from mlsharp.formats import build_metadata
        from mlsharp.formats.metadata import metadata_json_bytes

        meta = build_metadata(
            gaussians,
            camera,
            model_id=self.model_id,
            random_weights=self.random_weights,
            working_size_px=self.working_size_px,
            image_info=info,
            quantiles=quantiles,
        )
        return metadata_json_bytes(meta)

    def run(self, inputs: Arrays) -> Arrays:
        from mlsharp.formats import encode_scene
        from mlsharp.gaussians import unproject

        scenes, metadata = [], []
        for i in range(inputs["camera"].shape[0]):
            formats, camera, info = postprocess_item(inputs, i)
            raw = [torch.from_numpy(np.ascontiguousarray(inputs[name][i])) for name in RAW_OUTPUT_NAMES]
            means, singular_values, quaternions, colors, opacities = raw
            gaussians = unproject(
                means, singular_values, quaternions, colors, opacities, camera, self.working_size_px
            )
            scenes.append(
                [encode_scene(f, gaussians, camera, random_weights=self.random_weights) for f in formats]
            )
            metadata.append(self.metadata(gaussians, camera, info))
        return {"scenes": scenes_array(scenes), "metadata": bytes_column(metadata)}

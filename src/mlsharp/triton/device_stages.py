"""The GPU target's ``preprocess`` and ``postprocess``: the stages of :mod:`stages` on torch tensors.

Why a second form: on the GPU target both models are python-backend ``KIND_GPU`` instances with
``FORCE_CPU_ONLY_INPUT_TENSORS`` off, so tensors travel between the models by DLPack and stay on
the GPU. Preprocess decodes on the CPU (Pillow), uploads the uint8 pixels once and resizes there;
postprocess unprojects there and builds each format's file rows there, so exactly ONE
device-to-host copy per requested format comes back (plus four order statistics for the disparity
quantiles). The numerics are the core functions the numpy stages call: on CPU tensors the outputs
are equal to :class:`stages.PreprocessStage`'s and :class:`stages.PostprocessStage`'s, bytes and
all (tests/triton/test_device_stages.py), so CI checks the GPU code path without a GPU.

Which form a model instance runs (:func:`instance_device`), from the config parameter
``stage_device``:

- ``auto`` (default, also when absent): by Triton's instance kind. ``KIND_GPU`` ->
  ``cuda:<model_instance_device_id>`` and the device stages with DLPack I/O; anything else -> the
  numpy stages, exactly as before (the CPU target does not change).
- ``cpu-torch``: the device stages on CPU torch tensors (tests; a CPU check of the GPU code path).

``spz_compresslevel`` (postprocess, optional, 1-9): the gzip level of SPZ files; default
:data:`mlsharp.formats.spz.DEFAULT_COMPRESSLEVEL` (6, the reference library's), whose bytes equal
the CPU encoder's. Measured (benchmarks/README.md, "SPZ gzip levels", 1,179,648 gaussians on the
2-core Xeon): level 1 takes 0.40-0.46x the time of level 6 (about 0.5 s saved) for 1.4 % more
bytes, so the GPU target's config sets 1 (:data:`mlsharp.triton.gpu_target.GPU_SPZ_COMPRESSLEVEL`).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from mlsharp.triton.backend import (
    Executor,
    Tensors,
    bytes_column,
    each_request,
    kind_device,
    model_parameters,
)
from mlsharp.triton.models import RAW_OUTPUT_NAMES
from mlsharp.triton.stages import (
    POSTPROCESS_INPUTS,
    PREPROCESS_INPUTS,
    PostprocessStage,
    PreprocessStage,
    camera_and_info,
    decode_item,
    postprocess_item,
    scenes_array,
)

if TYPE_CHECKING:
    from mlsharp.gaussians import CameraInfo, Gaussians3D

STAGE_DEVICE_PARAMETER = "stage_device"
STAGE_DEVICE_CHOICES = ("auto", "cpu-torch")
#: postprocess inputs read as torch tensors (the raw network outputs) and as numpy (the rest)
POSTPROCESS_TORCH_INPUTS = RAW_OUTPUT_NAMES
POSTPROCESS_NUMPY_INPUTS = ("camera", "image_info", "formats")
#: preprocess inputs: all small or BYTES, read as numpy
PREPROCESS_NUMPY_INPUTS = PREPROCESS_INPUTS
#: raw output dtypes accepted (a half-precision engine's outputs are upcast on the device)
_RAW_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def instance_device(args: Mapping[str, Any], parameters: Mapping[str, str]) -> torch.device | None:
    """The device a python model instance runs its stage on; None for the numpy stages.

    ``args`` is Triton's ``initialize`` dict (``model_instance_kind`` "GPU"/"CPU"/...,
    ``model_instance_device_id``), ``parameters`` the model's config parameters.
    """
    choice = (parameters.get(STAGE_DEVICE_PARAMETER) or "auto").strip().lower()
    if choice not in STAGE_DEVICE_CHOICES:
        raise ValueError(
            f"{STAGE_DEVICE_PARAMETER} must be one of {', '.join(STAGE_DEVICE_CHOICES)}, got {choice!r}"
        )
    if choice == "cpu-torch":
        return torch.device("cpu")
    return kind_device(args)


def configured_spz_level(parameters: Mapping[str, str]) -> int:
    """The ``spz_compresslevel`` parameter (1-9), or the encoder's default when absent."""
    from mlsharp.formats.spz import DEFAULT_COMPRESSLEVEL

    raw = (parameters.get("spz_compresslevel") or "").strip()
    level = int(raw) if raw else DEFAULT_COMPRESSLEVEL
    if not 1 <= level <= 9:
        raise ValueError(f"spz_compresslevel must be 1..9, got {level}")
    return level


class DevicePreprocessStage:
    """Bytes + focal overrides -> ``image`` [B,3,S,S] and ``disparity_factor`` [B,1] (float32 torch
    on ``device``), ``camera`` [B,3] float64 and ``image_info`` [B,1] BYTES (numpy)."""

    def __init__(self, parameters: Mapping[str, str], device: torch.device) -> None:
        self.working_size_px = int(parameters["working_size_px"])
        self.max_pixels = int(parameters["max_pixels"]) if parameters.get("max_pixels") else None
        self.device = device

    def run(self, inputs: Tensors) -> Tensors:
        from mlsharp.preprocess import to_network_input

        images, factors, decoded = [], [], []
        for i in range(inputs["image_bytes"].shape[0]):
            item = decode_item(inputs, i, self.max_pixels)  # CPU: Pillow, typed errors
            # the uint8 pixels go to the device once; division and resize run there
            image, factor = to_network_input(
                item.rgb, item.focal_px, self.working_size_px, device=self.device
            )
            images.append(image)  # (1, 3, S, S) float32
            factors.append(factor.reshape(1, 1))  # (1, 1) float32
            decoded.append(item)
        camera, image_info = camera_and_info(decoded)
        return {
            "image": torch.cat(images),
            "disparity_factor": torch.cat(factors),
            "camera": camera,
            "image_info": image_info,
        }


class DevicePostprocessStage(PostprocessStage):
    """Raw outputs (torch, any device) + camera -> ``scenes`` [B,F] and ``metadata`` [B,1] BYTES.

    One unprojection per item on ``device``; every format's rows are built there from it. The
    metadata is the numpy stage's (inherited), fed the quantiles computed on the device.
    """

    def __init__(
        self, parameters: Mapping[str, str], device: torch.device, *, spz_compresslevel: int | None = None
    ) -> None:
        """``spz_compresslevel``: gzip level of SPZ files (else the config's, else the default 6)."""
        super().__init__(parameters)
        if spz_compresslevel is None:
            spz_compresslevel = configured_spz_level(parameters)
        if not 1 <= spz_compresslevel <= 9:
            raise ValueError(f"spz_compresslevel must be 1..9, got {spz_compresslevel}")
        self.spz_compresslevel = spz_compresslevel
        self.device = device

    def raw_outputs(self, inputs: Tensors) -> list[torch.Tensor]:
        """The five raw outputs [B, N, ...] as float32 on the stage's device."""
        raw = []
        for name in RAW_OUTPUT_NAMES:
            value = inputs[name]
            tensor = value if isinstance(value, torch.Tensor) else torch.from_numpy(np.asarray(value))
            if tensor.dtype not in _RAW_DTYPES:
                raise TypeError(f"{name} must be float32, float16 or bfloat16, got {tensor.dtype}")
            raw.append(tensor.to(self.device).float())  # upcast on the device, not before the copy
        return raw

    def run(self, inputs: Tensors) -> Tensors:
        from mlsharp.formats.attributes import disparity_quantiles_on_device
        from mlsharp.gaussians import unproject

        means, singular_values, quaternions, colors, opacities = self.raw_outputs(inputs)
        scenes, metadata = [], []
        for i in range(np.asarray(inputs["camera"]).shape[0]):
            formats, camera, info = postprocess_item(inputs, i)
            item = (means[i], singular_values[i], quaternions[i], colors[i], opacities[i])
            gaussians = unproject(*item, camera, self.working_size_px)
            quantiles = disparity_quantiles_on_device(gaussians.means)
            scenes.append([self._encode(fmt, gaussians, camera, quantiles) for fmt in formats])
            metadata.append(self.metadata(gaussians, camera, info, quantiles))
        return {"scenes": scenes_array(scenes), "metadata": bytes_column(metadata)}

    def _encode(
        self, fmt: str, gaussians: Gaussians3D, camera: CameraInfo, quantiles: tuple[float, float]
    ) -> bytes:
        """One file, its rows built on the device and copied back once."""
        from mlsharp.formats import encode_scene_on_device

        return encode_scene_on_device(
            fmt,
            gaussians,
            camera,
            random_weights=self.random_weights,
            quantiles=quantiles,
            spz_compresslevel=self.spz_compresslevel,
        )


def preprocess_executor(args: Mapping[str, Any]) -> tuple[Executor, str]:
    """The ``preprocess`` instance's ``execute`` and a line saying which form it runs."""
    parameters = model_parameters(args)
    device = instance_device(args, parameters)
    if device is None:
        stage = PreprocessStage(parameters)
        cpu_run = partial(each_request, input_names=PREPROCESS_INPUTS, handler=stage.run, model="preprocess")
        return cpu_run, "preprocess: numpy stage on the CPU"
    device_stage = DevicePreprocessStage(parameters, device)
    run = partial(
        each_request, input_names=PREPROCESS_NUMPY_INPUTS, handler=device_stage.run, model="preprocess"
    )
    return run, f"preprocess: device stage on {device}, DLPack outputs"


def postprocess_executor(args: Mapping[str, Any]) -> tuple[Executor, str]:
    """The ``postprocess`` instance's ``execute`` and a line saying which form it runs."""
    parameters = model_parameters(args)
    device = instance_device(args, parameters)
    if device is None:
        handler = PostprocessStage(parameters).run
        cpu_run = partial(each_request, input_names=POSTPROCESS_INPUTS, handler=handler, model="postprocess")
        return cpu_run, "postprocess: numpy stage on the CPU"
    device_stage = DevicePostprocessStage(parameters, device)
    run = partial(
        each_request,
        input_names=POSTPROCESS_NUMPY_INPUTS,
        handler=device_stage.run,
        model="postprocess",
        torch_names=POSTPROCESS_TORCH_INPUTS,
    )
    level = device_stage.spz_compresslevel
    return run, f"postprocess: device stage on {device}, DLPack inputs, SPZ gzip level {level}"

"""The PyTorch form of ``sharp``: our :class:`~mlsharp.network.SharpPredictor` on a torch device.

Why beside TensorRT: it runs the network's own code (no export step between the weights and what
is served) in fp16 or bf16 on CUDA, optionally through ``torch.compile``. It is the same class
on CPU torch, so CI and the export's numeric check (:func:`export.torch_weights.check_torch_runner`)
exercise exactly what the GPU serves.

Choices, pinned here:

* all requests of one ``execute`` call run as ONE batch on the device (requests concatenated on
  the device, outputs split back in request order), in chunks of at most ``max_batch_size``;
* the weights are read with ``torch.load(mmap=True, weights_only=True)`` into a network built on
  the ``meta`` device (no random initialisation, no second host copy), then cast to the precision;
* precision boundaries: the backbone (encoders, decoders, heads) computes in fp16/bf16, while the
  depth -> base Gaussians -> composer chain stays fp32. Its clamps (disparity >= 1e-4, depth eps
  1e-6, inverse softplus >= 1e-6) lie below fp16's smallest normal (6.1e-5), its inverse softplus
  cancels catastrophically in 10 mantissa bits, and the composed means are scaled by a per-image
  depth. The network code is unchanged: forward hooks cast at the four module boundaries, so
  fp32 runs bit-identical to eager;
* outputs are fp32 torch tensors left on the device (the served config declares FP32 outputs and
  the GPU post-processing reads them through DLPack).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from mlsharp.errors import InvalidParameterError
from mlsharp.network import SharpPredictor
from mlsharp.presets import PRESET_NAMES, get_preset
from mlsharp.triton import backend
from mlsharp.triton.gpu_target import COMPILE_MODES
from mlsharp.triton.models import NETWORK_INPUTS, RAW_OUTPUT_NAMES

TorchPrecision = Literal["fp32", "fp16", "bf16"]
CompileMode = Literal["none", "default", "reduce-overhead", "max-autotune"]
PRECISION_DTYPES: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
}
#: compile modes whose compiled graphs replay CUDA graphs (outputs live in a reused pool)
_CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")

TensorLike = np.ndarray | torch.Tensor
TorchArrays = dict[str, torch.Tensor]


def check_precision(value: str) -> TorchPrecision:
    """``value`` as a precision name, or a ValueError that lists the valid ones."""
    if value not in PRECISION_DTYPES:
        raise ValueError(f"torch runner precision must be one of {sorted(PRECISION_DTYPES)}, got {value!r}")
    return cast(TorchPrecision, value)


def check_compile_mode(value: str) -> CompileMode:
    """``value`` as a compile mode, or a ValueError that lists the valid ones."""
    if value not in COMPILE_MODES:
        raise ValueError(f"torch runner compile_mode must be one of {list(COMPILE_MODES)}, got {value!r}")
    return cast(CompileMode, value)


@dataclass(frozen=True)
class TorchRunnerSettings:
    """What the ``sharp`` config's parameters ask of the torch runner (validated on creation)."""

    weights_path: Path
    preset: str
    device: torch.device
    precision: TorchPrecision = "fp16"
    compile_mode: CompileMode = "none"
    max_batch_size: int = 1
    #: batch sizes run once at load time (compile, cuDNN autotune, CUDA graph capture)
    warmup_batch_sizes: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.preset not in PRESET_NAMES:
            raise ValueError(f"torch runner preset must be one of {list(PRESET_NAMES)}, got {self.preset!r}")
        check_precision(self.precision)
        check_compile_mode(self.compile_mode)
        if self.max_batch_size < 1:
            raise ValueError(f"torch runner max_batch_size must be >= 1, got {self.max_batch_size}")
        bad = [b for b in self.warmup_batch_sizes if not 1 <= b <= self.max_batch_size]
        if bad:
            raise ValueError(f"warmup batch sizes {bad} are outside 1..max_batch_size={self.max_batch_size}")

    @classmethod
    def from_parameters(cls, parameters: Mapping[str, str], args: Mapping[str, Any]) -> TorchRunnerSettings:
        """From the config's string ``parameters`` and Triton's ``initialize(args)``.

        ``weights_file`` is relative to the model version folder; the device is the instance's GPU
        (``model_instance_kind`` "GPU", ``model_instance_device_id``), else the CPU.
        ``max_batch_size`` defaults to the config's own; ``warmup_batch_sizes`` is a comma list.
        """
        for key in ("weights_file", "preset", "precision"):
            if not parameters.get(key):
                raise ValueError(f"the torch runtime needs the {key!r} parameter")
        device = backend.kind_device(args) or torch.device("cpu")
        max_batch = parameters.get("max_batch_size") or ""
        if not max_batch:
            max_batch = str(json.loads(args.get("model_config") or "{}").get("max_batch_size") or 1)
        warmup = parameters.get("warmup_batch_sizes") or ""
        version_dir = Path(args["model_repository"]) / str(args["model_version"])
        return cls(
            weights_path=version_dir / parameters["weights_file"],
            preset=parameters["preset"],
            device=device,
            precision=check_precision(parameters["precision"]),
            compile_mode=check_compile_mode(parameters.get("compile_mode") or "none"),
            max_batch_size=int(max_batch),
            warmup_batch_sizes=tuple(int(b) for b in warmup.split(",") if b.strip()),
        )


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    """The state_dict in ``path`` memory-mapped on the CPU (pages are read when copied to the device)."""
    from mlsharp.checkpoint import load_state_dict

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # missing, corrupt, or a legacy (non-zip) file that cannot be mapped:
        return load_state_dict(path)  # the copying reader, which explains what is wrong
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        return load_state_dict(path)  # raises the checkpoint module's explanatory error
    return dict(obj)


def add_precision_boundaries(model: SharpPredictor, dtype: torch.dtype) -> list[RemovableHandle]:
    """Hooks that run the backbone in ``dtype`` and the geometry chain in fp32 (see module docstring).

    The predictor is called with fp32 inputs; the hooks cast: the image into the depth network,
    its disparity back to fp32 (the encodings stay in ``dtype``), the initializer's feature input
    into the Gaussian decoder, and the predicted deltas to fp32 before the composer.
    """

    def to_low(_: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:  # (image,)
        return (args[0].to(dtype),)

    def disparity_to_fp32(_: nn.Module, args: tuple[Any, ...], out: Any) -> Any:  # (disparity, encodings)
        disparity, encodings = out
        return disparity.float(), encodings

    def feature_input_to_low(_: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:  # (encodings, features)
        return args[0], args[1].to(dtype)

    def delta_to_fp32(_: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:  # (delta, base)
        return args[0].float(), args[1]

    return [
        model.monodepth_model.register_forward_pre_hook(to_low),
        model.monodepth_model.register_forward_hook(disparity_to_fp32),
        model.feature_model.register_forward_pre_hook(feature_input_to_low),
        model.gaussian_composer.register_forward_pre_hook(delta_to_fp32),
    ]


def check_request(inputs: Mapping[str, TensorLike], working_size_px: int) -> int:
    """Item count of one request, after checking its shapes (so a malformed one fails alone)."""
    image, factor = inputs["image"], inputs["disparity_factor"]
    expected = (3, working_size_px, working_size_px)
    if len(image.shape) != 4 or tuple(image.shape[1:]) != expected:
        raise InvalidParameterError(
            f"image must be (B, {', '.join(map(str, expected))}), got {tuple(image.shape)}"
        )
    items = int(image.shape[0])
    if int(np.prod(factor.shape)) != items:
        raise InvalidParameterError(f"disparity_factor has {tuple(factor.shape)} values for {items} images")
    return items


class TorchRunner:
    """Runs every request of one ``execute`` call as one batch (chunks of ``max_batch_size``).

    With ``compile_mode`` "reduce-overhead" (or "max-autotune", which also uses CUDA graphs on
    CUDA) each batch size is compiled and captured as its own CUDA graph: warm up every size the
    dynamic batcher can form (1..max_batch_size) or the first request of a new size pays for it.
    Compilation is shape-specialised (``dynamic=False``) for the same reason.
    """

    def __init__(
        self,
        model: SharpPredictor,
        device: torch.device,
        precision: TorchPrecision = "fp16",
        compile_mode: CompileMode = "none",
        max_batch_size: int = 1,
    ) -> None:
        """Takes ownership of ``model``: it is moved, cast and frozen in place."""
        self.device = device
        self.precision = check_precision(precision)
        self.compile_mode = check_compile_mode(compile_mode)
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        self.max_batch_size = max_batch_size
        self.dtype = PRECISION_DTYPES[precision]
        self.working_size_px = model.config.working_size_px
        self.model = model.to(device=device, dtype=self.dtype).eval().requires_grad_(False)
        self._hooks = [] if self.dtype == torch.float32 else add_precision_boundaries(self.model, self.dtype)
        if device.type == "cuda":
            torch.cuda.set_device(device)  # compiled graphs and CUDA graphs use the current device
            torch.backends.cudnn.benchmark = True  # fixed shapes per batch size: autotune once
        self._cuda_graphs = device.type == "cuda" and compile_mode in _CUDA_GRAPH_MODES
        self._forward: nn.Module = self.model
        if compile_mode != "none":
            mode = None if compile_mode == "default" else compile_mode
            self._forward = cast(nn.Module, torch.compile(self.model, mode=mode, dynamic=False))

    @classmethod
    def from_file(
        cls,
        weights_path: Path,
        preset: str,
        device: torch.device,
        precision: TorchPrecision = "fp16",
        compile_mode: CompileMode = "none",
        max_batch_size: int = 1,
    ) -> TorchRunner:
        """The network for ``preset`` with the (strictly matching) weights in ``weights_path``."""
        from mlsharp.checkpoint import check_state_dict

        state_dict = load_weights(weights_path)
        with torch.device("meta"):  # no random init: every tensor comes from the file
            model = SharpPredictor(get_preset(preset))
        check_state_dict(model, state_dict, source=str(weights_path))
        model.load_state_dict(state_dict, strict=True, assign=True)
        del state_dict
        return cls(model, device, precision, compile_mode, max_batch_size)

    @classmethod
    def from_settings(cls, settings: TorchRunnerSettings) -> TorchRunner:
        """The runner a ``sharp`` config asks for."""
        return cls.from_file(
            settings.weights_path,
            settings.preset,
            settings.device,
            settings.precision,
            settings.compile_mode,
            settings.max_batch_size,
        )

    def describe(self) -> str:
        """One line for the load log."""
        where = str(self.device)
        if self.device.type == "cuda":
            where += f" ({torch.cuda.get_device_name(self.device)})"
        return (
            f"torch {torch.__version__} on {where}, {self.precision}, compile {self.compile_mode}, "
            f"max batch {self.max_batch_size}"
        )

    def _as_device_fp32(self, value: TensorLike) -> torch.Tensor:
        tensor = torch.from_numpy(np.ascontiguousarray(value)) if isinstance(value, np.ndarray) else value
        return tensor.to(device=self.device, dtype=torch.float32)

    def run(self, requests: Sequence[Mapping[str, TensorLike]]) -> list[TorchArrays]:
        """``requests``: per request ``image[B,3,S,S]`` and ``disparity_factor[B,1]`` (or ``[B]``),
        numpy or torch on any device; per request the raw outputs, fp32 on ``self.device``."""
        sizes = [check_request(r, self.working_size_px) for r in requests]
        image = torch.cat([self._as_device_fp32(r["image"]) for r in requests])  # (N, 3, S, S)
        factor = torch.cat(
            [self._as_device_fp32(r["disparity_factor"]).reshape(-1) for r in requests]
        )  # (N,)
        outputs = self.forward(image, factor)
        if self.device.type == "cuda":  # a DLPack capsule carries no stream: finish before handing over
            torch.cuda.synchronize(self.device)
        parts = [torch.split(out, sizes) for out in outputs]
        return [
            {name: part[i] for name, part in zip(RAW_OUTPUT_NAMES, parts, strict=True)}
            for i in range(len(sizes))
        ]

    def forward(self, image: torch.Tensor, factor: torch.Tensor) -> list[torch.Tensor]:
        """``image (N, 3, S, S)``, ``factor (N,)`` fp32 on the device -> the five raw outputs (N, ...)."""
        chunks = [
            self._forward_chunk(
                image[start : start + self.max_batch_size], factor[start : start + self.max_batch_size]
            )
            for start in range(0, image.shape[0], self.max_batch_size)
        ]
        if len(chunks) == 1:
            return chunks[0]
        return [torch.cat([chunk[k] for chunk in chunks]) for k in range(len(RAW_OUTPUT_NAMES))]

    def _forward_chunk(self, image: torch.Tensor, factor: torch.Tensor) -> list[torch.Tensor]:
        with torch.inference_mode():
            if self._cuda_graphs:
                torch.compiler.cudagraph_mark_step_begin()  # type: ignore[no-untyped-call]
            outputs = [out.float() for out in self._forward(image, factor)]
            if self._cuda_graphs:  # the graph's output pool is overwritten by its next replay
                outputs = [out.clone() for out in outputs]
        return outputs

    def warmup(self, batch_sizes: Sequence[int]) -> dict[int, float]:
        """Run each batch size once on zeros; seconds per size (the first pays compile/autotune)."""
        seconds = {}
        for batch in batch_sizes:
            start = time.perf_counter()
            image = torch.zeros(batch, 3, self.working_size_px, self.working_size_px, device=self.device)
            self.forward(image, torch.ones(batch, device=self.device))
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            seconds[batch] = time.perf_counter() - start
        return seconds


def torch_execute(
    pb_utils: Any, requests: Sequence[Any], runner: TorchRunner, model: str = "sharp"
) -> list[Any]:
    """``execute`` of the torch runtime: :func:`backend.all_requests_at_once` with the inputs read as
    torch tensors where Triton put them (DLPack) and a mis-shaped request failing alone."""
    return backend.all_requests_at_once(
        pb_utils,
        requests,
        (),
        runner.run,
        model,
        torch_names=NETWORK_INPUTS,
        check=lambda inputs: check_request(inputs, runner.working_size_px),
    )

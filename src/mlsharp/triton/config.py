"""Typed Triton model configurations rendered to ``config.pbtxt`` through Triton's own schema.

Why typed: hand-written pbtxt drifts from the code that feeds it (tensor names, dims, batch
limits). Building configs from dataclasses lets the exporter derive dims from the preset. Only the
fields this project uses are modelled; each config becomes a dict in ``model_config.proto``'s JSON
mapping, is parsed into its ``ModelConfig`` message (a misspelt field or enum raises there, not at
Triton's load) and printed by protobuf's own text format writer, so no escaping is done by hand.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class DataType(StrEnum):
    """Triton tensor data types (the ``TYPE_*`` enum values)."""

    BOOL = "TYPE_BOOL"
    UINT8 = "TYPE_UINT8"
    INT32 = "TYPE_INT32"
    INT64 = "TYPE_INT64"
    FP16 = "TYPE_FP16"
    FP32 = "TYPE_FP32"
    FP64 = "TYPE_FP64"
    STRING = "TYPE_STRING"


class InstanceKind(StrEnum):
    """Where a model instance runs."""

    CPU = "KIND_CPU"
    GPU = "KIND_GPU"
    AUTO = "KIND_AUTO"


@dataclass(frozen=True)
class Tensor:
    """One input or output; ``dims`` exclude the batch axis when ``max_batch_size > 0``.

    ``reshape`` presents a different shape to the model (e.g. ``()`` turns ``[B, 1]`` into
    ``[B]``); ``optional`` is for inputs only.
    """

    name: str
    data_type: DataType
    dims: tuple[int, ...]
    reshape: tuple[int, ...] | None = None
    optional: bool = False


@dataclass(frozen=True)
class DynamicBatching:
    """Server-side batching of queued requests (for models that can run a batch in one call)."""

    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_delay_us: int = 0
    preserve_ordering: bool = False
    #: default_queue_policy.max_queue_size: requests beyond it are rejected (0 = unbounded)
    max_queue_size: int = 0


@dataclass(frozen=True)
class InstanceGroup:
    """``count`` copies of the model on ``kind`` (each python-backend copy is one process)."""

    kind: InstanceKind = InstanceKind.CPU
    count: int = 1
    gpus: tuple[int, ...] = ()


@dataclass(frozen=True)
class ExecutionAccelerator:
    """An ONNX Runtime execution provider with its options (``tensorrt``, ``cuda``, ``openvino``)."""

    name: str
    parameters: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Optimization:
    """Backend optimisation settings; accelerators are tried in order."""

    gpu_accelerators: tuple[ExecutionAccelerator, ...] = ()
    cpu_accelerators: tuple[ExecutionAccelerator, ...] = ()
    graph_level: int | None = None
    input_pinned_memory: bool | None = None
    output_pinned_memory: bool | None = None


@dataclass(frozen=True)
class WarmupInput:
    """One input of a warm-up request: zeros or random values of the given type and dims."""

    data_type: DataType
    dims: tuple[int, ...]
    random: bool = True


@dataclass(frozen=True)
class ModelWarmup:
    """A ``model_warmup`` entry: Triton runs it while loading, before it reports the model ready, so
    engine builds and allocator growth for ``batch_size`` happen there and not on a live request."""

    name: str
    batch_size: int
    inputs: Mapping[str, WarmupInput]
    count: int = 1


@dataclass(frozen=True)
class EnsembleStep:
    """One model call in an ensemble; maps the model's tensor names to ensemble tensor names."""

    model_name: str
    input_map: Mapping[str, str]
    output_map: Mapping[str, str]
    model_version: int = -1


@dataclass(frozen=True)
class ModelConfig:
    """A whole ``config.pbtxt``: exactly one of ``backend``/``platform`` must be set."""

    name: str
    max_batch_size: int
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]
    backend: str | None = None
    platform: str | None = None
    instance_groups: tuple[InstanceGroup, ...] = ()
    dynamic_batching: DynamicBatching | None = None
    parameters: Mapping[str, str] = field(default_factory=dict)
    optimization: Optimization | None = None
    ensemble_steps: tuple[EnsembleStep, ...] = ()
    default_model_filename: str | None = None
    model_warmup: tuple[ModelWarmup, ...] = ()

    def validate(self) -> None:
        """Raise ``ValueError`` for configs Triton would reject at load time (fail at export instead)."""
        if (self.backend is None) == (self.platform is None):
            raise ValueError(f"{self.name}: set exactly one of backend / platform")
        if self.max_batch_size < 0:
            raise ValueError(f"{self.name}: max_batch_size must be >= 0")
        names = [t.name for t in (*self.inputs, *self.outputs)]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.name}: duplicate tensor names in {names}")
        if any(t.optional for t in self.outputs):
            raise ValueError(f"{self.name}: outputs cannot be optional")
        is_ensemble = self.platform == "ensemble"
        if is_ensemble != bool(self.ensemble_steps):
            raise ValueError(f"{self.name}: ensemble_steps go with platform 'ensemble' and only with it")
        if is_ensemble and (self.instance_groups or self.dynamic_batching):
            raise ValueError(f"{self.name}: an ensemble has no instances and no batcher of its own")
        batching = self.dynamic_batching
        if batching is not None:
            if self.max_batch_size == 0:
                raise ValueError(f"{self.name}: dynamic batching needs max_batch_size > 0")
            too_big = [s for s in batching.preferred_batch_sizes if not 0 < s <= self.max_batch_size]
            if too_big:
                raise ValueError(
                    f"{self.name}: preferred batch sizes {too_big} outside 1..{self.max_batch_size}"
                )
        for group in self.instance_groups:
            if group.count < 1:
                raise ValueError(f"{self.name}: instance count must be >= 1")
        input_names = {t.name for t in self.inputs}
        for warmup in self.model_warmup:
            if not 0 < warmup.batch_size <= max(self.max_batch_size, 1):
                raise ValueError(f"{self.name}: warm-up {warmup.name!r} batch {warmup.batch_size} too large")
            if set(warmup.inputs) != input_names:
                raise ValueError(f"{self.name}: warm-up {warmup.name!r} inputs are not {sorted(input_names)}")

    def to_dict(self) -> dict[str, Any]:
        """The config as ``model_config.proto``'s JSON mapping. ``None`` leaves a field unset (a
        message stays absent) and proto3 drops zeros and empty lists, so nothing here is optional."""
        return {
            "name": self.name,
            "platform": self.platform,
            "backend": self.backend,
            "max_batch_size": self.max_batch_size,
            "default_model_filename": self.default_model_filename,
            "input": [_input(t) for t in self.inputs],
            "output": [_tensor(t) for t in self.outputs],
            "instance_group": [
                {"kind": g.kind.value, "count": g.count, "gpus": list(g.gpus)} for g in self.instance_groups
            ],
            "dynamic_batching": _batching(self.dynamic_batching) if self.dynamic_batching else None,
            "parameters": {key: {"string_value": str(value)} for key, value in self.parameters.items()},
            "optimization": _optimization(self.optimization) if self.optimization else None,
            "ensemble_scheduling": {"step": [_step(s) for s in self.ensemble_steps]}
            if self.ensemble_steps
            else None,
            "model_warmup": [_warmup(w) for w in self.model_warmup],
        }

    def to_proto(self) -> Any:
        """Validated, then parsed into Triton's own ``ModelConfig`` message (unknown fields raise).

        Imported here so that code reading only the dataclasses needs no tritonclient/grpc."""
        from google.protobuf import json_format
        from tritonclient.grpc import model_config_pb2

        self.validate()
        return json_format.ParseDict(self.to_dict(), model_config_pb2.ModelConfig())

    def to_pbtxt(self) -> str:
        """Render as protobuf text format (what Triton reads as ``config.pbtxt``)."""
        from google.protobuf import text_format

        text: str = text_format.MessageToString(self.to_proto())
        return text


def _tensor(tensor: Tensor) -> dict[str, Any]:
    return {
        "name": tensor.name,
        "data_type": tensor.data_type.value,
        "dims": list(tensor.dims),
        "reshape": None if tensor.reshape is None else {"shape": list(tensor.reshape)},
    }


def _input(tensor: Tensor) -> dict[str, Any]:
    return {**_tensor(tensor), "optional": tensor.optional}  # ModelOutput has no such field


def _batching(batching: DynamicBatching) -> dict[str, Any]:
    return {
        "preferred_batch_size": list(batching.preferred_batch_sizes),
        "max_queue_delay_microseconds": batching.max_queue_delay_us,
        "preserve_ordering": batching.preserve_ordering,
        # 0 = unbounded: no policy message at all, as Triton's default
        "default_queue_policy": {"max_queue_size": batching.max_queue_size}
        if batching.max_queue_size
        else None,
    }


def _accelerators(items: tuple[ExecutionAccelerator, ...]) -> list[dict[str, Any]]:
    return [{"name": a.name, "parameters": {k: str(v) for k, v in a.parameters.items()}} for a in items]


def _optimization(opt: Optimization) -> dict[str, Any]:
    accelerators = opt.gpu_accelerators or opt.cpu_accelerators
    return {
        "graph": None if opt.graph_level is None else {"level": opt.graph_level},
        "execution_accelerators": {
            "gpu_execution_accelerator": _accelerators(opt.gpu_accelerators),
            "cpu_execution_accelerator": _accelerators(opt.cpu_accelerators),
        }
        if accelerators
        else None,
        "input_pinned_memory": None
        if opt.input_pinned_memory is None
        else {"enable": opt.input_pinned_memory},
        "output_pinned_memory": None
        if opt.output_pinned_memory is None
        else {"enable": opt.output_pinned_memory},
    }


def _warmup(warmup: ModelWarmup) -> dict[str, Any]:
    inputs = {
        name: {"data_type": item.data_type.value, "dims": list(item.dims)}
        | ({"random_data": True} if item.random else {"zero_data": True})
        for name, item in warmup.inputs.items()
    }
    return {"name": warmup.name, "batch_size": warmup.batch_size, "inputs": inputs, "count": warmup.count}


def _step(step: EnsembleStep) -> dict[str, Any]:
    return {
        "model_name": step.model_name,
        "model_version": step.model_version,
        "input_map": dict(step.input_map),
        "output_map": dict(step.output_map),
    }


def parse_pbtxt(text: str) -> Any:
    """A ``config.pbtxt`` as Triton reads it (a ``ModelConfig`` message), for tools and tests that
    inspect a written repository without depending on how the text is laid out."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return text_format.Parse(text, model_config_pb2.ModelConfig())

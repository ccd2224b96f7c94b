"""Typed Triton model configurations rendered to ``config.pbtxt`` text.

Why typed: hand-written pbtxt drifts from the code that feeds it (tensor names, dims, batch
limits). Building configs from dataclasses lets the exporter derive dims from the preset and lets
tests parse every generated file back through Triton's own protobuf schema. Only the fields this
project uses are modelled; the text follows protobuf text format (``model_config.proto``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum


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

    def to_pbtxt(self) -> str:
        """Render as protobuf text format, validated first."""
        self.validate()
        return "\n".join(_model_lines(self)) + "\n"


def _quote(text: str) -> str:
    """A protobuf text-format string literal (C-style escapes, UTF-8 passed through)."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return f'"{escaped}"'


def _dims(values: tuple[int, ...]) -> str:
    return "[ " + ", ".join(str(int(v)) for v in values) + " ]" if values else "[ ]"


def _block(name: str, body: list[str], indent: str = "  ") -> list[str]:
    return [f"{name} {{", *(indent + line for line in body), "}"]


def _tensor_lines(tensor: Tensor, is_input: bool) -> list[str]:
    body = [
        f"name: {_quote(tensor.name)}",
        f"data_type: {tensor.data_type.value}",
        f"dims: {_dims(tensor.dims)}",
    ]
    if tensor.reshape is not None:
        body.append(f"reshape {{ shape: {_dims(tensor.reshape)} }}")
    if is_input and tensor.optional:
        body.append("optional: true")
    return _block("", body)


def _list_field(name: str, items: list[list[str]]) -> Iterator[str]:
    """``name [ {...}, {...} ]`` with one block per item."""
    if not items:
        return
    yield f"{name} ["
    for index, lines in enumerate(items):
        lines = [lines[0].lstrip(), *lines[1:]]
        lines[-1] = lines[-1] + ("," if index < len(items) - 1 else "")
        yield from ("  " + line for line in lines)
    yield "]"


def _string_map(name: str, values: Mapping[str, str]) -> list[str]:
    return [f"{name} {{ key: {_quote(k)} value: {_quote(str(v))} }}" for k, v in values.items()]


def _accelerator_lines(accelerator: ExecutionAccelerator) -> list[str]:
    return _block(
        "", [f"name: {_quote(accelerator.name)}", *_string_map("parameters", accelerator.parameters)]
    )


def _optimization_lines(opt: Optimization) -> list[str]:
    body: list[str] = []
    if opt.graph_level is not None:
        body.append(f"graph {{ level: {int(opt.graph_level)} }}")
    accelerators: list[str] = []
    for field_name, items in (
        ("gpu_execution_accelerator", opt.gpu_accelerators),
        ("cpu_execution_accelerator", opt.cpu_accelerators),
    ):
        accelerators.extend(_list_field(field_name, [_accelerator_lines(a) for a in items]))
    if accelerators:
        body.extend(_block("execution_accelerators", accelerators))
    for field_name, flag in (
        ("input_pinned_memory", opt.input_pinned_memory),
        ("output_pinned_memory", opt.output_pinned_memory),
    ):
        if flag is not None:
            body.append(f"{field_name} {{ enable: {str(flag).lower()} }}")
    return _block("optimization", body)


def _step_lines(step: EnsembleStep) -> list[str]:
    body = [f"model_name: {_quote(step.model_name)}", f"model_version: {int(step.model_version)}"]
    body += _string_map("input_map", step.input_map)
    body += _string_map("output_map", step.output_map)
    return _block("", body)


def _model_lines(cfg: ModelConfig) -> Iterator[str]:
    yield f"name: {_quote(cfg.name)}"
    if cfg.platform is not None:
        yield f"platform: {_quote(cfg.platform)}"
    if cfg.backend is not None:
        yield f"backend: {_quote(cfg.backend)}"
    yield f"max_batch_size: {int(cfg.max_batch_size)}"
    if cfg.default_model_filename is not None:
        yield f"default_model_filename: {_quote(cfg.default_model_filename)}"
    yield from _list_field("input", [_tensor_lines(t, True) for t in cfg.inputs])
    yield from _list_field("output", [_tensor_lines(t, False) for t in cfg.outputs])
    groups = [
        _block(
            "",
            [f"kind: {g.kind.value}", f"count: {int(g.count)}"]
            + ([f"gpus: {_dims(g.gpus)}"] if g.gpus else []),
        )
        for g in cfg.instance_groups
    ]
    yield from _list_field("instance_group", groups)
    if cfg.dynamic_batching is not None:
        batching = cfg.dynamic_batching
        body = []
        if batching.preferred_batch_sizes:
            body.append(f"preferred_batch_size: {_dims(batching.preferred_batch_sizes)}")
        body.append(f"max_queue_delay_microseconds: {int(batching.max_queue_delay_us)}")
        if batching.preserve_ordering:
            body.append("preserve_ordering: true")
        if batching.max_queue_size:
            body.append(f"default_queue_policy {{ max_queue_size: {int(batching.max_queue_size)} }}")
        yield from _block("dynamic_batching", body)
    for key, value in cfg.parameters.items():
        yield f"parameters {{ key: {_quote(key)} value: {{ string_value: {_quote(str(value))} }} }}"
    if cfg.optimization is not None:
        yield from _optimization_lines(cfg.optimization)
    if cfg.ensemble_steps:
        yield from _block(
            "ensemble_scheduling", list(_list_field("step", [_step_lines(s) for s in cfg.ensemble_steps]))
        )

"""The four models of the ``mlsharp`` ensemble as typed configs (see docs/interfaces.md).

Why here and not in hand-written pbtxt: tensor dims follow the preset (working size, gaussian
count), the ``sharp`` model has GPU forms (PyTorch in the python backend, or Triton's ONNX Runtime
backend with TensorRT/CUDA: :mod:`mlsharp.triton.gpu_target`) and a CPU form (python backend
running ONNX Runtime or OpenVINO), and the python models read the model id and random-weights flag
from generated parameters to stamp every output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mlsharp.triton import gpu_target
from mlsharp.triton.config import (
    DataType,
    DynamicBatching,
    EnsembleStep,
    InstanceGroup,
    InstanceKind,
    ModelConfig,
    Tensor,
)
from mlsharp.triton.gpu_target import GpuRuntime

ENSEMBLE = "mlsharp"
PREPROCESS = "preprocess"
SHARP = "sharp"
POSTPROCESS = "postprocess"
MODEL_NAMES = (PREPROCESS, SHARP, POSTPROCESS, ENSEMBLE)

#: the network's raw outputs, in order, with their per-gaussian trailing dims
RAW_OUTPUTS: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("mean_vectors", (3,)),
    ("singular_values", (3,)),
    ("quaternions", (4,)),
    ("colors", (3,)),
    ("opacities", ()),
)
RAW_OUTPUT_NAMES = tuple(name for name, _ in RAW_OUTPUTS)
NETWORK_INPUTS = ("image", "disparity_factor")

Target = Literal["cpu", "gpu"]
#: what runs ``sharp`` on the CPU target (the python backend): ONNX Runtime or OpenVINO
CpuRuntime = Literal["onnxruntime", "openvino"]
CPU_RUNTIMES: tuple[str, ...] = ("onnxruntime", "openvino")
#: the precisions each CPU runtime serves (OpenVINO: fp32, or bf16 where the CPU has it natively)
#: what the served ``sharp`` model computes in (the export's ``--precision``)
Precision = Literal["fp32", "fp16", "int8", "bf16"]
CPU_RUNTIME_PRECISIONS: dict[str, tuple[str, ...]] = {
    "onnxruntime": ("fp32", "int8"),
    "openvino": ("fp32", "bf16"),
}


@dataclass(frozen=True)
class RepositoryOptions:
    """Everything that varies between generated repositories."""

    preset: str
    working_size_px: int
    num_gaussians: int
    model_id: str
    random_weights: bool
    target: Target = "cpu"
    max_batch_size: int = 4
    max_queue_delay_us: int = 20_000
    #: requests `sharp` may hold waiting; beyond it Triton refuses at once ("Exceeds maximum queue
    #: size", UNAVAILABLE) instead of queueing without bound, and the gateway answers 429 with
    #: Retry-After. 64 is above what the gateways send (MLSHARP_MAX_IN_FLIGHT each: 4 x 6
    #: replicas) and bounds what direct clients can pile up. 0 = unbounded (Triton's default).
    max_queue_size: int = 64
    preprocess_instances: int = 2
    postprocess_instances: int = 2
    sharp_instances: int = 1
    #: ONNX Runtime intra-op threads for the CPU runner (0 = ORT's default: one per core)
    intra_op_threads: int = 0
    #: int8: the CPU runner serves the dynamically quantized copy (an explicit opt-in of the export);
    #: bf16: OpenVINO's bf16 inference precision (runtime "openvino" only)
    precision: Precision = "fp32"
    #: the CPU target's runner for ``sharp``
    runtime: CpuRuntime = "onnxruntime"
    #: the GPU target's runner for ``sharp`` (see :mod:`mlsharp.triton.gpu_target` for why torch)
    gpu_runtime: GpuRuntime = "torch"
    #: ``torch.compile`` mode of the PyTorch GPU runner ("none": eager)
    compile_mode: str = "none"
    onnx_filename: str = "model.onnx"
    #: root of the TensorRT engine/timing caches; each served graph gets its own folder below it
    trt_cache_dir: str = "/tmp/mlsharp-trt-cache"
    #: sha256 of the file ``sharp`` serves (TensorRT's cache folder is named after it)
    served_sha256: str = ""
    #: CI only: the GPU target's python models (PyTorch ``sharp``, device stages) on CPU instances
    #: with CPU torch, so that a CPU-only tritonserver runs the GPU target's code
    gpu_code_on_cpu: bool = False
    #: the ``sharp`` batcher's preferred batch sizes; None derives them (2, 4, 8, 16 up to the max)
    preferred_batch_sizes: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        # JSON (repository.json, the export manifest) brings lists: keep the dataclass hashable
        if self.preferred_batch_sizes is not None:
            sizes = tuple(int(size) for size in self.preferred_batch_sizes)
            object.__setattr__(self, "preferred_batch_sizes", sizes)

    def resolved_preferred_batch_sizes(self) -> tuple[int, ...]:
        """The sizes written into the config: the explicit ones, else the derived default."""
        if self.preferred_batch_sizes is not None:
            return self.preferred_batch_sizes
        return tuple(size for size in (2, 4, 8, 16) if size <= self.max_batch_size)

    def common_parameters(self) -> dict[str, str]:
        """Parameters every python model reads (stamping and shapes)."""
        return {
            "model_id": self.model_id,
            "random_weights": "true" if self.random_weights else "false",
            "preset": self.preset,
            "working_size_px": str(self.working_size_px),
        }


#: what a client sends: the ensemble's inputs, passed unchanged to `preprocess`
REQUEST_INPUTS = (
    Tensor("image_bytes", DataType.STRING, (1,)),
    Tensor("focal_px", DataType.FP32, (1,)),
    Tensor("focal_mm", DataType.FP32, (1,)),
    # one or more of ply, ply-clean, spz, splat: every format from ONE network run
    Tensor("formats", DataType.STRING, (-1,)),
)
#: what the ensemble returns: one encoded scene per requested format (same order), metadata once
RESPONSE_OUTPUTS = (Tensor("scenes", DataType.STRING, (-1,)), Tensor("metadata", DataType.STRING, (1,)))


def _raw_tensors(num_gaussians: int) -> tuple[Tensor, ...]:
    return tuple(Tensor(name, DataType.FP32, (num_gaussians, *tail)) for name, tail in RAW_OUTPUTS)


def _cpu(count: int) -> tuple[InstanceGroup, ...]:
    return (InstanceGroup(InstanceKind.CPU, count),)


def _stage_placement(
    opts: RepositoryOptions, model: str, count: int
) -> tuple[tuple[InstanceGroup, ...], dict[str, str]]:
    """Instances and extra parameters of a python stage: on the GPU target ``KIND_GPU`` with CUDA
    torch and inputs left where they are (DLPack), on the CPU target CPU instances on numpy."""
    if opts.target == "gpu":
        return gpu_target.gpu_instances(opts, count), gpu_target.stage_parameters(opts, model)
    return _cpu(count), {}


# camera travels as FP64 (focal_px, width_px, height_px) so that the served path rebuilds the very
# same CameraInfo (Python floats) as the eager pipeline; float32 would round focal_px in metadata.
CAMERA = Tensor("camera", DataType.FP64, (3,))
# decoder facts for the metadata (focal source, source format) as one JSON string
IMAGE_INFO = Tensor("image_info", DataType.STRING, (1,))


def preprocess_config(opts: RepositoryOptions) -> ModelConfig:
    """Bytes + focal overrides -> network input; per-request errors; several instances."""
    size = opts.working_size_px
    instances, placement = _stage_placement(opts, PREPROCESS, opts.preprocess_instances)
    return ModelConfig(
        name=PREPROCESS,
        backend="python",
        max_batch_size=opts.max_batch_size,
        inputs=REQUEST_INPUTS,
        outputs=(
            Tensor("image", DataType.FP32, (3, size, size)),
            Tensor("disparity_factor", DataType.FP32, (1,)),
            CAMERA,
            IMAGE_INFO,
        ),
        instance_groups=instances,
        parameters=opts.common_parameters() | placement,
    )


def _batching(opts: RepositoryOptions) -> DynamicBatching:
    return DynamicBatching(
        preferred_batch_sizes=opts.resolved_preferred_batch_sizes(),
        max_queue_delay_us=opts.max_queue_delay_us,
        max_queue_size=opts.max_queue_size,
    )


def served_model_id(weights_model_id: str, precision: str, runtime: str = "onnxruntime") -> str:
    """The id a repository stamps on its outputs: outputs of another precision or runtime differ
    from ONNX Runtime fp32's, so each gets its own id and never shares cache entries or metadata:
    ``<weights id>+int8`` for the int8 opt-in, ``<weights id>+ov-fp32`` / ``+ov-bf16`` for OpenVINO.
    On the GPU target, ``+torch-fp16``, ``+tensorrt-fp16``, ``+cuda-fp16``, ``+torch-bf16``.
    fp32 (ONNX Runtime on the CPU, the reference export; any fp32 GPU runtime) keeps the weights id."""
    if runtime == "openvino":
        return f"{weights_model_id}+ov-{precision}"
    if runtime in gpu_target.GPU_RUNTIMES:  # the GPU target: half precisions get their own id
        return weights_model_id if precision == "fp32" else f"{weights_model_id}+{runtime}-{precision}"
    return f"{weights_model_id}+int8" if precision == "int8" else weights_model_id


def check_cpu_serving(runtime: str, precision: str) -> None:
    """Refuse a runtime/precision pair the CPU runner cannot serve (fail at export, not at load)."""
    if runtime not in CPU_RUNTIME_PRECISIONS:
        raise ValueError(f"CPU runtime must be one of {', '.join(CPU_RUNTIMES)}, got {runtime!r}")
    if precision not in CPU_RUNTIME_PRECISIONS[runtime]:
        raise ValueError(
            f"the {runtime} CPU runner serves {', '.join(CPU_RUNTIME_PRECISIONS[runtime])}, not {precision}"
        )


def fp16_filename(onnx_filename: str) -> str:
    """``model.onnx`` -> ``model.fp16.onnx``: the mixed-precision graph TensorRT and CUDA load."""
    return onnx_filename.replace(".onnx", ".fp16.onnx")


def int8_filename(onnx_filename: str) -> str:
    """``model.onnx`` -> ``model.int8.onnx``: the quantized copy lives beside the fp32 graph."""
    return onnx_filename.replace(".onnx", ".int8.onnx")


def openvino_bf16_filename(onnx_filename: str) -> str:
    """``model.onnx`` -> ``model.ov-bf16.xml`` (+ ``.bin``): the OpenVINO IR the bf16 runner reads."""
    return onnx_filename.replace(".onnx", ".ov-bf16.xml")


def served_model_file(opts: RepositoryOptions) -> str:
    """The graph file the CPU ``sharp`` loads (parameter ``model_file``) for its runtime and precision."""
    if opts.precision == "int8":
        return int8_filename(opts.onnx_filename)
    if opts.runtime == "openvino" and opts.precision == "bf16":
        return openvino_bf16_filename(opts.onnx_filename)
    return opts.onnx_filename


def sharp_config(opts: RepositoryOptions) -> ModelConfig:
    """The network: ONNX Runtime backend on GPU, or the python-backend ORT runner on CPU."""
    size = opts.working_size_px
    inputs = (
        Tensor("image", DataType.FP32, (3, size, size)),
        # [B, 1] on the wire, [B] inside the model (the network takes disparity_factor[B])
        Tensor("disparity_factor", DataType.FP32, (1,), reshape=()),
    )
    outputs = _raw_tensors(opts.num_gaussians)
    batching = _batching(opts)
    if opts.target == "gpu":
        return _gpu_sharp_config(opts, inputs, outputs, batching)
    check_cpu_serving(opts.runtime, opts.precision)
    params = opts.common_parameters() | {
        "model_file": served_model_file(opts),
        "intra_op_threads": str(opts.intra_op_threads),
        "runtime": opts.runtime,
        "precision": opts.precision,
    }
    return ModelConfig(
        backend="python",
        instance_groups=_cpu(opts.sharp_instances),
        parameters=params,
        name=SHARP,
        max_batch_size=opts.max_batch_size,
        inputs=inputs,
        outputs=outputs,
        dynamic_batching=batching,
    )


def _gpu_sharp_config(
    opts: RepositoryOptions,
    inputs: tuple[Tensor, ...],
    outputs: tuple[Tensor, ...],
    batching: DynamicBatching,
) -> ModelConfig:
    """``sharp`` on the GPU target: PyTorch in the python backend, or ONNX Runtime with TensorRT/CUDA."""
    if opts.runtime != "onnxruntime" or opts.precision == "int8":
        raise ValueError(
            f"{opts.runtime} {opts.precision} is a CPU-target option; the GPU target serves "
            "fp16/bf16/fp32 through --gpu-runtime torch, tensorrt or cuda"
        )
    gpu_target.check_gpu_serving(opts.gpu_runtime, opts.precision, opts.max_batch_size)
    instances = gpu_target.gpu_instances(opts, opts.sharp_instances)
    if opts.gpu_runtime == "torch":
        return ModelConfig(
            name=SHARP,
            max_batch_size=opts.max_batch_size,
            inputs=inputs,
            outputs=outputs,
            backend="python",
            instance_groups=instances,
            parameters=opts.common_parameters() | gpu_target.torch_parameters(opts),
            dynamic_batching=batching,
        )
    return ModelConfig(
        name=SHARP,
        max_batch_size=opts.max_batch_size,
        inputs=inputs,
        outputs=outputs,
        platform="onnxruntime_onnx",
        instance_groups=instances,
        optimization=gpu_target.onnx_optimization(opts),
        default_model_filename=fp16_filename(opts.onnx_filename) if opts.precision == "fp16" else None,
        # the model id for stamping and the gateway's cache key, like every other model
        parameters=opts.common_parameters() | gpu_target.ORT_MODEL_PARAMETERS,
        dynamic_batching=batching,
        model_warmup=gpu_target.warmups(opts),
    )


def postprocess_config(opts: RepositoryOptions) -> ModelConfig:
    """Raw outputs + camera -> one encoded scene per requested format + metadata JSON, from one
    unprojection."""
    instances, placement = _stage_placement(opts, POSTPROCESS, opts.postprocess_instances)
    return ModelConfig(
        name=POSTPROCESS,
        backend="python",
        max_batch_size=opts.max_batch_size,
        inputs=(
            *_raw_tensors(opts.num_gaussians),
            CAMERA,
            IMAGE_INFO,
            Tensor("formats", DataType.STRING, (-1,)),
        ),
        outputs=RESPONSE_OUTPUTS,
        instance_groups=instances,
        parameters=opts.common_parameters() | placement,
    )


def ensemble_config(opts: RepositoryOptions) -> ModelConfig:
    """``mlsharp``: the public contract of docs/interfaces.md."""
    same = {name: name for name in NETWORK_INPUTS}
    raw = {name: name for name in RAW_OUTPUT_NAMES}
    steps = (
        EnsembleStep(
            PREPROCESS,
            input_map={tensor.name: tensor.name for tensor in REQUEST_INPUTS},
            output_map=same | {"camera": "camera", "image_info": "image_info"},
        ),
        EnsembleStep(SHARP, input_map=same, output_map=raw),
        EnsembleStep(
            POSTPROCESS,
            input_map=raw | {"camera": "camera", "image_info": "image_info", "formats": "formats"},
            output_map={"scenes": "scenes", "metadata": "metadata"},
        ),
    )
    return ModelConfig(
        name=ENSEMBLE,
        platform="ensemble",
        max_batch_size=opts.max_batch_size,
        inputs=REQUEST_INPUTS,
        outputs=RESPONSE_OUTPUTS,
        ensemble_steps=steps,
        # the gateway reads the model id here on both targets (the GPU sharp has no parameters)
        parameters=opts.common_parameters(),
    )


def all_configs(opts: RepositoryOptions) -> dict[str, ModelConfig]:
    """Every model of the repository by name, validated."""
    configs = {
        PREPROCESS: preprocess_config(opts),
        SHARP: sharp_config(opts),
        POSTPROCESS: postprocess_config(opts),
        ENSEMBLE: ensemble_config(opts),
    }
    for config in configs.values():
        config.validate()
    return configs

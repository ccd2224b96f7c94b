"""The GPU target's configs: ``sharp`` in PyTorch, TensorRT or CUDA, warm-up, caches and pools.

Why three runtimes, and why PyTorch is the default (issue 15):
- ``torch``: our network in PyTorch on CUDA inside the Python backend (fp16 or bf16). It is the one
  GPU path whose exact code runs on the GPU machines we can borrow (they have PyTorch with CUDA and
  nothing else), it has no 2 GiB graph limit and no engine build, and `benchmarks/gpu_check.sh`
  measures it. Default until TensorRT can be measured beside it.
- ``tensorrt``: Triton's onnxruntime backend with the TensorRT execution provider on the
  mixed-precision fp16 ONNX. Chosen over a ``tensorrt_plan`` built by ``trtexec``: the Triton image
  ships no ``trtexec``, and a plan would have to be built on the serving GPU with the image's
  TensorRT anyway. The provider cannot take the 2.6 GB fp32 graph (it serialises each subgraph with
  its weights into one protobuf, limit 2 GiB, until ONNX Runtime 1.23), so TensorRT serves fp16
  only (1.4 GB with the fp32 islands). Engines are built before Triton reports ready: explicit
  profiles (min 1, opt 2, max 4) and one ``model_warmup`` per batch size; the engine and timing
  caches live in a folder named after the served graph's sha256 and the TensorRT version, so a
  re-export with other weights never reuses an old engine. Unverified (no TensorRT here): the
  provider builds a weakly typed network with the FP16 flag, so TensorRT may still pick fp16
  kernels for the graph's fp32 islands; ONNX Runtime 1.19 has no strongly typed option. The CUDA
  provider follows the graph's types exactly.
- ``cuda``: the same backend with the CUDA provider (fp16 or fp32), the fallback where TensorRT
  fails; cuDNN picks convolution algorithms by heuristic (the default, EXHAUSTIVE, benchmarks
  every algorithm on the first request of each shape), warmed up per batch size.

Pre- and post-processing run as ``KIND_GPU`` Python models with CUDA torch and
``FORCE_CPU_ONLY_INPUT_TENSORS`` off, so tensors stay on the GPU from the resize to the row
assembly (see :mod:`mlsharp.triton.device_stages`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from mlsharp.triton.config import (
    DataType,
    ExecutionAccelerator,
    InstanceGroup,
    InstanceKind,
    ModelWarmup,
    Optimization,
    WarmupInput,
)

if TYPE_CHECKING:
    from mlsharp.triton.models import RepositoryOptions

GpuRuntime = Literal["torch", "tensorrt", "cuda"]
GPU_RUNTIMES: tuple[str, ...] = ("torch", "tensorrt", "cuda")
#: what each GPU runtime serves
GPU_RUNTIME_PRECISIONS: dict[str, tuple[str, ...]] = {
    "torch": ("fp16", "bf16", "fp32"),
    "tensorrt": ("fp16",),
    "cuda": ("fp16", "fp32"),
}
#: ``torch.compile`` modes the PyTorch runner accepts ("none": eager)
COMPILE_MODES: tuple[str, ...] = ("none", "default", "reduce-overhead", "max-autotune")

#: The TensorRT batch ceiling: the head's ConvTranspose output is 302 M elements per image at the
#: full preset; at batch 8 that passes TensorRT's 2^31 elements per tensor (8 x 302 M = 2.42 G >
#: 2.15 G). 4 keeps a margin and is the profile's max.
TENSORRT_MAX_BATCH = 4
#: TensorRT of the Triton 24.10 image (Triton 2.51, ONNX Runtime 1.19.2, CUDA 12.6): part of the
#: engine cache key, because an engine is only valid for the TensorRT that built it.
TENSORRT_VERSION = "10.5"
#: The TensorRT provider parameters Triton 24.10's onnxruntime backend accepts (anything else fails
#: the load with "unknown parameter"), read from its source (branch r24.10, src/onnxruntime.cc).
TRITON_2410_TENSORRT_PARAMETERS = frozenset(
    {
        "precision_mode", "max_workspace_size_bytes", "trt_max_partition_iterations",
        "trt_min_subgraph_size", "int8_calibration_table_name", "int8_use_native_calibration_table",
        "trt_dla_enable", "trt_dla_core", "trt_engine_cache_enable", "trt_engine_cache_path",
        "trt_engine_cache_prefix", "trt_dump_subgraphs", "trt_force_sequential_engine_build",
        "trt_context_memory_sharing_enable", "trt_layer_norm_fp32_fallback", "trt_timing_cache_enable",
        "trt_timing_cache_path", "trt_force_timing_cache", "trt_detailed_build_log",
        "trt_build_heuristics_enable", "trt_sparsity_enable", "trt_builder_optimization_level",
        "trt_auxiliary_streams", "trt_tactic_sources", "trt_extra_plugin_lib_paths",
        "trt_profile_min_shapes", "trt_profile_max_shapes", "trt_profile_opt_shapes",
        "trt_cuda_graph_enable", "trt_dump_ep_context_model", "trt_ep_context_file_path",
        "trt_ep_context_embed_mode",
    }
)  # fmt: skip
#: TensorRT's scratch space for tactic selection: 4 GiB of the H100's 80 (more only lengthens builds)
TENSORRT_WORKSPACE_BYTES = 4 << 30


def check_gpu_serving(runtime: str, precision: str, max_batch_size: int) -> None:
    """Refuse what a GPU runtime cannot serve, at export and not at Triton's load."""
    if runtime not in GPU_RUNTIME_PRECISIONS:
        raise ValueError(f"GPU runtime must be one of {', '.join(GPU_RUNTIMES)}, got {runtime!r}")
    if precision not in GPU_RUNTIME_PRECISIONS[runtime]:
        served = ", ".join(GPU_RUNTIME_PRECISIONS[runtime])
        why = " (the fp32 graph is over the 2 GiB its provider takes)" if runtime == "tensorrt" else ""
        raise ValueError(f"the {runtime} GPU runtime serves {served}, not {precision}{why}")
    if runtime == "tensorrt" and max_batch_size > TENSORRT_MAX_BATCH:
        raise ValueError(
            f"TensorRT serves batches up to {TENSORRT_MAX_BATCH} (the head's ConvTranspose output passes "
            f"2^31 elements per tensor at 8), got max_batch_size {max_batch_size}"
        )


def torch_weights_filename(precision: str) -> str:
    """``model.fp16.pt``: the state_dict the PyTorch runner loads, stored in the served dtype."""
    return f"model.{precision}.pt"


def engine_cache_dir(opts: RepositoryOptions) -> str:
    """``<root>/<sha16 of the served graph>-trt<version>``: engines and timing cache of THIS graph.

    The provider's own cache key covers file and node names and versions, not the weights, so a
    re-export with other weights would reuse an old engine from a persistent cache; a folder per
    graph digest cannot."""
    if not opts.served_sha256:
        raise ValueError("the TensorRT target needs the served graph's sha256 (served_sha256) for its cache")
    return f"{opts.trt_cache_dir.rstrip('/')}/{opts.served_sha256[:16]}-trt{TENSORRT_VERSION}"


def profile_shapes(working_size_px: int, batch: int) -> str:
    """A TensorRT profile entry for both network inputs (the ONNX names and shapes, batch first)."""
    size = working_size_px
    return f"image:{batch}x3x{size}x{size},disparity_factor:{batch}"


def tensorrt_parameters(opts: RepositoryOptions) -> dict[str, str]:
    """The TensorRT provider's options: fp16 kernels on the mixed graph, one explicit profile, caches."""
    cache = engine_cache_dir(opts)
    top = min(opts.max_batch_size, TENSORRT_MAX_BATCH)
    return {
        "precision_mode": "FP16",
        "max_workspace_size_bytes": str(TENSORRT_WORKSPACE_BYTES),
        "trt_engine_cache_enable": "1",
        "trt_engine_cache_path": cache,
        "trt_timing_cache_enable": "1",
        "trt_timing_cache_path": cache,
        "trt_profile_min_shapes": profile_shapes(opts.working_size_px, 1),
        "trt_profile_opt_shapes": profile_shapes(opts.working_size_px, min(2, top)),
        "trt_profile_max_shapes": profile_shapes(opts.working_size_px, top),
    }


def cuda_parameters() -> dict[str, str]:
    """The CUDA provider's options (ONNX Runtime's own names and values)."""
    return {
        "cudnn_conv_algo_search": "HEURISTIC",
        "cudnn_conv_use_max_workspace": "1",
        # grow the arena by what is asked, not to the next power of two (a 66 MB output would
        # otherwise reserve 128 MB)
        "arena_extend_strategy": "kSameAsRequested",
    }


#: Model-level parameters of the onnxruntime backend. Its code reads ``cudnn_conv_algo_search`` and
#: ``arena_extend_strategy`` from the model's ``parameters`` whenever that map exists (ours always
#: does: the model id) and then OVERRIDES the accelerator's values with its defaults (EXHAUSTIVE,
#: next power of two), so they are repeated here as its enums: 1 = HEURISTIC, 1 = same as requested.
ORT_MODEL_PARAMETERS = {"cudnn_conv_algo_search": "1", "arena_extend_strategy": "1"}


def onnx_optimization(opts: RepositoryOptions) -> Optimization:
    """Accelerators of the onnxruntime-backend ``sharp``: TensorRT (CUDA runs what it rejects), or CUDA."""
    cuda = ExecutionAccelerator("cuda", cuda_parameters())
    if opts.gpu_runtime == "tensorrt":
        return Optimization(gpu_accelerators=(ExecutionAccelerator("tensorrt", tensorrt_parameters(opts)),))
    return Optimization(gpu_accelerators=(cuda,))


def warmups(opts: RepositoryOptions) -> tuple[ModelWarmup, ...]:
    """One warm-up per batch size 1..max: Triton runs them at load, before READY, so no live request
    pays an engine build, a cuDNN search or an allocator growth."""
    size = opts.working_size_px
    inputs: Mapping[str, WarmupInput] = {
        "image": WarmupInput(DataType.FP32, (3, size, size)),
        "disparity_factor": WarmupInput(DataType.FP32, (1,)),
    }
    return tuple(ModelWarmup(f"batch-{batch}", batch, inputs) for batch in range(1, opts.max_batch_size + 1))


def torch_parameters(opts: RepositoryOptions) -> dict[str, str]:
    """What the Python-backend ``sharp`` reads to build the PyTorch runner (see torch_runner)."""
    return {
        "runtime": "torch",
        "weights_file": torch_weights_filename(opts.precision),
        "precision": opts.precision,
        "compile_mode": opts.compile_mode,
        "max_batch_size": str(opts.max_batch_size),
        # the runner warms every batch size up in initialize(), before Triton reports READY
        "warmup_batch_sizes": ",".join(str(b) for b in range(1, opts.max_batch_size + 1)),
        "FORCE_CPU_ONLY_INPUT_TENSORS": "no",
    }


#: Python-model parameters on the GPU target: take input tensors where they are (GPU), via DLPack
DEVICE_STAGE_PARAMETERS = {"FORCE_CPU_ONLY_INPUT_TENSORS": "no", "stage_device": "auto"}
#: SPZ's gzip level on the GPU target: packing runs on the GPU, gzip on the CPU, and level 1 took
#: 0.40-0.46x the time of the default 6 for 1.4 % more bytes (1,179,648 gaussians, 2-core Xeon;
#: benchmarks/README.md "SPZ gzip levels"): about 0.5 s off every SPZ response.
GPU_SPZ_COMPRESSLEVEL = 1


def stage_parameters(opts: RepositoryOptions, model: str) -> dict[str, str]:
    """A GPU-target python stage's extra parameters. ``gpu_code_on_cpu`` (CI only) runs the very same
    device code on CPU instances with CPU torch tensors (``stage_device: cpu-torch``)."""
    params = dict(DEVICE_STAGE_PARAMETERS)
    if opts.gpu_code_on_cpu:
        params["stage_device"] = "cpu-torch"
    if model == "postprocess":
        params["spz_compresslevel"] = str(GPU_SPZ_COMPRESSLEVEL)
    return params


def gpu_instances(opts: RepositoryOptions, count: int) -> tuple[InstanceGroup, ...]:
    """``KIND_GPU`` instances (``KIND_CPU`` when ``gpu_code_on_cpu``: CI has no GPU)."""
    return (InstanceGroup(InstanceKind.CPU if opts.gpu_code_on_cpu else InstanceKind.GPU, count),)


@dataclass(frozen=True)
class ServerMemory:
    """Triton's memory pools for a repository, from its tensor sizes (``server.env``, read by
    docker/triton-start.sh; environment variables still override).

    Full preset (1536 px, 1,179,648 gaussians), max batch 4, 2 pre- and 2 post-processing instances,
    everything rounded up to 16 MiB:
    - one item in: image 3 x 1536 x 1536 x 4 B = 28.3 MB; out: 14 floats x 4 B x 1,179,648 = 66.1 MB.
    - pinned (host staging of tensors that cross to or from the GPU): a batch in and out, twice so
      that the next batch stages while one runs: 2 x 4 x (28.3 + 66.1) MB = 755 MB = 720 MiB. The
      old 256 MB held less than one batch of 4 (377 MB), so Triton fell back to pageable copies.
    - CUDA pool (GPU tensors the Python models hand over by DLPack, ensemble intermediates): the
      same two batches, plus one item per pre-processing instance (image) and per post-processing
      instance (raw outputs): 755 + 2 x 28.3 + 2 x 66.1 = 944 MB -> 912 MiB (Triton's default is
      64 MB, under one request's 66 MB of outputs).
    - Python shm: one region per Python-model instance, sized for one item's raw outputs
      (66.1 MB -> 64 MiB = 67.1 MB), growing by the same step (one more item, or one more 66 MB
      PLY in a response); the old 16 MB steps took 4 growths per request.
    """

    pinned_bytes: int
    cuda_pool_bytes: int
    python_shm_default_bytes: int
    python_shm_growth_bytes: int

    def env(self) -> dict[str, str]:
        """Variables of docker/triton-start.sh."""
        return {
            "TRITON_PINNED_MEMORY_BYTES": str(self.pinned_bytes),
            "TRITON_CUDA_MEMORY_POOL_BYTES": str(self.cuda_pool_bytes),
            "TRITON_PYTHON_SHM_DEFAULT_BYTES": str(self.python_shm_default_bytes),
            "TRITON_PYTHON_SHM_GROWTH_BYTES": str(self.python_shm_growth_bytes),
        }

    def env_file(self) -> bytes:
        lines = ["# Triton memory pools sized from this repository's tensors (mlsharp.triton.gpu_target)"]
        lines += [f"{key}={value}" for key, value in self.env().items()]
        return ("\n".join(lines) + "\n").encode()


_STEP = 16 << 20


def _round_up(num_bytes: float) -> int:
    return int(-(-num_bytes // _STEP) * _STEP)


def server_memory(opts: RepositoryOptions) -> ServerMemory:
    """The pool sizes of :class:`ServerMemory`'s docstring, for any preset."""
    image_item = 3 * opts.working_size_px**2 * 4
    raw_item = 14 * opts.num_gaussians * 4
    batches = 2 * opts.max_batch_size * (image_item + raw_item)
    stages = opts.preprocess_instances * image_item + opts.postprocess_instances * raw_item
    shm = _round_up(raw_item)
    return ServerMemory(
        pinned_bytes=_round_up(batches),
        cuda_pool_bytes=_round_up(batches + stages),
        python_shm_default_bytes=shm,
        python_shm_growth_bytes=shm,
    )

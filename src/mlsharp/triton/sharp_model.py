"""What the python-backend ``sharp`` runs, chosen from its generated config (kept out of model.py).

The config's ``runtime`` parameter picks the runner: ``onnxruntime`` (the exported graph as ONE
batch per ``execute``, :class:`mlsharp.triton.stages.OnnxRunner`), ``openvino`` (item by item on a
graph compiled for one, :class:`mlsharp.triton.openvino_runner.OpenVinoRunner`) or ``torch`` (our
network in PyTorch, :class:`mlsharp.triton.torch_runner.TorchRunner`: the GPU target's default,
tensors through DLPack, every batch size warmed up here, before Triton reports the model ready).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

from mlsharp.triton import backend
from mlsharp.triton.backend import Executor
from mlsharp.triton.models import NETWORK_INPUTS


def sharp_executor(args: Mapping[str, Any]) -> tuple[Executor, str]:
    """The instance's ``execute`` and one line for the load log, from Triton's ``initialize`` args."""
    parameters = backend.model_parameters(args)
    runtime = parameters.get("runtime") or "onnxruntime"
    if runtime == "torch":
        from mlsharp.triton.torch_runner import TorchRunner, TorchRunnerSettings, torch_execute

        settings = TorchRunnerSettings.from_parameters(parameters, args)
        runner = TorchRunner.from_settings(settings)
        warm = runner.warmup(settings.warmup_batch_sizes)
        timings = ", ".join(f"batch {b}: {s:.1f} s" for b, s in warm.items()) or "none"
        line = f"sharp: loaded {settings.weights_path} ({runner.describe()}; warm-up {timings})"
        return partial(torch_execute, runner=runner, model="sharp"), line
    path = Path(args["model_repository"]) / args["model_version"] / parameters["model_file"]
    threads = int(parameters.get("intra_op_threads") or 0)
    from mlsharp.triton.openvino_runner import OpenVinoRunner
    from mlsharp.triton.stages import OnnxRunner

    runner_cpu: OpenVinoRunner | OnnxRunner
    if runtime == "openvino":
        runner_cpu = OpenVinoRunner(path, parameters["precision"], threads)  # type: ignore[arg-type]
        detail = f"openvino, inference precision {runner_cpu.effective_precision()}"
    else:
        runner_cpu, detail = OnnxRunner(path, threads), "onnxruntime"
    mode = "one batched run per execute" if runner_cpu.dynamic_batch else "fixed batch 1: items one by one"
    execute = partial(
        backend.all_requests_at_once, input_names=NETWORK_INPUTS, handler=runner_cpu.run, model="sharp"
    )
    return execute, f"sharp: loaded {path} ({detail}, {mode})"

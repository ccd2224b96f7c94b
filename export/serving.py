"""Which runtime and precision the CPU target serves, from ``--precision`` and this CPU's features.

Why a choice at export time: the served graph is checked against eager fp32 here, on this machine,
before any repository is written; a runtime/precision that is not checked is never served. One
repository serves one variant, and its model id names it (``+int8``, ``+ov-fp32``, ``+ov-bf16``).

``--precision auto`` serves the fastest variant whose numeric check passes, trying in order:
where the CPU computes bf16 natively (AMX or AVX-512 BF16) and ``openvino`` is installed, OpenVINO
bf16 (measured on a 2-core AMX Xeon at 14.5 s per full-preset forward against 96-110 s for eager
and ONNX Runtime fp32, issue 18), then OpenVINO fp32 (62-65 s there), then ONNX Runtime fp32. On
other CPUs it keeps ONNX Runtime fp32, the only path measured on every CPU we have had. int8 is
never picked automatically: its fidelity with the real checkpoint is unknown.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from export import graphs, verify
from mlsharp.cpu_features import CpuFeatures
from mlsharp.errors import InvalidParameterError
from mlsharp.triton.models import openvino_bf16_filename

#: ``--precision`` values that choose what the CPU target serves, as (runtime, precision)
CPU_VARIANTS: dict[str, tuple[str, str]] = {
    "int8": ("onnxruntime", "int8"),
    "ov-fp32": ("openvino", "fp32"),
    "ov-bf16": ("openvino", "bf16"),
}
AUTO = "auto"


@dataclass(frozen=True)
class ServedVariant:
    """What ``sharp`` runs on, and why (printed by the export, kept in the manifest)."""

    runtime: str
    precision: str
    reason: str

    def __str__(self) -> str:
        return f"{self.runtime} {self.precision} ({self.reason})"


def openvino_installed() -> bool:
    return importlib.util.find_spec("openvino") is not None


def choose_cpu_variants(
    precisions: Sequence[str], target: str, features: CpuFeatures, have_openvino: bool
) -> list[ServedVariant]:
    """The variants to check, fastest first; the export serves the first that passes its check.

    One variant unless ``auto``; raises ``InvalidParameterError`` for a request that cannot work.
    """
    chosen = [p for p in precisions if p in CPU_VARIANTS or p == AUTO]
    if target == "gpu":
        if chosen:
            raise InvalidParameterError(
                f"--precision {chosen[0]} is for --target cpu (ONNX Runtime int8 or OpenVINO on the CPU "
                "runner); on a GPU use fp16 or bf16"
            )
        precision = next((p for p in ("fp16", "bf16") if p in precisions), "fp32")
        return [ServedVariant("gpu", precision, "gpu target")]
    if "bf16" in precisions:
        raise InvalidParameterError(
            "--precision bf16 is the GPU target's PyTorch runner; on the CPU, OpenVINO serves bf16: ov-bf16"
        )
    if len(chosen) > 1:
        raise InvalidParameterError(
            f"--precision names {len(chosen)} served CPU variants ({', '.join(chosen)}); a repository "
            "serves one: pick one of int8, ov-fp32, ov-bf16, auto"
        )
    fallback = ServedVariant("onnxruntime", "fp32", "default: ONNX Runtime fp32")
    if not chosen:
        return [fallback]
    if chosen[0] != AUTO:
        runtime, precision = CPU_VARIANTS[chosen[0]]
        if runtime == "openvino" and not have_openvino:
            raise InvalidParameterError(
                f"--precision {chosen[0]} needs the openvino package (pip install 'mlsharp[export]')"
            )
        return [ServedVariant(runtime, precision, f"--precision {chosen[0]}")]
    if not features.native_bf16:
        return [ServedVariant("onnxruntime", "fp32", f"auto: no native bf16 on {features.summary()}")]
    if not have_openvino:
        return [ServedVariant("onnxruntime", "fp32", "auto: native bf16, but openvino is not installed")]
    return [
        ServedVariant("openvino", "bf16", f"auto: native bf16 on {features.summary()}"),
        ServedVariant("openvino", "fp32", "auto: OpenVINO bf16 failed its check; OpenVINO fp32"),
        ServedVariant("onnxruntime", "fp32", "auto: OpenVINO failed its checks; ONNX Runtime fp32"),
    ]


@dataclass(frozen=True)
class Reference:
    """The check batch and eager fp32's outputs on it (``floor``: fp32's own error, or None)."""

    image: torch.Tensor
    factor: torch.Tensor
    outputs: Sequence[np.ndarray]
    floor: Sequence[float] | None = None


@dataclass
class CheckedVariants:
    """The variant to serve (None: every candidate failed), its check, and the rejected ones."""

    served: ServedVariant | None
    checks: list[verify.Check] = field(default_factory=list)
    rejected: list[verify.Check] = field(default_factory=list)


def check_variants(
    variants: Sequence[ServedVariant],
    files: dict[str, Path],
    onnx_dir: Path,
    ref: Reference,
    *,
    threads: int,
    timings: dict[str, float],
) -> CheckedVariants:
    """Check the candidates in order and stop at the first within its bound (:data:`verify.TOLERANCES`).

    ONNX Runtime fp32 needs no check of its own (the export always checks ``model.onnx`` on it).
    int8 writes ``model.int8.onnx`` into ``files``, OpenVINO bf16 its IR ``model.ov-bf16.xml``;
    OpenVINO is checked with the served runner on the served file, compiled exactly as Triton will
    compile it (same precision hint and threads).
    """
    result = CheckedVariants(None)
    for variant in variants:
        check = None
        if variant.precision == "int8":
            start = time.perf_counter()
            files["onnx_int8"] = graphs.quantize_int8(files["onnx_fp32"], onnx_dir / "model.int8.onnx")
            timings["int8_quantize"] = time.perf_counter() - start
            check = verify.check_onnx(
                files["onnx_int8"], "int8", ref.image, ref.factor, ref.outputs, floor=ref.floor
            )
        elif variant.runtime == "openvino":
            graph = files["onnx_fp32"]
            if variant.precision == "bf16":
                start = time.perf_counter()
                graph = graphs.openvino_bf16_ir(graph, onnx_dir / openvino_bf16_filename(graph.name))
                files["openvino_bf16"] = graph
                timings["openvino_bf16_ir"] = time.perf_counter() - start
            check = verify.check_openvino(
                graph, variant.precision, ref.image, ref.factor, ref.outputs, threads=threads, floor=ref.floor
            )
        if check is not None and not check.ok and len(variants) > 1:
            print("\n".join(check.lines()), flush=True)
            print(f"not served: {variant.runtime} {variant.precision} is outside its bound", flush=True)
            result.rejected.append(check)
            continue
        if check is not None:
            result.checks.append(check)
        if check is None or check.ok:
            result.served = variant
        return result
    return result

"""The served weights of the PyTorch ``sharp`` runtime, and their numeric check.

Why a separate file from the checkpoint: the served runner reads its weights memory-mapped at the
precision it computes in, so the export writes the state_dict already cast (fp16/bf16 halve the
2.6 GB of the full preset) and records the file's sha256 for the manifest. Every key of the
model's state_dict is kept (the unused alignment and classifier weights included) because the
runner loads strictly, exactly like the checkpoint loader.

Wiring into the export CLI and the repository configs is done elsewhere; these functions are the
interface: :func:`save_served_weights` then :func:`check_torch_runner` against eager fp32.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from export.verify import Check, compare
from mlsharp.checkpoint import sha256_file
from mlsharp.triton.torch_runner import PRECISION_DTYPES, TorchRunner, check_precision

#: the file name the export writes beside the other model files (suggested; configs name it)
WEIGHTS_FILENAMES = {p: f"model.torch-{p}.pt" for p in PRECISION_DTYPES}


@dataclass(frozen=True)
class ServedWeights:
    """One written weights file: what the manifest records."""

    path: Path
    precision: str
    sha256: str
    size_bytes: int

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["path"] = str(self.path)
        return data


def served_state_dict(model: torch.nn.Module, precision: str) -> dict[str, torch.Tensor]:
    """The model's state_dict on the CPU, floating tensors cast to the served dtype (others kept)."""
    dtype = PRECISION_DTYPES[check_precision(precision)]
    return {
        key: (
            value.detach().to("cpu", dtype) if value.is_floating_point() else value.detach().cpu()
        ).contiguous()
        for key, value in model.state_dict().items()
    }


def save_served_weights(model: torch.nn.Module, path: Path, precision: str) -> ServedWeights:
    """Write ``model``'s state_dict at ``precision`` to ``path`` (atomically) and hash the file.

    fp16 weights are rounded to nearest; a weight beyond fp16's range (65504) would become inf,
    so it is refused here rather than served.
    """
    state = served_state_dict(model, precision)
    overflow = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if overflow:
        raise ValueError(f"{len(overflow)} tensors are not finite at {precision}: {overflow[:5]}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=path.name + ".", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        torch.save(state, tmp_name)
        os.chmod(tmp_name, 0o644)  # mkstemp's 0600 would hide it from a Triton running as another user
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return ServedWeights(path, precision, sha256_file(path), path.stat().st_size)


def check_torch_runner(
    path: Path,
    preset: str,
    precision: str,
    image: torch.Tensor,
    factor: torch.Tensor,
    reference: Sequence[np.ndarray],
    floor: Sequence[float] | None = None,
    device: torch.device | None = None,
) -> Check:
    """Load ``path`` through the served :class:`TorchRunner` (CPU unless ``device``) and compare
    its outputs on ``image (B, 3, S, S)`` / ``factor (B,)`` with eager fp32 ``reference``.

    Bounds are :data:`export.verify.TOLERANCES` at ``precision``. CPU torch runs fp16 and bf16
    (slower than fp32 on most CPUs, but the same rounding as the GPU up to kernel order).
    """
    # the whole batch in one forward, as eager ran it (a batch of B and B single forwards differ
    # by float32 rounding; see export.verify)
    runner = TorchRunner.from_file(
        path,
        preset,
        device or torch.device("cpu"),
        check_precision(precision),
        max_batch_size=int(image.shape[0]),
    )
    start = time.perf_counter()
    outputs = runner.forward(image.to(runner.device, torch.float32), factor.to(runner.device, torch.float32))
    arrays = [out.cpu().numpy() for out in outputs]
    seconds = time.perf_counter() - start
    del runner
    return compare(
        f"torch-{(device or torch.device('cpu')).type}", precision, arrays, reference, seconds, floor
    )

"""Shared pieces of the tuner tests: a repository with stand-in model files (test-preset options:
``tests.conftest.repository_options``)."""

from __future__ import annotations

from pathlib import Path

from export.repository import write_repository
from mlsharp.triton.models import RepositoryOptions


def stub_repository(root: Path, opts: RepositoryOptions, *, fp16: bool = False) -> Path:
    """A repository laid out by the real writer, with small stand-ins for the ONNX files."""
    onnx_dir = root / "onnx"
    onnx_dir.mkdir(parents=True, exist_ok=True)
    names = ["model.onnx", "model.onnx.data"] + (["model.fp16.onnx", "model.fp16.onnx.data"] if fp16 else [])
    for name in names:
        (onnx_dir / name).write_bytes(name.encode())
    fp16_path = onnx_dir / "model.fp16.onnx" if fp16 else None
    weights = None
    if opts.target == "gpu" and opts.gpu_runtime == "torch":
        weights = onnx_dir / f"model.{opts.precision}.pt"
        weights.write_bytes(b"stand-in weights")
    return write_repository(
        root / "model_repository",
        opts,
        onnx_dir / "model.onnx",
        fp16_onnx_path=fp16_path,
        torch_weights_path=weights,
    )


def snapshot(repository: Path) -> dict[str, bytes]:
    """Every file of a repository by relative path (to prove it did not change)."""
    return {
        str(p.relative_to(repository)): p.read_bytes() for p in sorted(repository.rglob("*")) if p.is_file()
    }

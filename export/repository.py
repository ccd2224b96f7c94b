"""Write a runnable Triton model repository: generated configs, model.py copies, the ONNX file.

Layout (docs/interfaces.md)::

    <repo>/preprocess/config.pbtxt  preprocess/1/model.py
    <repo>/sharp/config.pbtxt       sharp/1/model.onnx + model.onnx.data  (+ model.py on CPU;
                                    + model.ov-bf16.xml/.bin for OpenVINO bf16; GPU target:
                                    model.py + model.fp16.pt for PyTorch, model.fp16.onnx for
                                    TensorRT/CUDA)
    <repo>/postprocess/config.pbtxt postprocess/1/model.py
    <repo>/mlsharp/config.pbtxt     mlsharp/1/                  (empty: required for ensembles)
    <repo>/repository.json          the typed RepositoryOptions (read by ``mlsharp tune``)
    <repo>/server.env               GPU target: Triton's memory pools sized from the tensors
                                    (read by docker/triton-start.sh)

Model files are hard-linked when source and repository share a filesystem (the full model's
2.6 GB is not copied twice), else copied.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from pathlib import Path

import mlsharp.triton
from mlsharp.triton.gpu_target import server_memory, torch_weights_filename
from mlsharp.triton.models import (
    ENSEMBLE,
    POSTPROCESS,
    PREPROCESS,
    SHARP,
    RepositoryOptions,
    served_model_file,
)
from mlsharp.triton.repository import write_configs

#: the python models' ``model.py`` files (``<name>/1/model.py``), package data of ``mlsharp.triton``
#: so that an installed package (the export image) finds them; ``model_repository/`` at the project
#: root is a link to this folder
TEMPLATES = Path(mlsharp.triton.__file__).resolve().parent / "model_repository"


def contract_digest(templates: Path = TEMPLATES) -> str:
    """16 hex digits of sha256 over what fixes a repository's contract with the serving code: the
    python models and the modules that generate the configs (tensors, ensemble steps). The
    deployment's export marker holds it, so an image whose contract changed exports again instead
    of serving an old repository (the package version alone did not change with it)."""
    import mlsharp.triton.config
    import mlsharp.triton.models
    import mlsharp.triton.repository

    modules = (mlsharp.triton.models, mlsharp.triton.config, mlsharp.triton.repository)
    files = sorted(templates.rglob("model.py")) + [Path(m.__file__ or "") for m in modules]
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(path.parents[2]).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def place_file(source: Path, target: Path) -> None:
    """Hard-link ``source`` to ``target`` (replacing it), falling back to a copy."""
    with contextlib.suppress(FileNotFoundError):
        target.unlink()
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def onnx_files(onnx_path: Path) -> list[Path]:
    """The graph file and the file holding its weights beside it (ONNX external data, or the
    ``.bin`` of an OpenVINO IR ``.xml``)."""
    files = [onnx_path]
    data = (
        onnx_path.with_suffix(".bin")
        if onnx_path.suffix == ".xml"
        else onnx_path.with_name(onnx_path.name + ".data")
    )
    if data.exists():
        files.append(data)
    return files


def write_repository(
    dest: Path,
    opts: RepositoryOptions,
    onnx_path: Path,
    *,
    fp16_onnx_path: Path | None = None,
    int8_onnx_path: Path | None = None,
    openvino_ir_path: Path | None = None,
    torch_weights_path: Path | None = None,
    templates: Path = TEMPLATES,
) -> Path:
    """Create (or refresh) the repository at ``dest`` for ``opts.target``; returns ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    gpu = opts.target == "gpu"
    extra = {SERVER_ENV: server_memory(opts).env_file()} if gpu else {}
    for path in write_configs(dest, opts, extra):
        if path.name == "config.pbtxt":
            (path.parent / "1").mkdir(parents=True, exist_ok=True)
    python_sharp = not gpu or opts.gpu_runtime == "torch"
    python_models = [PREPROCESS, POSTPROCESS] + ([SHARP] if python_sharp else [])
    for name in python_models:
        source = templates / name / "1" / "model.py"
        if not source.is_file():
            raise FileNotFoundError(f"python model template missing: {source}")
        shutil.copy2(source, dest / name / "1" / "model.py")
    if not python_sharp:  # the onnxruntime backend would not use a stray model.py
        with contextlib.suppress(FileNotFoundError):
            (dest / SHARP / "1" / "model.py").unlink()
    if onnx_path.name != opts.onnx_filename:  # its external-data reference is relative: keep names
        raise ValueError(f"ONNX file is {onnx_path.name}, the config expects {opts.onnx_filename}")
    if gpu:
        sources = gpu_sources(opts, onnx_path, fp16_onnx_path, torch_weights_path)
    else:
        sources = onnx_files(onnx_path)
    if opts.precision == "int8":
        if int8_onnx_path is None:
            raise ValueError("precision int8 needs the quantized graph (int8_onnx_path)")
        sources += onnx_files(int8_onnx_path)
    if opts.runtime == "openvino" and opts.precision == "bf16":
        if openvino_ir_path is None or openvino_ir_path.name != served_model_file(opts):
            raise ValueError(f"OpenVINO bf16 serves {served_model_file(opts)} (openvino_ir_path)")
        sources += onnx_files(openvino_ir_path)
    for source in sources:
        place_file(source, dest / SHARP / "1" / source.name)
    (dest / ENSEMBLE / "1").mkdir(parents=True, exist_ok=True)
    return dest


#: Triton's memory pools of a GPU repository, as ``KEY=VALUE`` lines for docker/triton-start.sh
SERVER_ENV = "server.env"


def gpu_sources(
    opts: RepositoryOptions, onnx_path: Path, fp16_onnx_path: Path | None, torch_weights_path: Path | None
) -> list[Path]:
    """The files ``sharp`` loads on the GPU target: the PyTorch weights in the served dtype, or the
    ONNX graph of the served precision (TensorRT and CUDA fp16: the mixed-precision graph)."""
    if opts.gpu_runtime == "torch":
        expected = torch_weights_filename(opts.precision)
        if torch_weights_path is None or torch_weights_path.name != expected:
            raise ValueError(f"the PyTorch GPU target serves {expected} (torch_weights_path)")
        return [torch_weights_path]
    if opts.precision == "fp16":
        if fp16_onnx_path is None:
            raise ValueError(f"{opts.gpu_runtime} fp16 serves the mixed-precision graph (fp16_onnx_path)")
        return onnx_files(fp16_onnx_path)  # not the 2.6 GB fp32 graph it would never load
    # fp32 served; an fp16 graph given too stays beside it, for `mlsharp tune --precision fp32,fp16`
    return onnx_files(onnx_path) + (onnx_files(fp16_onnx_path) if fp16_onnx_path else [])

"""Write a runnable Triton model repository: generated configs, model.py copies, the ONNX file.

Layout (docs/interfaces.md)::

    <repo>/preprocess/config.pbtxt  preprocess/1/model.py
    <repo>/sharp/config.pbtxt       sharp/1/model.onnx + model.onnx.data  (+ model.py on CPU;
                                    + model.ov-bf16.xml/.bin for OpenVINO bf16)
    <repo>/postprocess/config.pbtxt postprocess/1/model.py
    <repo>/mlsharp/config.pbtxt     mlsharp/1/                  (empty: required for ensembles)
    <repo>/repository.json          the typed RepositoryOptions (read by ``mlsharp tune``)

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
    templates: Path = TEMPLATES,
) -> Path:
    """Create (or refresh) the repository at ``dest`` for ``opts.target``; returns ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    for path in write_configs(dest, opts):
        if path.name == "config.pbtxt":
            (path.parent / "1").mkdir(parents=True, exist_ok=True)
    python_models = [PREPROCESS, POSTPROCESS] + ([SHARP] if opts.target == "cpu" else [])
    for name in python_models:
        source = templates / name / "1" / "model.py"
        if not source.is_file():
            raise FileNotFoundError(f"python model template missing: {source}")
        shutil.copy2(source, dest / name / "1" / "model.py")
    if opts.target == "gpu":  # the onnxruntime backend would not use a stray model.py
        with contextlib.suppress(FileNotFoundError):
            (dest / SHARP / "1" / "model.py").unlink()
    if onnx_path.name != opts.onnx_filename:  # its external-data reference is relative: keep names
        raise ValueError(f"ONNX file is {onnx_path.name}, the config expects {opts.onnx_filename}")
    sources = onnx_files(onnx_path)
    if fp16_onnx_path is not None and opts.target == "gpu":
        sources += onnx_files(fp16_onnx_path)
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

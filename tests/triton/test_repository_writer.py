"""``export.repository.write_repository``: the layout Triton loads, for both ``sharp`` targets."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

from export.repository import TEMPLATES, write_repository
from mlsharp.triton.repository import RepositoryOptionsError, load_options
from tests.conftest import repository_options as _options


@pytest.fixture
def exported(tmp_path: Path) -> tuple[Path, Path]:
    """Stand-ins for an export's fp32 and fp16 files (graph + external data each)."""
    onnx_dir = tmp_path / "onnx"
    onnx_dir.mkdir()
    for name in ("model.onnx", "model.onnx.data", "model.fp16.onnx", "model.fp16.onnx.data"):
        (onnx_dir / name).write_bytes(name.encode())
    return onnx_dir / "model.onnx", onnx_dir / "model.fp16.onnx"


def _config(repo: Path, name: str) -> pb.ModelConfig:
    return text_format.Parse((repo / name / "config.pbtxt").read_text(), pb.ModelConfig())


def test_cpu_repository_has_python_models_and_hard_linked_onnx(tmp_path: Path, exported) -> None:
    fp32, fp16 = exported
    repo = write_repository(tmp_path / "repo", _options("cpu"), fp32, fp16_onnx_path=fp16)
    files = sorted(str(p.relative_to(repo)) for p in repo.rglob("*") if p.is_file())
    assert files == [
        "mlsharp/config.pbtxt", "postprocess/1/model.py", "postprocess/config.pbtxt",
        "preprocess/1/model.py", "preprocess/config.pbtxt", "repository.json", "sharp/1/model.onnx",
        "sharp/1/model.onnx.data", "sharp/1/model.py", "sharp/config.pbtxt",
    ]  # fmt: skip
    assert load_options(repo) == _options("cpu")
    assert (repo / "mlsharp" / "1").is_dir()  # Triton needs the (empty) version dir of an ensemble
    assert (repo / "sharp" / "1" / "model.onnx.data").stat().st_ino == (
        fp32.parent / "model.onnx.data"
    ).stat().st_ino
    for name in ("preprocess", "sharp", "postprocess"):
        assert (repo / name / "1" / "model.py").read_text() == (
            TEMPLATES / name / "1" / "model.py"
        ).read_text()
    assert _config(repo, "sharp").backend == "python"


def test_gpu_repository_runs_onnx_in_the_onnxruntime_backend(tmp_path: Path, exported) -> None:
    fp32, fp16 = exported
    repo = tmp_path / "repo"
    write_repository(repo, _options("cpu"), fp32)  # then re-targeted in place: no stale model.py
    opts = _options("gpu", precision="fp16", gpu_runtime="cuda")
    write_repository(repo, opts, fp32, fp16_onnx_path=fp16)
    sharp = _config(repo, "sharp")
    assert sharp.platform == "onnxruntime_onnx" and sharp.default_model_filename == "model.fp16.onnx"
    assert not (repo / "sharp" / "1" / "model.py").exists()
    assert {"model.fp16.onnx", "model.fp16.onnx.data"} <= {p.name for p in (repo / "sharp" / "1").iterdir()}
    accelerator = sharp.optimization.execution_accelerators.gpu_execution_accelerator[0]
    assert accelerator.name == "cuda"
    fresh = write_repository(tmp_path / "fresh", opts, fp32, fp16_onnx_path=fp16)
    # only the served graph: the 2.6 GB fp32 graph stays out of an fp16 repository
    assert sorted(p.name for p in (fresh / "sharp" / "1").iterdir()) == [
        "model.fp16.onnx",
        "model.fp16.onnx.data",
    ]
    env = dict(
        line.split("=", 1)
        for line in (fresh / "server.env").read_text().splitlines()
        if not line.startswith("#")
    )
    assert set(env) == {
        "TRITON_PINNED_MEMORY_BYTES", "TRITON_CUDA_MEMORY_POOL_BYTES",
        "TRITON_PYTHON_SHM_DEFAULT_BYTES", "TRITON_PYTHON_SHM_GROWTH_BYTES",
    }  # fmt: skip


def test_gpu_torch_repository_serves_the_weights_file_with_the_python_runner(
    tmp_path: Path, exported
) -> None:
    fp32, _ = exported
    weights = tmp_path / "model.fp16.pt"
    weights.write_bytes(b"stand-in")
    opts = _options("gpu", precision="fp16", gpu_runtime="torch")
    repo = write_repository(tmp_path / "repo", opts, fp32, torch_weights_path=weights)
    assert sorted(p.name for p in (repo / "sharp" / "1").iterdir()) == ["model.fp16.pt", "model.py"]
    sharp = _config(repo, "sharp")
    assert sharp.backend == "python" and sharp.parameters["weights_file"].string_value == "model.fp16.pt"
    with pytest.raises(ValueError, match=r"model\.fp16\.pt"):
        write_repository(tmp_path / "other", opts, fp32)


def test_the_onnx_file_must_keep_the_name_its_external_data_expects(tmp_path: Path, exported) -> None:
    fp32, _ = exported
    renamed = fp32.with_name("net.onnx")
    fp32.rename(renamed)
    with pytest.raises(ValueError, match=r"net\.onnx"):
        write_repository(tmp_path / "repo", _options("cpu"), renamed)


def test_repository_json_round_trips_explicit_preferred_sizes(tmp_path: Path, exported) -> None:
    fp32, _ = exported
    opts = _options("cpu", max_batch_size=4, preferred_batch_sizes=(4,), max_queue_delay_us=0)
    repo = write_repository(tmp_path / "repo", opts, fp32)
    assert load_options(repo) == opts
    sharp = _config(repo, "sharp")
    assert list(sharp.dynamic_batching.preferred_batch_size) == [4]
    assert sharp.dynamic_batching.max_queue_delay_microseconds == 0


def test_a_repository_without_repository_json_says_to_re_export(tmp_path: Path, exported) -> None:
    fp32, _ = exported
    repo = write_repository(tmp_path / "repo", _options("cpu"), fp32)
    (repo / "repository.json").unlink()
    with pytest.raises(RepositoryOptionsError, match="Re-export"):
        load_options(repo)

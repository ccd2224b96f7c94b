"""The GPU target's code through a real tritonserver, on CPU instances (CI has no GPU).

``python -m export --target gpu --gpu-runtime torch`` writes the GPU repository (KIND_GPU python
models: the PyTorch ``sharp`` and the device stages); its typed options are then re-rendered with
``gpu_code_on_cpu`` (KIND_CPU instances, ``stage_device: cpu-torch``), so the very ``model.py``
files, DLPack plumbing, PyTorch runner and device stages of the GPU target answer requests here.
fp32: the runner equals eager exactly and the device stages are byte-equal to the CPU encoders, so
the served files are compared with the eager pipeline's."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlsharp.formats.splat import decode_splat
from mlsharp.formats.spz import decode_spz
from mlsharp.sample_image import photo_like_jpeg
from mlsharp.triton.config import parse_pbtxt
from mlsharp.triton.repository import load_options, write_configs
from tests.conftest import TRITON_TEST_SEED, export_test_preset, reusable_onnx, served
from tests.requires import require_triton
from tests.triton import support

WEIGHTS_ID = f"random-test-seed{TRITON_TEST_SEED}"
FORMATS = ("ply", "ply-clean", "splat", "spz")


@pytest.fixture(scope="module")
def gpu_repository(tmp_path_factory: pytest.TempPathFactory, triton_export_dir: Path) -> Path:
    require_triton()
    out = tmp_path_factory.mktemp("gpu-export")
    args = ("--target", "gpu", "--gpu-runtime", "torch", "--precision", "fp32")
    repository = export_test_preset(out, *args, *reusable_onnx(triton_export_dir))
    sharp = parse_pbtxt((repository / "sharp" / "config.pbtxt").read_text())
    assert sharp.instance_group[0].kind == sharp.instance_group[0].KIND_GPU  # as exported
    opts = load_options(repository)
    write_configs(repository, dataclasses.replace(opts, gpu_code_on_cpu=True))
    return repository


@pytest.fixture(scope="module")
def gpu_code_server(gpu_repository: Path) -> Iterator[Any]:
    with served(gpu_repository) as server:
        yield server


def _infer(client: Any, photos: list[bytes], formats: tuple[str, ...]) -> Any:
    import tritonclient.grpc as grpcclient

    inputs = support.ensemble_inputs(grpcclient, photos, formats[0])
    formats_array = np.array([[f.encode() for f in formats]] * len(photos), dtype=np.object_)
    inputs[3] = grpcclient.InferInput("formats", list(formats_array.shape), "BYTES")
    inputs[3].set_data_from_numpy(formats_array)
    return client.infer("mlsharp", inputs, client_timeout=600)


def test_the_export_wrote_the_gpu_repository_with_its_weights_and_pools(gpu_repository: Path) -> None:
    files = sorted(p.name for p in (gpu_repository / "sharp" / "1").iterdir())
    assert files == ["model.fp32.pt", "model.py"]
    assert (gpu_repository / "server.env").read_text().count("TRITON_") == 4
    manifest = json.loads((gpu_repository.parent / "export_manifest.json").read_text())
    assert manifest["served_runtime"] == "gpu: torch" and manifest["model_id"] == WEIGHTS_ID
    runner_check = next(c for c in manifest["checks"] if c["runtime"].startswith("torch"))
    assert runner_check["ok"]


def test_all_formats_from_the_gpu_targets_code_equal_the_eager_pipeline(gpu_code_server: Any) -> None:
    from mlsharp.imaging import decode_image

    photos = [photo_like_jpeg(seed=5), photo_like_jpeg(seed=6)]
    result = _infer(support.grpc_client(gpu_code_server.grpc_url), photos, FORMATS)
    scenes = result.as_numpy("scenes")
    metadata = [json.loads(bytes(m)) for m in result.as_numpy("metadata").reshape(-1)]
    assert scenes.shape == (2, len(FORMATS))
    assert [m["model_id"] for m in metadata] == [WEIGHTS_ID] * 2
    eager = support.pipeline("test", TRITON_TEST_SEED)
    for i, photo in enumerate(photos):
        expected = eager.predict(decode_image(photo), FORMATS).encoded
        served_files = dict(zip(FORMATS, (bytes(s) for s in scenes[i]), strict=True))
        # two photos in one execute: within batching's fp32 noise of eager's one-photo runs
        support.assert_ply_matches_eager(served_files["ply"], expected["ply"])
        clean, clean_eager = (
            support.read_ply(served_files["ply-clean"])["vertex"],
            support.read_ply(expected["ply-clean"])["vertex"],
        )
        np.testing.assert_allclose(
            np.asarray(clean["x"]), np.asarray(clean_eager["x"]), atol=1e-4 * np.abs(clean_eager["x"]).max()
        )
        splat, splat_eager = decode_splat(served_files["splat"]), decode_splat(expected["splat"])
        assert splat.means.shape == splat_eager.means.shape == (131_072, 3)
        # sorted by volume x alpha: compare the sets of positions, sorted the same way
        positions = np.sort(splat.means, axis=0)
        np.testing.assert_allclose(
            positions, np.sort(splat_eager.means, axis=0), atol=1e-4 * np.abs(positions).max()
        )
        spz, spz_eager = decode_spz(served_files["spz"]), decode_spz(expected["spz"])  # gzip level 1 vs 6
        np.testing.assert_allclose(spz.means, spz_eager.means, atol=1e-3 * np.abs(spz.means).max())


def test_a_corrupt_photo_fails_alone_with_its_typed_error(gpu_code_server: Any) -> None:
    from tritonclient.utils import InferenceServerException

    from mlsharp.triton.backend import parse_error_text

    client = support.grpc_client(gpu_code_server.grpc_url)
    with pytest.raises(InferenceServerException) as raised:
        support.infer_grpc(client, [b"not an image"], "ply")
    code, message = parse_error_text(raised.value.message())
    assert code == "invalid_image", message
    scenes, _ = support.infer_grpc(client, [photo_like_jpeg(seed=7)], "splat")  # the server still serves
    assert len(scenes[0]) == 32 * 131_072


def test_tensorrt_export_serves_only_the_mixed_graph_and_names_its_cache_after_it(
    tmp_path: Path, triton_export_dir: Path
) -> None:
    """The TensorRT target, exported here (it runs only on a GPU): the mixed fp16 graph alone, its
    sha256 in the engine cache folder, a warm-up per batch size, the fp16 safety record."""
    from export.manifest import sha256_of
    from export.repository import onnx_files
    from mlsharp.triton.gpu_target import TENSORRT_VERSION

    args = ("--target", "gpu", "--gpu-runtime", "tensorrt", "--precision", "fp16")
    repository = export_test_preset(tmp_path, *args, *reusable_onnx(triton_export_dir))
    sharp_dir = repository / "sharp" / "1"
    assert sorted(p.name for p in sharp_dir.iterdir()) == ["model.fp16.onnx", "model.fp16.onnx.data"]
    assert all(p.stat().st_mode & 0o777 == 0o644 for p in sharp_dir.iterdir())  # Triton's user reads them
    digest = hashlib.sha256(
        "".join(sha256_of(p) for p in onnx_files(sharp_dir / "model.fp16.onnx")).encode()
    ).hexdigest()
    opts = load_options(repository)
    assert opts.served_sha256 == digest and opts.model_id == WEIGHTS_ID + "+tensorrt-fp16"
    sharp = parse_pbtxt((repository / "sharp" / "config.pbtxt").read_text())
    (accelerator,) = sharp.optimization.execution_accelerators.gpu_execution_accelerator
    cache = accelerator.parameters["trt_engine_cache_path"]
    assert cache.endswith(f"/{digest[:16]}-trt{TENSORRT_VERSION}")
    assert [w.batch_size for w in sharp.model_warmup] == [1, 2, 3, 4]
    manifest = json.loads((tmp_path / "export_manifest.json").read_text())
    safety = manifest["fp16_safety"]
    assert safety["islands"]["count"] > 0 and "LayerNormalization" in safety["islands"]["by_reason"]
    assert {"Conv2d", "Linear", "LayerNorm"} <= set(safety["activation_maxima"])
    assert set(safety["deviation"]) == {"bfloat16", "float16"}
    fp16_check = next(c for c in manifest["checks"] if c["precision"] == "fp16")
    assert fp16_check["ok"]


def test_tensorrt_fp32_is_refused_before_any_work(tmp_path: Path) -> None:
    from export.__main__ import main

    argv = ["--preset", "test", "--random-weights", "--target", "gpu", "--gpu-runtime", "tensorrt",
            "--precision", "fp32", "--out", str(tmp_path)]  # fmt: skip
    assert main(argv) == 2
    assert not any(tmp_path.iterdir())


def test_pytorch_fp16_export_checks_the_runner_and_records_half_precision_per_layer(
    tmp_path: Path, triton_export_dir: Path
) -> None:
    """The compose default (torch, fp16): the weights file checked through the runner, no fp16 ONNX
    made for nothing, the per-layer fp16/bf16 record (on the CPU here, the test preset)."""
    args = ("--target", "gpu", "--gpu-runtime", "torch", "--precision", "fp16")
    repository = export_test_preset(tmp_path, *args, *reusable_onnx(triton_export_dir))
    assert sorted(p.name for p in (repository / "sharp" / "1").iterdir()) == ["model.fp16.pt", "model.py"]
    assert not (tmp_path / "onnx" / "model.fp16.onnx").exists()
    manifest = json.loads((tmp_path / "export_manifest.json").read_text())
    assert manifest["model_id"] == WEIGHTS_ID + "+torch-fp16" and manifest["ok"]
    (runner_check,) = [c for c in manifest["checks"] if c["runtime"].startswith("torch")]
    assert runner_check["precision"] == "fp16" and runner_check["ok"]
    safety = manifest["fp16_safety"]
    assert safety["islands"] is None and set(safety["deviation"]) == {"bfloat16", "float16"}
    assert safety["deviation"]["float16"]["outputs"]  # the five raw outputs' end-to-end error

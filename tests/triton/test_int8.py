"""The int8 opt-in: export quantizes the ViT MatMuls, the CPU repository serves that graph, and
everything it produces says so (model id ``...+int8``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlsharp.sample_image import photo_like_jpeg
from mlsharp.triton.config import parse_pbtxt
from tests.conftest import TRITON_TEST_SEED, export_test_preset, reusable_onnx, served
from tests.requires import require_triton
from tests.triton import support

ROOT = Path(__file__).resolve().parents[2]
WEIGHTS_ID = f"random-test-seed{TRITON_TEST_SEED}"


@pytest.fixture(scope="module")
def int8_export(tmp_path_factory: pytest.TempPathFactory, triton_export_dir: Path) -> Path:
    require_triton()
    out = tmp_path_factory.mktemp("int8-export")
    export_test_preset(out, "--precision", "fp32,int8", *reusable_onnx(triton_export_dir))
    return out


@pytest.fixture(scope="module")
def int8_server(int8_export: Path) -> Iterator[Any]:
    with served(int8_export / "model_repository") as server:
        yield server


def test_export_checks_and_records_the_int8_graph(int8_export: Path) -> None:
    manifest = json.loads((int8_export / "export_manifest.json").read_text())
    assert manifest["ok"] is True
    assert manifest["model_id"] == WEIGHTS_ID + "+int8"
    assert manifest["weights_model_id"] == WEIGHTS_ID
    assert manifest["served_precision"] == "int8"
    int8_check = next(c for c in manifest["checks"] if c["precision"] == "int8")
    assert int8_check["ok"] and (int8_check["rtol"], int8_check["atol"]) == (5e-2, 1e-3)
    assert {d["name"] for d in int8_check["diffs"]} >= {"mean_vectors", "opacities"}
    sharp_dir = int8_export / "model_repository" / "sharp"
    assert (sharp_dir / "1" / "model.int8.onnx").is_file() and (sharp_dir / "1" / "model.onnx").is_file()
    config = parse_pbtxt((sharp_dir / "config.pbtxt").read_text())
    assert config.parameters["model_file"].string_value == "model.int8.onnx"
    options = json.loads((int8_export / "model_repository" / "repository.json").read_text())
    assert json.dumps(options).count('"int8"') == 1


def test_int8_is_refused_for_the_gpu_target(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from export.__main__ import main

    argv = ["--preset", "test", "--random-weights", "--precision", "int8", "--target", "gpu",
            "--out", str(tmp_path)]  # fmt: skip
    assert main(argv) == 2
    assert "--precision int8 is for --target cpu" in capsys.readouterr().err
    assert not (tmp_path / "model_repository").exists()


def test_served_scene_comes_from_the_int8_graph(int8_server: Any, int8_export: Path) -> None:
    """The served PLY equals the eager pipeline run on the quantized graph, and the stamps say int8."""
    photo = photo_like_jpeg(seed=5)
    scenes, metadata = support.infer_grpc(support.grpc_client(int8_server.grpc_url), [photo], "ply")
    assert json.loads(metadata[0])["model_id"] == WEIGHTS_ID + "+int8"
    from mlsharp.imaging import decode_image

    onnx_dir = int8_export / "model_repository" / "sharp" / "1"
    served = _positions(scenes[0])
    for graph, same in (("model.int8.onnx", True), ("model.onnx", False)):
        reference = support.pipeline("test", TRITON_TEST_SEED, support.OrtNetwork(onnx_dir / graph))
        expected = _positions(reference.predict(decode_image(photo), ("ply",)).encoded["ply"])
        assert np.array_equal(served, expected) is same, graph
        # int8 or not, the scene is the same to within the export check's int8 bound
        assert np.allclose(served, expected, rtol=0, atol=5e-2 * np.abs(expected).max())


def _positions(ply: bytes) -> np.ndarray:
    vertex = support.read_ply(ply)["vertex"]
    return np.stack([np.asarray(vertex[axis]) for axis in "xyz"], axis=1)

"""Suite-wide fixtures: one real tritonserver on an exported `test` preset, shared by the Triton,
gateway and web tests (exporting and starting a server per module would dominate the run time)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

#: random weights of the exported test preset (the eager comparison uses the same seed)
TRITON_TEST_SEED = 0


@pytest.fixture(scope="session")
def triton_export_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`python -m export --preset test --random-weights` once per session (or a given export)."""
    given = os.environ.get("MLSHARP_TEST_TRITON_EXPORT")
    if given:
        return Path(given)
    out = tmp_path_factory.mktemp("triton-export")
    command = [
        sys.executable, "-m", "export", "--preset", "test", "--random-weights",
        "--seed", str(TRITON_TEST_SEED), "--formats", "onnx", "--out", str(out),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return out


@pytest.fixture(scope="session")
def triton_repository(triton_export_dir: Path) -> Path:
    return triton_export_dir / "model_repository"


@pytest.fixture(scope="session")
def triton_server(triton_repository: Path) -> Iterator[object]:
    """A started `TritonServer` (free 127.0.0.1 ports) with `grpc_url`, `http_url`, `metrics_url`."""
    from mlsharp.triton.server import TritonServer

    with TritonServer(triton_repository) as server:
        yield server

"""Suite-wide fixtures: one real tritonserver on an exported `test` preset, shared by the Triton,
gateway and web tests (exporting and starting a server per module would dominate the run time).

``MLSHARP_TEST_TRITON_REPOSITORY`` names an existing model repository to reuse (e.g. one exported by
hand with ``python -m export --preset test --random-weights --out DIR``: ``DIR/model_repository``);
``MLSHARP_TEST_TRITON_EXPORT`` names an export directory holding one. Tests that compare with eager
PyTorch read the preset and seed from the repository's own ``model_id`` (``random-<preset>-seed<n>``).
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.requires import require_executable, require_triton

#: random weights of the exported test preset (the eager comparison uses the same seed)
TRITON_TEST_SEED = 0
REPOSITORY_ENV = "MLSHARP_TEST_TRITON_REPOSITORY"
EXPORT_ENV = "MLSHARP_TEST_TRITON_EXPORT"
_RANDOM_ID_RE = re.compile(r"random-(?P<preset>\w+)-seed(?P<seed>\d+)")


def repository_options(target: str = "cpu", **overrides: object) -> Any:
    """The `test` preset's ``RepositoryOptions``, as the exporter would record them."""
    from mlsharp.triton.models import RepositoryOptions

    values = {
        "preset": "test", "working_size_px": 512, "num_gaussians": 131_072,
        "model_id": "random-test-seed0", "random_weights": True, "target": target,
    } | overrides  # fmt: skip
    return RepositoryOptions(**values)


def export_test_preset(out: Path, *extra: str, seed: int = TRITON_TEST_SEED, preset: str = "test") -> Path:
    """``python -m export --random-weights`` (ONNX only) into ``out``; returns the repository path."""
    command = [
        sys.executable, "-m", "export", "--preset", preset, "--random-weights",
        "--seed", str(seed), "--formats", "onnx", "--out", str(out), *extra,
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return out / "model_repository"


def reusable_onnx(export_dir: Path, seed: int = TRITON_TEST_SEED) -> list[str]:
    """``--onnx-from`` arguments reusing the session export's traced graph when it holds the same
    test-preset weights (tracing costs ~12 s per export); none otherwise."""
    import json

    graph, manifest = export_dir / "onnx" / "model.onnx", export_dir / "export_manifest.json"
    if graph.is_file() and manifest.is_file():
        model_id = json.loads(manifest.read_text()).get("model_id", "")
        if model_id == f"random-test-seed{seed}":
            return ["--onnx-from", str(graph)]
    return []


@contextlib.contextmanager
def served(repository: Path, **options: Any) -> Iterator[Any]:
    """A started ``TritonServer`` on ``repository``, killed afterwards rather than stopped: the
    graceful unload costs ~6 s per server and is test_server_lifecycle.py's to test. Killing still
    has to leave no shared memory behind (checked here)."""
    from mlsharp.triton.server import TritonServer

    server = TritonServer(repository, **options).start()
    try:
        yield server
    finally:
        server.kill()
        assert not server.leftover_shm(), server.leftover_shm()


@dataclass(frozen=True)
class RepositoryWeights:
    """Which random weights a repository serves, so eager PyTorch can rebuild the same network."""

    model_id: str
    preset: str
    seed: int


def repository_weights(repository: Path) -> RepositoryWeights:
    """Preset and seed from the ``model_id`` the exporter stamped into ``preprocess/config.pbtxt``."""
    from mlsharp.triton.config import parse_pbtxt

    parameters = parse_pbtxt((repository / "preprocess" / "config.pbtxt").read_text()).parameters
    assert "model_id" in parameters, f"{repository}: no model_id parameter in preprocess/config.pbtxt"
    model_id = parameters["model_id"].string_value
    random_id = _RANDOM_ID_RE.fullmatch(model_id)
    if random_id is None:
        pytest.skip(f"{repository} serves {model_id!r}, not random weights: no eager twin")
    return RepositoryWeights(model_id, random_id["preset"], int(random_id["seed"]))


@pytest.fixture(scope="session")
def triton_export_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The `test` preset exported once per session with random weights (``onnx/``, manifest and
    ``model_repository/``), or the export given by the environment (see the module docstring)."""
    require_triton()
    if os.environ.get(REPOSITORY_ENV):
        return Path(os.environ[REPOSITORY_ENV]).resolve().parent  # the exporter's OUT/model_repository
    if os.environ.get(EXPORT_ENV):
        return Path(os.environ[EXPORT_ENV]).resolve()
    out = tmp_path_factory.mktemp("triton-export")
    export_test_preset(out)
    return out


@pytest.fixture(scope="session")
def triton_repository(triton_export_dir: Path) -> Path:
    """The model repository served by ``triton_server``."""
    given = os.environ.get(REPOSITORY_ENV)
    repository = Path(given).resolve() if given else triton_export_dir / "model_repository"
    assert (repository / "mlsharp" / "config.pbtxt").is_file(), f"{repository} is not an mlsharp repository"
    return repository


@pytest.fixture(scope="session")
def triton_weights(triton_repository: Path) -> RepositoryWeights:
    """Preset and seed of the served random weights."""
    return repository_weights(triton_repository)


@pytest.fixture(scope="session")
def triton_server(triton_repository: Path) -> Iterator[Any]:
    """A started :class:`mlsharp.triton.server.TritonServer` on free 127.0.0.1 ports.

    Attributes used by the suite: ``grpc_url`` / ``http_url`` (``host:port``), ``metrics_url`` (full
    URL), ``repository``, ``http_port`` / ``grpc_port`` / ``metrics_port``, ``log_tail()``.
    """
    with served(triton_repository) as server:
        yield server


@pytest.fixture(scope="session")
def postgres_server():
    """One real PostgreSQL for the session; each test asks it for a fresh database."""
    from tests.servers.postgres import PostgresServer, require_postgres

    server = PostgresServer(require_postgres()).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server) -> str:
    return postgres_server.create_database()


def pytest_runtest_setup(item: pytest.Item) -> None:
    """``@pytest.mark.needs("redis-server", ...)``: the executables must be on PATH (skip here,
    fail under CI=true, see tests/requires.py)."""
    for mark in item.iter_markers("needs"):
        for name in mark.args:
            require_executable(name)

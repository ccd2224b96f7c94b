"""The local tritonserver launcher: clean stops, hard-kill clean-up, fail-fast loading, the CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.triton import support

pytestmark = [pytest.mark.triton, pytest.mark.slow]

BROKEN_MODEL = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        raise RuntimeError("broken-model-marker-4711")

    def execute(self, requests):
        return []
"""
ECHO_CONFIG = """
name: "{name}"
backend: "python"
max_batch_size: 4
input [ {{ name: "X" data_type: TYPE_FP32 dims: [ 2 ] }} ]
output [ {{ name: "Y" data_type: TYPE_FP32 dims: [ 2 ] }} ]
instance_group [ {{ kind: KIND_CPU count: 1 }} ]
"""


@pytest.fixture(autouse=True)
def _needs_triton() -> None:
    support.require_triton()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _assert_nothing_left(server, stubs: set[int]) -> None:
    assert server.leftover_shm() == [], "shared-memory regions left in /dev/shm"
    assert not [pid for pid in stubs if _alive(pid)], "python-backend stubs still running"
    assert server.workdir is None and server.process is None


def test_stop_after_requests_exits_zero_and_leaves_nothing(triton_repository: Path) -> None:
    from mlsharp.triton.server import TritonServer

    server = TritonServer(triton_repository).start()
    try:
        scenes, _ = support.infer_grpc(support.grpc_client(server.grpc_url), [support_photo()], "spz")
        assert scenes[0][:2] == b"\x1f\x8b"  # gzip: an SPZ came back
        stubs = set(server._stubs)
        assert len(stubs) >= 4, "expected a stub per python model instance"
        assert server.leftover_shm(), "the server should hold shm regions with its prefix while running"
    finally:
        started = time.monotonic()
        code = server.stop()
    assert code == 0
    assert time.monotonic() - started < 30
    _assert_nothing_left(server, stubs)


def test_hard_killed_server_is_cleaned_up_by_stop(tmp_path: Path) -> None:
    """SIGKILL leaks shm regions and orphans stubs that ignore SIGTERM; stop() removes both."""
    from mlsharp.triton.server import TritonServer

    repo = tmp_path / "repo"
    for name in ("echo_a", "echo_b"):
        (repo / name / "1").mkdir(parents=True)
        (repo / name / "config.pbtxt").write_text(ECHO_CONFIG.format(name=name))
        (repo / name / "1" / "model.py").write_text(ECHO_MODEL)
    server = TritonServer(repo).start()
    stubs = set(server._stubs)
    assert len(stubs) == 2
    os.kill(server.process.pid, signal.SIGKILL)
    server.process.wait(timeout=10)
    assert server.leftover_shm(), "a hard kill leaves the regions behind"
    assert server.stop() == -signal.SIGKILL
    _assert_nothing_left(server, stubs)


def test_model_that_cannot_load_fails_fast_with_the_log(tmp_path: Path) -> None:
    """Without watching the log the server would sit in loading; the launcher raises at once."""
    from mlsharp.triton.server import TritonServer, TritonStartError

    repo = tmp_path / "repo"
    (repo / "broken" / "1").mkdir(parents=True)
    (repo / "broken" / "config.pbtxt").write_text(ECHO_CONFIG.format(name="broken"))
    (repo / "broken" / "1" / "model.py").write_text(BROKEN_MODEL)
    server = TritonServer(repo, startup_timeout_s=120)
    started = time.monotonic()
    with pytest.raises(TritonStartError, match="broken-model-marker-4711"):
        server.start()
    assert time.monotonic() - started < 30
    _assert_nothing_left(server, set(server._stubs))


def test_cli_serves_until_sigterm_then_stops_cleanly(tmp_path: Path) -> None:
    from mlsharp.triton.server import free_port

    repo = tmp_path / "repo"
    (repo / "echo_a" / "1").mkdir(parents=True)
    (repo / "echo_a" / "config.pbtxt").write_text(ECHO_CONFIG.format(name="echo_a"))
    (repo / "echo_a" / "1" / "model.py").write_text(ECHO_MODEL)
    ports = [str(free_port()) for _ in range(3)]
    command = [
        sys.executable,
        "-m",
        "mlsharp.triton.server",
        "--repository",
        str(repo),
        "--http-port",
        ports[0],
    ]
    command += ["--grpc-port", ports[1], "--metrics-port", ports[2]]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = process.stdout.readline()
        assert line.startswith("triton ready: http 127.0.0.1:" + ports[0]), line
        import numpy as np
        import tritonclient.http as httpclient

        client = httpclient.InferenceServerClient(f"127.0.0.1:{ports[0]}")
        x = httpclient.InferInput("X", [1, 2], "FP32")
        x.set_data_from_numpy(np.array([[1.5, -2.0]], np.float32))
        assert client.infer("echo_a", [x]).as_numpy("Y").tolist() == [[3.0, -4.0]]
        # Triton >= 24.04 waits (up to --exit-timeout-secs) for open HTTP keep-alive connections
        client.close()
        stubs = _stub_pids(str(repo))
        assert len(stubs) == 1
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
        assert "triton stopped (exit code 0)" in process.stdout.read()
        assert _stub_pids(str(repo)) == set()
    finally:
        if process.poll() is None:
            process.kill()


ECHO_MODEL = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "X").as_numpy()
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("Y", x * 2)]))
        return out
"""


def _stub_pids(marker: str) -> set[int]:
    """Live stub processes whose command line mentions ``marker`` (their model's path)."""
    found = set()
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes()
            if (
                b"triton_python_backend_stub" in text
                and marker.encode() in text
                and _alive(int(cmdline.parent.name))
            ):
                found.add(int(cmdline.parent.name))
        except (OSError, ValueError):
            continue
    return found


def support_photo() -> bytes:
    from export.sample_image import photo_like_jpeg

    return photo_like_jpeg(320, 240, seed=5)

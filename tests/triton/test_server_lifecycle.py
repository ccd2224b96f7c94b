"""The local launcher (mlsharp.triton.server) against the real tritonserver: a clean stop leaks
nothing, a crashed server is cleaned up, a model that cannot load fails the start within seconds
with the log tail, and the CLI stops with exit code 0 on SIGTERM.

Leak checks look only at what one server owns: its /dev/shm regions carry the launcher's per-server
prefix, and its stubs' command lines name that prefix. Other servers (other tests, other people on
the machine) may come and go meanwhile, so a before/after diff of all of /dev/shm would be flaky.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlsharp.triton.server import SHM_DIR, TritonServer, TritonStartError, free_port

pytestmark = [pytest.mark.triton, pytest.mark.slow]

STUB = b"triton_python_backend_stub"


def _python_instances(repository: Path) -> int:
    """Stub processes (= shm regions) a server of ``repository`` runs: one per python-model instance."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    total = 0
    for path in repository.glob("*/config.pbtxt"):
        config = text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
        if config.backend == "python":
            total += sum(group.count for group in config.instance_group)
    return total


def _processes_mentioning(marker: str) -> list[int]:
    """Live (non-zombie) processes whose command line contains ``marker``."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            if marker.encode() not in cmdline.read_bytes():
                continue
            state = (cmdline.parent / "stat").read_text().rsplit(")", 1)[1].split()[0]
            if state != "Z":
                found.append(int(cmdline.parent.name))
    return found


def _stubs_of(prefix: str) -> list[int]:
    return [pid for pid in _processes_mentioning(prefix) if STUB in Path(f"/proc/{pid}/cmdline").read_bytes()]


def _regions(prefix: str) -> list[Path]:
    return sorted(SHM_DIR.glob(f"{prefix}*"))


def _children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def _spz_scene(grpc_url: str) -> bytes:
    """One small photo through the ``mlsharp`` ensemble as SPZ."""
    import numpy as np
    import tritonclient.grpc as grpcclient

    from mlsharp.sample_image import photo_like_jpeg

    arrays = {
        "image_bytes": ("BYTES", np.array([[photo_like_jpeg(160, 120)]], dtype=np.object_)),
        "focal_px": ("FP32", np.zeros((1, 1), np.float32)),
        "focal_mm": ("FP32", np.zeros((1, 1), np.float32)),
        "formats": ("BYTES", np.array([[b"spz"]], dtype=np.object_)),
    }
    inputs = []
    for name, (dtype, array) in arrays.items():
        inputs.append(grpcclient.InferInput(name, list(array.shape), dtype))
        inputs[-1].set_data_from_numpy(array)
    result = grpcclient.InferenceServerClient(grpc_url).infer("mlsharp", inputs, client_timeout=300)
    return bytes(result.as_numpy("scenes")[0, 0])


def _wait_until(condition, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return bool(condition())


def test_clean_stop_leaves_no_shm_regions_stubs_or_scratch_files(
    triton_repository: Path, tmp_path: Path
) -> None:
    instances = _python_instances(triton_repository)
    assert instances == 5  # export defaults: 2 preprocess, 1 sharp (CPU target), 2 postprocess
    server = TritonServer(triton_repository, log_path=tmp_path / "triton.log").start()
    prefix, workdir = server.shm_prefix, server.workdir
    try:
        assert server.process is not None
        children = _children_of(server.process.pid)
        stubs = [pid for pid in children if STUB in Path(f"/proc/{pid}/cmdline").read_bytes()]
        # every stub uses this server's prefix: no region under the default triton_python_backend_* name
        assert sorted(stubs) == sorted(_stubs_of(prefix)) and len(stubs) == instances
        assert len(_regions(prefix)) == instances
        assert len(_spz_scene(server.grpc_url)) > 1000  # the stubs did real work through their shm regions
    finally:
        start = time.monotonic()
        code = server.stop()
        stop_s = time.monotonic() - start
    assert code == 0, (tmp_path / "triton.log").read_text()[-3000:]
    assert stop_s < 30
    assert _regions(prefix) == []
    assert _stubs_of(prefix) == []
    assert workdir is not None and not workdir.exists()  # private backend dir and stub copy removed
    log = (tmp_path / "triton.log").read_text()
    assert "Signal (15) received" in log and "successfully unloaded" in log
    assert server.stop() is None  # a second stop is a no-op


def test_a_killed_server_leaves_nothing_after_stop(triton_repository: Path) -> None:
    """SIGKILL (a crash, an OOM kill) skips Triton's own cleanup; ``stop`` still leaves nothing."""
    server = TritonServer(triton_repository).start()
    prefix = server.shm_prefix
    try:
        assert server.process is not None
        assert len(_stubs_of(prefix)) == _python_instances(triton_repository)
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait(timeout=30)
    finally:
        code = server.stop()
    assert code == -signal.SIGKILL
    assert _wait_until(lambda: not _stubs_of(prefix) and not _regions(prefix), 10.0), (
        _stubs_of(prefix),
        _regions(prefix),
    )


def test_a_model_that_fails_to_load_fails_the_start_fast_with_the_log_tail(
    triton_repository: Path, tmp_path: Path
) -> None:
    """The wheel's server keeps loading the other models (and exits only after all of them); the
    launcher stops at the first ``failed to load`` line, within seconds, and cleans up."""
    repository = tmp_path / "repository"
    shutil.copytree(triton_repository, repository, copy_function=os.link)  # no 2nd copy of the ONNX
    broken = repository / "postprocess" / "1" / "model.py"
    broken.unlink()  # a new file, not a write through the hard link into the shared repository
    broken.write_text('raise RuntimeError("mlsharp-test: this model.py is broken")\n')
    server = TritonServer(repository)
    start = time.monotonic()
    with pytest.raises(TritonStartError) as failure:
        server.start()
    elapsed = time.monotonic() - start
    message = str(failure.value)
    assert elapsed < 20, f"took {elapsed:.1f} s"
    assert "cannot load a model" in message and "failed to load 'postprocess'" in message
    assert "mlsharp-test: this model.py is broken" in message  # the log tail carries the cause
    assert server.process is None
    assert _wait_until(lambda: not _stubs_of(server.shm_prefix), 10.0), _stubs_of(server.shm_prefix)
    assert _regions(server.shm_prefix) == []


def test_a_missing_repository_fails_at_once(tmp_path: Path) -> None:
    start = time.monotonic()
    with pytest.raises(TritonStartError, match="does not exist"):
        TritonServer(tmp_path / "nothing-here").start()
    assert time.monotonic() - start < 5


def test_cli_serves_until_sigterm_then_exits_0_leaving_nothing(triton_repository: Path) -> None:
    """``python -m mlsharp.triton.server`` (the README's serve command): ready line, then SIGTERM."""
    ports = [free_port() for _ in range(3)]
    command = [sys.executable, "-m", "mlsharp.triton.server", "--repository", str(triton_repository)]
    for flag, port in zip(("--http-port", "--grpc-port", "--metrics-port"), ports, strict=True):
        command += [flag, str(port)]
    cli = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert cli.stdout is not None
        ready = cli.stdout.readline()
        assert ready.startswith("triton ready:") and f"127.0.0.1:{ports[1]}" in ready, ready
        (server_pid,) = _children_of(cli.pid)  # the CLI's tritonserver; its children are the stubs
        stub_cmdline = Path(f"/proc/{_children_of(server_pid)[0]}/cmdline").read_bytes()
        found = re.search(rb"\x00(mlsharp_[0-9a-f]{12}_)[0-9a-f-]+\x00", stub_cmdline)
        assert STUB in stub_cmdline and found, stub_cmdline
        prefix = found.group(1).decode()
        instances = _python_instances(triton_repository)
        assert len(_stubs_of(prefix)) == instances and len(_regions(prefix)) == instances
        assert len(_spz_scene(f"127.0.0.1:{ports[1]}")) > 1000
        cli.send_signal(signal.SIGTERM)
        out, err = cli.communicate(timeout=60)
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()
    assert cli.returncode == 0, err[-3000:]
    assert "triton stopped (exit code 0)" in out
    assert _stubs_of(prefix) == [] and _regions(prefix) == []
    assert not Path(f"/proc/{server_pid}").exists()

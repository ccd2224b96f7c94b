"""Processes for the multi-replica test: gateways started as a user starts them
(``python -m gateway serve``), killed or stopped by pid, and what the test reads from the shared
services (Triton statistics, the job's lease holder in PostgreSQL)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from mlsharp.triton.server import free_port


class GatewayProcess:
    def __init__(self, name: str, env: dict[str, str], workdir: Path) -> None:
        self.name = name
        self.env = {**os.environ, **env, "MLSHARP_REPLICA_ID": name}
        self.workdir = workdir
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 90.0) -> GatewayProcess:
        log = self.workdir / f"{self.name}.log"
        command = [sys.executable, "-m", "gateway", "serve", "--port", str(self.port), "--log-file", str(log)]
        self.process = subprocess.Popen(
            command, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self.workdir
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gateway {self.name} exited: {self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/v1/ready", timeout=2, trust_env=False).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"gateway {self.name} not ready in {timeout_s:.0f} s: {self.log_tail()}")

    def log_tail(self) -> str:
        try:
            return (self.workdir / f"{self.name}.log").read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, leases stay held until they expire."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.kill()


def sharp_inferences(http_url: str) -> int:
    """Requests the ``sharp`` network model ran on one Triton (its own statistics)."""
    response = httpx.get(f"http://{http_url}/v2/models/sharp/stats", timeout=10, trust_env=False)
    response.raise_for_status()
    return sum(int(stats.get("inference_count", 0)) for stats in response.json()["model_stats"])


def query(database_url: str, sql: str, *params: Any) -> list[dict[str, Any]]:
    async def run() -> list[dict[str, Any]]:
        conn = await asyncpg.connect(database_url)
        try:
            return [dict(row) for row in await conn.fetch(sql, *params)]
        finally:
            await conn.close()

    return asyncio.run(run())

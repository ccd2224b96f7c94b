"""``python -m gateway serve`` as a user runs it: a real process on a free port."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from mlsharp.triton.server import free_port


def test_serve_without_a_checkpoint_answers_and_says_why(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "MLSHARP_RESULTS_DIR": str(tmp_path / "results"), "MLSHARP_LOCAL_DOWNLOAD": "false"}
    env["TORCH_HOME"] = str(tmp_path / "torch-home")  # no cached official checkpoint
    command = [
        sys.executable,
        "-m",
        "gateway",
        "serve",
        "--port",
        str(port),
        "--log-file",
        str(tmp_path / "g.log"),
    ]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        health = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=2).json()
                if health["detail"] != "the local backend is not ready":
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        assert health is not None, process.stdout.read().decode() if process.stdout else ""
        assert health["status"] == "degraded" and health["backend"] == "local"
        assert "checkpoint" in health["detail"].lower()
        refused = httpx.post(
            f"http://127.0.0.1:{port}/v1/predict", files={"file": ("a.png", b"\x89PNG\r\n\x1a\n")}, timeout=10
        )
        assert refused.status_code in (400, 503)
        ready = httpx.get(f"http://127.0.0.1:{port}/v1/ready", timeout=5)
        assert ready.status_code == 503 and "checkpoint" in ready.json()["message"].lower()
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert process.returncode in (0, -15)  # uvicorn re-raises SIGTERM after a graceful shutdown
    log = (tmp_path / "g.log").read_text()
    assert '"msg": "gateway started"' in log and '"msg": "gateway stopped"' in log


def test_serve_hands_the_shutdown_grace_and_trusted_proxies_to_uvicorn(monkeypatch) -> None:
    """A rollout's SIGTERM must not cut requests that wait on Triton: the grace is a setting that
    the deployment sizes (it was a fixed 10 s against a 600 s Triton timeout)."""
    import uvicorn

    from gateway.__main__ import serve
    from gateway.settings import load_settings

    seen: dict = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: seen.update(kwargs))
    serve(load_settings(None, {"shutdown_grace_s": 75, "forwarded_allow_ips": "192.0.2.0/24"}))
    assert seen["timeout_graceful_shutdown"] == 75
    assert seen["forwarded_allow_ips"] == "192.0.2.0/24" and seen["proxy_headers"] is True

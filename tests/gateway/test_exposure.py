"""Issue 13 item 7: what the gateway exposes without being asked: checkpoint paths in health,
capability ids in access logs, world-readable results; and durable renames."""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gateway.app import create_app
from mlsharp.fileio import atomic_write
from tests.gateway.support import FakeBackend, png_bytes, wait_for

SECRET_PATH = "/srv/private-models/team-x/sharp_2572gikvuh.pt"


class UnloadableBackend(FakeBackend):
    """A backend whose model failed to load, like LocalBackend without its checkpoint."""

    def __init__(self) -> None:
        super().__init__()
        self.is_ready = False
        self.load_error = f"checkpoint not found at {SECRET_PATH}; pass --checkpoint PATH"


def test_health_and_ready_show_no_checkpoint_path(make_settings) -> None:
    with TestClient(
        create_app(make_settings(), backend=UnloadableBackend()), raise_server_exceptions=False
    ) as c:
        health = c.get("/v1/health")
        ready = c.get("/v1/ready")
    assert health.status_code == 200 and ready.status_code == 503
    for text in (health.json()["detail"], ready.json()["message"]):
        assert "private-models" not in text and "/srv" not in text
        assert "checkpoint could not be loaded" in text


def test_access_log_carries_a_short_hash_not_the_capability(make_settings, caplog) -> None:
    with TestClient(create_app(make_settings(), backend=FakeBackend()), raise_server_exceptions=False) as c:
        result = c.post("/v1/predict", files={"file": ("a.png", png_bytes())}).json()
        with caplog.at_level(logging.INFO, logger="gateway.access"):
            assert c.get(result["url"]).status_code == 200
    task_id = result["task_id"]
    lines = [r.getMessage() for r in caplog.records if r.name == "gateway.access"]
    assert lines == [f"GET /files/~{hashlib.sha256(task_id.encode()).hexdigest()[:12]}/output.ply 200"]
    assert not any(task_id in str(vars(r)) for r in caplog.records)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_results_and_database_are_private(make_settings) -> None:
    settings = make_settings()
    with TestClient(create_app(settings, backend=FakeBackend()), raise_server_exceptions=False) as c:
        task = c.post("/v1/predict", files={"file": ("a.png", png_bytes())}).json()["task_id"]
        job = c.post("/v1/jobs", files=[("files", ("b.png", png_bytes(9, 9)))]).json()
        wait_for(lambda: c.get(job["status_url"]).json()["state"] == "completed")
        assert c.get(job["status_url"] + "/archive").status_code == 200
        c.post("/v1/webhooks", json={"event_type": "task_failed", "url": "http://127.0.0.1:9/h"})
    root = settings.results_dir
    assert mode(root) == 0o700
    assert not (root / task).exists()  # a predict task only references scene files
    scene = next((root / "scenes").iterdir())
    folders = [root / job["job_id"], root / job["job_id"] / "inputs", root / "scenes", scene]
    assert [oct(mode(f)) for f in folders] == ["0o700"] * 4
    files = [p for f in folders for p in f.iterdir() if p.is_file()]
    assert len(files) >= 4 and {oct(mode(p)) for p in files} == {"0o600"}
    databases = list(root.glob("gateway.sqlite3*")) + list(root.glob("*.key"))
    assert len(databases) >= 2 and {oct(mode(p)) for p in databases} == {"0o600"}


def test_renames_are_followed_by_a_directory_fsync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    atomic_write(tmp_path / "out" / "scene.ply", b"data")
    assert synced == ["file", "dir"]
    assert (tmp_path / "out" / "scene.ply").read_bytes() == b"data"


def test_a_foreign_mount_point_is_left_as_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    from gateway.service.blobs import make_private_dir

    def refuse(*args, **kwargs) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "chmod", refuse)
    with caplog.at_level(logging.WARNING, logger="gateway.blobs"):
        make_private_dir(tmp_path / "results")
    assert (tmp_path / "results").is_dir()
    assert "cannot make" in caplog.text


def test_structured_logs_hash_task_and_job_ids(make_settings, tmp_path: Path) -> None:
    from gateway.logs import JsonFormatter, request_id_var

    task_id = "A" * 32
    record = logging.LogRecord("gateway.predict", logging.INFO, __file__, 1, "predict done", (), None)
    record.task_id = task_id
    token = request_id_var.set("job:" + "B" * 32)
    try:
        line = JsonFormatter().format(record)
    finally:
        request_id_var.reset(token)
    assert task_id not in line and "B" * 32 not in line
    assert f'"task_id": "~{hashlib.sha256(task_id.encode()).hexdigest()[:12]}"' in line
    assert f'"request_id": "job:~{hashlib.sha256(("B" * 32).encode()).hexdigest()[:12]}"' in line
    plain = logging.LogRecord("gateway.access", logging.INFO, __file__, 1, "GET /v1/health 200", (), None)
    plain.request_id = "c" * 32  # an HTTP request id: clients quote it, so it stays readable
    assert '"request_id": "' + "c" * 32 + '"' in JsonFormatter().format(plain)

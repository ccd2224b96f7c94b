"""Structured JSON logs with request ids, and size-based rotation when logging to a file."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.logs import JsonFormatter, configure_logging, request_id_var
from tests.gateway.support import FakeBackend, png_bytes


@pytest.fixture
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def test_json_lines_carry_the_request_id_and_extras() -> None:
    record = logging.LogRecord("gateway.x", logging.INFO, __file__, 1, "done %s", ("ok",), None)
    record.task_id = "abc"
    token = request_id_var.set("req-1")
    try:
        line = json.loads(JsonFormatter().format(record))
    finally:
        request_id_var.reset(token)
    assert (line["msg"], line["level"], line["logger"]) == ("done ok", "INFO", "gateway.x")
    assert (line["request_id"], line["task_id"]) == ("req-1", "abc")


def test_file_logging_rotates_and_records_requests(
    make_settings, tmp_path: Path, restore_root_logger
) -> None:
    log_file = tmp_path / "logs" / "gateway.log"
    settings = make_settings(log_file=log_file, log_max_bytes=2048, log_backups=5, log_level="info")
    configure_logging(settings)
    with TestClient(create_app(settings, backend=FakeBackend()), raise_server_exceptions=False) as client:
        client.post(
            "/v1/predict", files={"file": ("a.png", png_bytes())}, headers={"X-Request-ID": "trace-7"}
        )
        for _ in range(12):
            client.get("/v1/health")
    for handler in logging.getLogger().handlers:
        handler.flush()
    files = sorted(p.name for p in log_file.parent.iterdir())
    assert files[:2] == ["gateway.log", "gateway.log.1"] and len(files) <= 6
    assert all(p.stat().st_size <= 2048 for p in log_file.parent.iterdir())
    lines = [json.loads(line) for p in log_file.parent.iterdir() for line in p.read_text().splitlines()]
    traced = [line for line in lines if line["request_id"] == "trace-7"]
    assert {line["msg"] for line in traced} >= {"POST /v1/predict 200", "predict done"}
    access = next(line for line in traced if line["msg"] == "POST /v1/predict 200")
    assert access["endpoint"] == "/v1/predict" and access["status"] == 200


def test_cors_only_for_configured_origins(make_settings) -> None:
    settings = make_settings(cors_allow_origins=["https://app.example"])
    with TestClient(create_app(settings, backend=FakeBackend()), raise_server_exceptions=False) as client:
        allowed = client.get("/v1/health", headers={"Origin": "https://app.example"})
        other = client.get("/v1/health", headers={"Origin": "https://evil.example"})
    assert allowed.headers["access-control-allow-origin"] == "https://app.example"
    assert "access-control-allow-origin" not in other.headers

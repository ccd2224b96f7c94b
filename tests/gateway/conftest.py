"""Fixtures for the gateway tests (helpers live in support.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.settings import Settings
from tests.gateway.support import FakeBackend, Receiver
from tests.servers.seaweed import seaweed  # noqa: F401  (a session fixture: one SeaweedFS S3 server)


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    """Settings rooted in tmp_path with fast timings; keyword arguments override."""

    def factory(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "results_dir": tmp_path / "results",
            "webhook_allow_hosts": ("127.0.0.1",),
            "webhook_backoff_s": 0.05,
            "webhook_backoff_max_s": 0.2,
            "webhook_timeout_s": 2.0,
            "upload_max_bytes": 2 * 1024 * 1024,
            "upload_max_pixels": 4_000_000,
            "job_max_files": 4,
            "job_max_bytes": 8 * 1024 * 1024,
        }
        values.update(overrides)
        return Settings.model_validate(values)

    return factory


@pytest.fixture
def fake_backend() -> FakeBackend:
    return FakeBackend()


@pytest.fixture
def client(make_settings: Callable[..., Settings], fake_backend: FakeBackend) -> Iterator[TestClient]:
    app = create_app(make_settings(), backend=fake_backend)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()

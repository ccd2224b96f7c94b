"""Liveness answers from the process alone; readiness follows the backend."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.settings import Settings
from tests.gateway.support import FakeBackend


class StuckBackend(FakeBackend):
    """A Triton that answers nothing for a long time (overloaded or restarting)."""

    async def ready(self) -> bool:
        await asyncio.sleep(30)
        return False


def test_liveness_never_waits_on_the_backend(make_settings: Callable[..., Settings]) -> None:
    app = create_app(make_settings(), backend=StuckBackend())
    with TestClient(app, raise_server_exceptions=False) as client:
        start = time.monotonic()
        live = client.get("/v1/live")
        assert time.monotonic() - start < 2.0
        assert live.status_code == 200 and live.json() == {"status": "success", "message": "alive"}


def test_readiness_follows_the_backend(
    make_settings: Callable[..., Settings], fake_backend: FakeBackend
) -> None:
    app = create_app(make_settings(), backend=fake_backend)
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/v1/ready").status_code == 200
        fake_backend.is_ready = False
        not_ready = client.get("/v1/ready")
        assert not_ready.status_code == 503 and "retry-after" in not_ready.headers
        assert client.get("/v1/live").status_code == 200

"""The shared cache on a real redis-server: replicas share entries, no pickle, and a dead Redis
never fails a request (a metric and a warning say so instead)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from gateway.app import create_app
from mlsharp.triton.server import free_port
from tests.gateway.support import FakeBackend, png_bytes, wait_for

REDIS_SERVER = shutil.which("redis-server")
NO_PERSISTENCE = ("--save", "", "--appendonly", "no", "--dir")
pytestmark = pytest.mark.needs("redis-server")


class RedisProcess:
    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = subprocess.Popen(
            [
                str(REDIS_SERVER),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                *NO_PERSISTENCE,
                str(workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(host="127.0.0.1", port=self.port)
        wait_for(lambda: self._ping(client), timeout_s=10)
        client.close()

    @staticmethod
    def _ping(client: redis.Redis) -> bool:
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisProcess]:
    server = RedisProcess(tmp_path)
    yield server
    server.kill()


def test_replicas_share_the_cache_and_survive_redis_dying(make_settings, redis_server, caplog) -> None:
    image = png_bytes(33, 21)
    settings_a = make_settings(redis_url=redis_server.url, redis_timeout_s=0.5)
    settings_b = make_settings(  # replicas share the results volume (ReadWriteMany in k8s)
        redis_url=redis_server.url,
        redis_timeout_s=0.5,
        results_dir=settings_a.results_dir,
        sqlite_path=settings_a.results_dir / "b.sqlite3",
    )
    backend_a, backend_b = FakeBackend(), FakeBackend()
    app_a, app_b = create_app(settings_a, backend=backend_a), create_app(settings_b, backend=backend_b)
    with (
        TestClient(app_a, raise_server_exceptions=False) as a,
        TestClient(app_b, raise_server_exceptions=False) as b,
    ):
        first = a.post("/v1/predict", files={"file": ("x.png", image)})
        second = b.post("/v1/predict", files={"file": ("y.png", image)})
        assert first.status_code == second.status_code == 200
        assert (backend_a.calls, backend_b.calls) == (1, 0)  # replica b was served from Redis
        assert a.get(first.json()["url"]).content == b.get(second.json()["url"]).content
        stats = b.get("/v1/cache").json()
        assert (stats["backend"], stats["size"], stats["hits"], stats["misses"]) == ("redis", 1, 1, 0)

        # what is stored: the scene's metadata JSON only (its bytes are in the scene store, once)
        raw = redis.Redis(host="127.0.0.1", port=redis_server.port)
        (key,) = [k for k in raw.scan_iter("mlsharp:v1:*") if not k.endswith(b"index")]
        entry = raw.hgetall(key)
        assert set(entry) == {b"meta"}
        assert json.loads(entry[b"meta"])["image_size"] == {"width_px": 33, "height_px": 21}
        assert 0 < raw.ttl(key) <= 24 * 3600
        raw.close()

        redis_server.kill()
        started = time.monotonic()
        again = a.post("/v1/predict", files={"file": ("x.png", image)})
        other = a.post("/v1/predict", files={"file": ("z.png", png_bytes(12, 12))})
        assert again.status_code == other.status_code == 200
        assert time.monotonic() - started < 5
        assert backend_a.calls == 3  # served by the backend while Redis is down
        stats = a.get("/v1/cache").json()
        assert stats["errors"] >= 4 and stats["size"] is None
        metrics = a.get("/metrics").text
        errors = [line for line in metrics.splitlines() if line.startswith("cache_redis_errors_total ")]
        assert float(errors[0].split()[1]) >= 4
        assert a.post("/v1/cache/clear").status_code == 200
    assert "serving without cache" in caplog.text


def test_cache_clear_uses_the_index_not_keys(make_settings, redis_server) -> None:
    settings = make_settings(redis_url=redis_server.url)
    with TestClient(create_app(settings, backend=FakeBackend()), raise_server_exceptions=False) as client:
        for size in (5, 6, 7):
            client.post("/v1/predict", files={"file": ("a.png", png_bytes(size, size))})
        assert client.get("/v1/cache").json()["size"] == 3
        cleared = client.post("/v1/cache/clear").json()
        assert cleared["message"] == "Cache cleared (3 entries removed)."
        assert client.get("/v1/cache").json()["size"] == 0
    raw = redis.Redis(host="127.0.0.1", port=redis_server.port)
    assert list(raw.scan_iter("mlsharp:v1:*")) == []
    raw.close()

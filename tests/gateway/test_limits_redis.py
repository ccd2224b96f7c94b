"""Limits shared by replicas on a real redis-server: one token bucket per principal for all
gateways, one admission count (leases that expire when a replica dies), and a Redis outage that
degrades to per-replica limits with a log line and a metric instead of failing requests."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.backends.admission_shared import SharedAdmission
from gateway.backends.triton import TritonBackend
from gateway.errors import Overloaded
from gateway.service.limits_redis import LimitsRedis
from tests.gateway.fake_triton import FakeTriton
from tests.gateway.support import FakeBackend, png_bytes
from tests.gateway.test_redis import RedisProcess

pytestmark = pytest.mark.needs("redis-server")


@pytest.fixture
def limits_redis(tmp_path: Path) -> Any:
    server = RedisProcess(tmp_path)
    yield server
    server.kill()


def two_gateways(make_settings, tmp_path: Path, backends: tuple[Any, Any], **overrides: Any):
    """Two app instances (replicas) on separate result folders; ``overrides`` for both."""
    apps = []
    for name, backend in zip("ab", backends, strict=True):
        settings = make_settings(results_dir=tmp_path / name, **overrides)
        apps.append(create_app(settings, backend=backend or TritonBackend(settings)))
    return [TestClient(app, raise_server_exceptions=False) for app in apps]


def accepted(clients: list[TestClient], rounds: int) -> tuple[int, list[int]]:
    """Alternate GET /v1/cache (rate limited, cheap) between the replicas."""
    codes = [clients[i % len(clients)].get("/v1/cache").status_code for i in range(rounds)]
    assert set(codes) <= {200, 429}
    return codes.count(200), codes


def test_two_replicas_share_one_token_bucket(make_settings, tmp_path: Path, limits_redis) -> None:
    limits = {"rate_limit_per_minute": 0.01, "rate_limit_burst": 5}  # no refill during the test
    alone = two_gateways(make_settings, tmp_path / "alone", (FakeBackend(), FakeBackend()), **limits)
    with alone[0], alone[1]:
        assert accepted(alone, 16)[0] == 10  # per replica: twice the limit

    shared = two_gateways(
        make_settings,
        tmp_path / "shared",
        (FakeBackend(), FakeBackend()),
        limits_redis_url=limits_redis.url,
        **limits,
    )
    with shared[0], shared[1]:
        count, codes = accepted(shared, 16)
        assert count == 5 and codes[:5] == [200] * 5  # the limit, whichever replica answers
        refused = shared[1].get("/v1/cache")
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 60
        assert "limits_redis_up 1.0" in shared[0].get("/metrics").text
    raw = redis.Redis(host="127.0.0.1", port=limits_redis.port)
    (key,) = raw.keys("mlsharp:limits:v1:rate:*")
    assert float(raw.hget(key, "tokens")) < 1 and raw.pttl(key) > 0  # a bucket that expires
    raw.close()


def test_admission_is_global_and_a_dead_replicas_slots_come_back(limits_redis) -> None:
    def replica() -> SharedAdmission:
        store = LimitsRedis(limits_redis.url, "t:", timeout_s=1.0, retry_s=5.0)
        return SharedAdmission(store, max_in_flight=2, max_queue=1, retry_after_s=3, lease_s=0.6)

    async def scenario() -> None:
        a, b = replica(), replica()
        await a.start()
        await b.start()
        crashed = AsyncExitStack()
        await crashed.enter_async_context(a.slot())
        await crashed.enter_async_context(a.slot())
        await b.beat()
        assert b.load()["in_flight"] == 2  # b sees a's work

        held_by_b = AsyncExitStack()
        waiter = asyncio.create_task(held_by_b.enter_async_context(b.slot()))  # queued
        await asyncio.sleep(0.1)
        assert not waiter.done() and b.load()["waiting"] == 1
        with pytest.raises(Overloaded, match="2 predictions running and 1 waiting across all gateways"):
            await b.slot().__aenter__()  # the global queue is full: refused at once

        # a dies holding both slots: no release, no heartbeat. Its leases expire after 0.6 s.
        assert a._task is not None
        a._task.cancel()
        started = time.monotonic()
        await asyncio.wait_for(waiter, timeout=5)
        waited = time.monotonic() - started
        assert 0.3 < waited < 2.0, waited
        async with b.slot():  # and the second expired slot is free too
            await b.beat()
            assert b.load()["in_flight"] == 2  # b's waiter plus this one; a's are gone
        await held_by_b.aclose()
        await crashed.aclose()
        await b.close()
        await a.close()

    asyncio.run(scenario())


def test_two_gateways_admit_one_inference_between_them(make_settings, tmp_path: Path, limits_redis) -> None:
    with FakeTriton(delay_s=1.5) as triton:
        common = {
            "backend": "triton",
            "triton_url": triton.url,
            "triton_metrics_url": None,
            "max_in_flight": 1,
            "max_queue": 0,
            "cache_enabled": False,
            "limits_redis_url": limits_redis.url,
        }
        clients = two_gateways(make_settings, tmp_path, (None, None), **common)
        with clients[0], clients[1], ThreadPoolExecutor(max_workers=4) as pool:

            def post(i: int) -> int:
                image = png_bytes(6 + i, 6)
                return clients[i % 2].post("/v1/predict", files={"file": ("a.png", image)}).status_code

            codes = list(pool.map(post, range(4)))
    assert sorted(codes) == [200, 429, 429, 429], codes  # one slot for both replicas
    assert len(triton.requests) == 1


def test_redis_down_degrades_to_per_replica_limits(
    make_settings, tmp_path: Path, limits_redis, caplog: pytest.LogCaptureFixture
) -> None:
    with FakeTriton() as triton:
        settings = make_settings(
            backend="triton",
            triton_url=triton.url,
            triton_metrics_url=None,
            cache_enabled=False,
            rate_limit_per_minute=0.01,
            rate_limit_burst=3,
            limits_redis_url=limits_redis.url,
            limits_redis_timeout_s=0.5,
        )
        with TestClient(create_app(settings, backend=TritonBackend(settings))) as client:
            assert client.post("/v1/predict", files={"file": ("a.png", png_bytes(5, 5))}).status_code == 200
            limits_redis.kill()
            started = time.monotonic()
            codes = [
                client.post("/v1/predict", files={"file": ("a.png", png_bytes(6 + i, 5))}).status_code
                for i in range(4)
            ]
            elapsed = time.monotonic() - started
            metrics = client.get("/metrics").text
    # served without Redis, under this replica's own bucket (3 tokens, a fresh one): never a 5xx
    assert codes == [200, 200, 200, 429], codes
    assert elapsed < 3.0  # one timeout opens the breaker, not one per request
    assert len(triton.requests) == 4
    assert "limits_redis_up 0.0" in metrics
    errors = [line for line in metrics.splitlines() if line.startswith("limits_redis_errors_total{")]
    assert sum(float(line.split()[-1]) for line in errors) >= 1
    assert "limits are per replica" in caplog.text

"""The Triton endpoint pool: parsing, DNS re-resolution with an injected resolver, the pick, and
a retired endpoint that finishes its in-flight requests before its client closes. Then the real
TritonBackend over two in-process gRPC servers: requests spread, and a dead one is retried on
the other."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.backends.endpoints import Endpoint, EndpointPool, parse_targets
from gateway.backends.triton import TritonBackend, retry_elsewhere
from gateway.settings import Settings
from tests.gateway.fake_triton import FakeTriton
from tests.gateway.support import png_bytes


class StubClient:
    def __init__(self, address: str) -> None:
        self.address = address
        self.closed = False

    async def close(self) -> None:
        self.closed = True


class Dns:
    """An injectable resolver whose answer the test changes."""

    def __init__(self, *addresses: str) -> None:
        self.addresses = list(addresses)
        self.calls = 0
        self.fail = False

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls += 1
        if self.fail:
            raise OSError("Temporary failure in name resolution")
        assert (host, port) == ("triton-grpc.ns.svc", 8001)
        return list(self.addresses)


async def always_ready(endpoint: Endpoint) -> bool:
    return True


def test_parse_targets() -> None:
    assert parse_targets("a:8001, 10.0.0.2:9001,[::1]:8001") == [
        ("a", 8001),
        ("10.0.0.2", 9001),
        ("::1", 8001),
    ]
    for bad in ("", "a", "a:x", "a:0", ":8001", "a:8001,b"):
        with pytest.raises(ValueError):
            parse_targets(bad)


def test_settings_refuse_a_bad_triton_url(make_settings) -> None:
    with pytest.raises(ValueError, match="'b' is not host:port"):
        make_settings(triton_url="a:8001,b")


def test_dns_answers_add_and_remove_endpoints() -> None:
    async def scenario() -> None:
        dns = Dns("10.0.0.1", "10.0.0.2")
        changes = []
        pool = EndpointPool(
            "triton-grpc.ns.svc:8001",
            StubClient,
            always_ready,
            resolver=dns,
            on_change=lambda: changes.append(1),
        )
        await pool.refresh()
        assert [e.address for e in pool.endpoints] == ["10.0.0.1:8001", "10.0.0.2:8001"]
        assert pool.dynamic and all(e.ready for e in pool.endpoints)

        # a scale-up adds a pod, a scale-down removes one while it serves a request
        leaving = next(e for e in pool.endpoints if e.address == "10.0.0.1:8001")
        async with pool.use(leaving):
            dns.addresses = ["10.0.0.2", "10.0.0.3", "fd00::7"]
            await pool.refresh()
            assert [e.address for e in pool.endpoints] == ["10.0.0.2:8001", "10.0.0.3:8001", "[fd00::7]:8001"]
            assert leaving.removed and not leaving.client.closed  # its request is still running
            assert pool.pick(exclude={"10.0.0.2:8001", "10.0.0.3:8001", "[fd00::7]:8001"}) is None
        await asyncio.sleep(0)
        assert leaving.client.closed  # closed once its last request finished
        assert len(changes) == 2

        # a failed or empty answer keeps the endpoints we had (never drop all on a DNS hiccup)
        kept = pool.endpoints
        dns.fail = True
        await pool.refresh()
        dns.fail, dns.addresses = False, []
        await pool.refresh()
        assert pool.endpoints == kept and len(changes) == 2
        await pool.close()
        assert all(e.client.closed for e in kept)

    asyncio.run(scenario())


def test_the_refresh_loop_re_resolves_every_interval() -> None:
    async def scenario() -> None:
        dns = Dns("10.0.0.1")
        pool = EndpointPool(
            "triton-grpc.ns.svc:8001", StubClient, always_ready, resolver=dns, interval_s=0.05
        )
        await pool.start()
        dns.addresses = ["10.0.0.1", "10.0.0.9"]
        await asyncio.sleep(0.3)
        assert [e.address for e in pool.endpoints] == ["10.0.0.1:8001", "10.0.0.9:8001"]
        assert dns.calls >= 4
        await pool.close()

    asyncio.run(scenario())


def test_pick_is_round_robin_when_idle_and_avoids_the_busy_and_the_unready() -> None:
    async def scenario() -> None:
        async def ready_unless_c(endpoint: Endpoint) -> bool:
            return not endpoint.address.startswith("10.0.0.3")

        pool = EndpointPool("10.0.0.1:1,10.0.0.2:1,10.0.0.3:1", StubClient, ready_unless_c)
        await pool.refresh()
        assert not pool.dynamic
        picks = Counter(pool.pick().address for _ in range(10))
        assert picks == {"10.0.0.1:1": 5, "10.0.0.2:1": 5}  # never the unready one
        busy = pool.endpoints[0]
        async with pool.use(busy):
            assert {pool.pick().address for _ in range(6)} == {"10.0.0.2:1"}  # least in flight
        for endpoint in pool.endpoints:
            endpoint.ready = False  # stale verdicts: still try them rather than stop traffic
        assert pool.pick() is not None
        await pool.close()

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("message", "status", "retry"),
    [
        ("failed to connect to all addresses", "StatusCode.UNAVAILABLE", True),
        ("Server is stopping to serve requests.", "StatusCode.UNAVAILABLE", True),
        ("Request for unknown model: 'mlsharp' is not found", "StatusCode.NOT_FOUND", True),
        ("in ensemble 'mlsharp', Exceeds maximum queue size", "StatusCode.UNAVAILABLE", True),
        ("Deadline Exceeded", "StatusCode.DEADLINE_EXCEEDED", False),
        ('{"code": "invalid_image", "message": "x"}', "StatusCode.INTERNAL", False),
        ("unexpected shape", "StatusCode.INVALID_ARGUMENT", False),
    ],
)
def test_which_failures_are_retried_elsewhere(message: str, status: str, retry: bool) -> None:
    assert retry_elsewhere(message, status) is retry


def endpoint_counts(client: TestClient) -> dict[tuple[str, str], float]:
    counts = {}
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("backend_endpoint_requests_total{"):
            labels, value = line.rsplit(" ", 1)
            endpoint = labels.split('endpoint="')[1].split('"')[0]
            outcome = labels.split('outcome="')[1].split('"')[0]
            counts[endpoint, outcome] = float(value)
    return counts


def test_two_servers_share_the_requests_and_a_dead_one_is_retried_elsewhere(make_settings) -> None:
    with FakeTriton() as first, FakeTriton() as second:
        settings: Settings = make_settings(
            backend="triton",
            triton_url=f"{first.url},{second.url}",
            triton_metrics_url=None,
            cache_enabled=False,
        )
        with TestClient(create_app(settings, backend=TritonBackend(settings))) as client:
            assert client.get("/v1/stats").json()["queue"]["max_in_flight"] == 16  # 8 per endpoint
            for i in range(6):
                response = client.post("/v1/predict", files={"file": ("a.png", png_bytes(5 + i, 5))})
                assert response.status_code == 200, response.text
            assert (len(first.requests), len(second.requests)) == (3, 3)
            assert endpoint_counts(client) == {(first.url, "ok"): 3, (second.url, "ok"): 3}

            first.server.stop(grace=0)  # gone without a word: connection refused from now on
            for i in range(4):
                response = client.post("/v1/predict", files={"file": ("b.png", png_bytes(20 + i, 5))})
                assert response.status_code == 200, response.text
            counts = endpoint_counts(client)
            assert counts[second.url, "ok"] == 7
            assert counts[first.url, "retried"] == 1  # then marked not ready: no more tries there
            assert client.get("/v1/ready").status_code == 200  # one ready endpoint is enough


def test_metrics_urls_one_per_endpoint_host_or_the_single_url() -> None:
    from gateway.backends.triton_metrics import gpu_memory_bytes, metrics_urls

    hosts = ["10.0.0.1", "10.0.0.1", "fd00::1"]
    assert metrics_urls(hosts, 8002, "http://x:8002/metrics") == [
        "http://10.0.0.1:8002/metrics",
        "http://[fd00::1]:8002/metrics",
    ]
    assert metrics_urls(hosts, None, "http://x:8002/metrics") == ["http://x:8002/metrics"]
    assert metrics_urls(hosts, None, None) == []
    text = (
        'nv_gpu_memory_total_bytes{gpu_uuid="GPU-1"} 8.0e+09\n'
        'nv_gpu_memory_total_bytes{gpu_uuid="GPU-2"} 1e9\n'
    )
    assert gpu_memory_bytes(text) == {"GPU-1": 8.0e9, "GPU-2": 1e9}

"""One gateway, two real tritonservers (the exported ``test`` preset): requests are spread over
both, counted by each server's own statistics, and a server stopped with SIGTERM under load
costs no request (its in-flight ones finish, the rest are retried on the other)."""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.backends.triton import TritonBackend
from tests.gateway.support import jpeg_bytes, wait_for
from tests.requires import require_triton

pytestmark = [pytest.mark.triton, pytest.mark.slow]


def inference_count(server: Any, model: str = "mlsharp") -> int:
    """Requests the server has executed for ``model``, from its HTTP statistics endpoint."""
    url = f"http://{server.http_url}/v2/models/{model}/stats"
    with urllib.request.urlopen(url, timeout=10) as reply:
        (stats,) = json.loads(reply.read())["model_stats"]
    return int(stats.get("inference_count", 0))


@pytest.fixture(scope="module")
def servers(triton_repository: Path) -> Iterator[list[Any]]:
    require_triton()
    from mlsharp.triton.server import TritonServer

    # Started from this thread: the servers die with the thread that started them (PDEATHSIG).
    pair = [TritonServer(triton_repository)]
    try:
        pair[0].start()
        pair.append(TritonServer(triton_repository).start())
        yield pair
    finally:
        for server in pair:
            server.kill()  # the graceful unload is test_server_lifecycle.py's to test


@pytest.fixture(scope="module")
def gateway(servers: list[Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    from gateway.settings import Settings

    settings = Settings.model_validate(
        {
            "backend": "triton",
            "triton_url": ",".join(server.grpc_url for server in servers),
            "triton_metrics_url": None,
            "triton_timeout_s": 120,
            "cache_enabled": False,  # every request must reach a Triton
            "results_dir": tmp_path_factory.mktemp("results"),
        }
    )
    with TestClient(
        create_app(settings, backend=TritonBackend(settings)), raise_server_exceptions=False
    ) as client:
        wait_for(lambda: client.get("/v1/ready").status_code == 200, timeout_s=60)
        yield client


def predict(client: TestClient, index: int) -> int:
    image = jpeg_bytes(64 + index, 48, color=(index * 7 % 255, 90, 30))
    return client.post("/v1/predict", files={"file": (f"{index}.jpg", image)}).status_code


def test_requests_are_spread_over_both_servers(gateway: TestClient, servers: list[Any]) -> None:
    before = [inference_count(server) for server in servers]
    statuses = [predict(gateway, i) for i in range(8)]
    assert statuses == [200] * 8
    served = [inference_count(server) - start for server, start in zip(servers, before, strict=True)]
    assert sum(served) == 8 and min(served) >= 3, served  # idle pool: round robin, 4 and 4
    metrics = gateway.get("/metrics").text
    for server, count in zip(servers, served, strict=True):
        line = f'backend_endpoint_requests_total{{endpoint="{server.grpc_url}",outcome="ok"}} {float(count)}'
        assert line in metrics


def test_a_server_stopped_under_load_costs_no_request(
    gateway: TestClient, servers: list[Any], caplog: pytest.LogCaptureFixture
) -> None:
    keep, stop = servers
    kept_before = inference_count(keep)
    total = 16
    done = threading.Semaphore(0)

    def one(index: int) -> int:
        try:
            return predict(gateway, 100 + index)
        finally:
            done.release()

    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(one, i) for i in range(total)]
        for _ in range(3):
            done.acquire(timeout=120)
        code = stop.stop()  # SIGTERM; Triton finishes what it holds, refuses the rest, exits
        statuses = [future.result(timeout=300) for future in futures]
    assert code == 0, stop.last_log_tail
    assert statuses == [200] * total  # zero failed requests
    assert inference_count(keep) - kept_before >= total // 2  # the rest went to the other one
    retried = [r.getMessage() for r in caplog.records if "triton error" in r.getMessage()]
    print("errors retried elsewhere:", retried)  # what a stopping Triton answered, for the log
    assert gateway.get("/v1/ready").status_code == 200

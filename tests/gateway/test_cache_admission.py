"""Issue 13 item 6 (cache hits count in admission and rate limits) and item 7 (cache key scoped
by owner when auth is on, a documented setting)."""

from __future__ import annotations

import threading

import pytest
from fastapi.testclient import TestClient
from httpx import Response

from gateway.app import create_app
from gateway.service.auth import hash_key
from tests.gateway.support import FakeBackend, png_bytes, wait_for

A = png_bytes(10, 10)
B = png_bytes(11, 11)


def test_a_cache_hit_is_refused_while_the_server_is_full(make_settings) -> None:
    backend = FakeBackend(delay_s=1.0, max_queue=0)
    with TestClient(create_app(make_settings(), backend=backend), raise_server_exceptions=False) as client:
        assert client.post("/v1/predict", files={"file": ("a.png", A)}).status_code == 200  # cached now
        results: list[Response] = []
        busy = threading.Thread(
            target=lambda: results.append(client.post("/v1/predict", files={"file": ("b.png", B)}))
        )
        busy.start()
        wait_for(lambda: backend.admission.in_flight == 1)
        hit = client.post("/v1/predict", files={"file": ("a.png", A)})
        busy.join()
        again = client.post("/v1/predict", files={"file": ("a.png", A)})
        rejected = client.get("/metrics").text
    assert hit.status_code == 429, hit.text
    assert "busy" in hit.json()["message"] and hit.headers["retry-after"] == "5"
    assert results[0].status_code == 200
    assert again.status_code == 200 and backend.calls == 2  # idle again: the hit is served
    assert 'admission_rejected_total{reason="overloaded"} 1.0' in rejected


def test_cache_hits_take_rate_limit_tokens(make_settings) -> None:
    keys = [{"name": "u", "sha256": hash_key("k"), "scopes": ["predict"], "rate_per_minute": 2}]
    settings = make_settings(auth_enabled=True, api_keys=keys, rate_limit_burst=2)
    backend = FakeBackend()
    with TestClient(create_app(settings, backend=backend), raise_server_exceptions=False) as client:
        codes = [
            client.post("/v1/predict", files={"file": ("a.png", A)}, headers={"X-API-Key": "k"}).status_code
            for _ in range(3)
        ]
    assert codes == [200, 200, 429] and backend.calls == 1  # the second was a hit, still counted


@pytest.mark.parametrize(("per_owner", "calls"), [(True, 2), (False, 1)])
def test_cache_is_scoped_by_owner_when_auth_is_on(make_settings, per_owner: bool, calls: int) -> None:
    keys = [
        {"name": "alice", "sha256": hash_key("alice-key"), "scopes": ["predict"]},
        {"name": "bob", "sha256": hash_key("bob-key"), "scopes": ["predict"]},
    ]
    settings = make_settings(auth_enabled=True, api_keys=keys, cache_per_owner=per_owner)
    backend = FakeBackend()
    with TestClient(create_app(settings, backend=backend), raise_server_exceptions=False) as client:
        for key in ("alice-key", "bob-key", "alice-key"):
            response = client.post("/v1/predict", files={"file": ("a.png", A)}, headers={"X-API-Key": key})
            assert response.status_code == 200
        jobs = client.post("/v1/jobs", files=[("files", ("a.png", A))], headers={"X-API-Key": "bob-key"})
        assert jobs.status_code == 202
        wait_for(
            lambda: (
                client.get(jobs.json()["status_url"], headers={"X-API-Key": "bob-key"}).json()["state"]
                == "completed"
            )
        )
    assert backend.calls == calls  # bob's upload of the same photo was a miss: no timing oracle

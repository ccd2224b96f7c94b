"""Issue 13 item 4: the queue limit holds under concurrent submissions, and with auth on one
principal gets only its share of the queue."""

from __future__ import annotations

import threading

from fastapi.testclient import TestClient
from httpx import Response

from gateway.app import create_app
from gateway.service.auth import hash_key
from tests.gateway.support import FakeBackend, png_bytes


def submit_concurrently(client: TestClient, n: int, headers: dict[str, str] | None = None) -> list[int]:
    results: list[Response] = []
    barrier = threading.Barrier(n)

    def one(i: int) -> None:
        barrier.wait()
        files = [("files", (f"{i}.png", png_bytes(8 + i, 8)))]
        results.append(client.post("/v1/jobs", files=files, headers=headers or {}))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sorted(r.status_code for r in results)


def test_queue_limit_is_atomic(make_settings) -> None:
    backend = FakeBackend(delay_s=5.0)
    settings = make_settings(job_max_queued=2)
    with TestClient(create_app(settings, backend=backend)) as client:
        statuses = submit_concurrently(client, 8)
        active = client.get("/v1/stats").json()["queue"]["jobs_active"]
    assert statuses == [202, 202] + [429] * 6
    assert active == 2
    folders = [p for p in settings.results_dir.iterdir() if p.is_dir()]
    assert len(folders) == 2  # refused submissions leave no inputs behind


def test_one_principal_gets_only_its_share(make_settings) -> None:
    keys = [
        {"name": "alice", "sha256": hash_key("alice-key"), "scopes": ["predict"]},
        {"name": "bob", "sha256": hash_key("bob-key"), "scopes": ["predict"]},
    ]
    settings = make_settings(auth_enabled=True, api_keys=keys, job_max_queued=4, job_owner_share=0.5)
    with TestClient(create_app(settings, backend=FakeBackend(delay_s=5.0))) as client:
        alice = {"X-API-Key": "alice-key"}
        codes = [
            client.post("/v1/jobs", files=[("files", (f"{i}.png", png_bytes(8 + i, 8)))], headers=alice)
            for i in range(3)
        ]
        bob = client.post(
            "/v1/jobs", files=[("files", ("b.png", png_bytes()))], headers={"X-API-Key": "bob-key"}
        )
    assert [c.status_code for c in codes] == [202, 202, 429]
    assert "share of the queue (2)" in codes[2].json()["message"]
    assert codes[2].headers["retry-after"] == "5"
    assert bob.status_code == 202

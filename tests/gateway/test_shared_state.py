"""Two gateway apps on one PostgreSQL database (and one results store): jobs are shared, never
run twice, cancelled from either replica, streamed from either, and each webhook event is sent
once. The process-level version (SIGKILL, real Tritons, S3) is tests/deploy/test_replicas.py."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import pytest
from fastapi.testclient import TestClient

from gateway.app import create_app
from tests.gateway.support import FakeBackend, Receiver, png_bytes, wait_for

KEY = "k" * 48


@pytest.fixture
def shared_settings(make_settings, postgres_url):
    def factory(replica: str, **overrides):
        return make_settings(
            database_url=postgres_url,
            replica_id=replica,
            webhook_secret_key=KEY,
            job_poll_s=0.2,
            job_lease_s=3.0,
            **overrides,
        )

    return factory


@contextmanager
def two_replicas(shared_settings, delay_s: float = 0.0, **overrides) -> Iterator[tuple]:
    backends = (FakeBackend(delay_s=delay_s), FakeBackend(delay_s=delay_s))
    with ExitStack() as stack:
        clients = [
            stack.enter_context(TestClient(create_app(shared_settings(name, **overrides), backend=backend)))
            for name, backend in zip(("replica-a", "replica-b"), backends, strict=True)
        ]
        yield clients, backends


def photos(count: int, seed: int = 0) -> list:
    return [("files", (f"p{i}.png", png_bytes(color=(seed, i, 7)), "image/png")) for i in range(count)]


def test_a_job_made_on_one_replica_is_read_and_streamed_on_the_other(shared_settings) -> None:
    with two_replicas(shared_settings, delay_s=0.3) as ((a, b), _):
        job = a.post("/v1/jobs", files=photos(4)).json()
        assert b.get(f"/v1/jobs/{job['job_id']}").json()["counts"]["total"] == 4
        lags, states = [], []
        with b.stream("GET", f"/v1/jobs/{job['job_id']}/events") as events:
            for line in events.iter_lines():
                if line.startswith("data:") and '"job_id"' in line and '"state"' in line:
                    status = json.loads(line[5:])
                    lags.append(time.time() - status["updated_at"])
                    states.append(status["state"])
                if line.startswith("event: end"):
                    break
        assert states[-1] == "completed"
        assert max(lags) < 1.0, lags  # any replica's change reaches this stream within 1 s


def test_cancel_on_the_other_replica_stops_the_running_job(shared_settings) -> None:
    with two_replicas(shared_settings, delay_s=0.5) as ((a, b), backends):
        job = a.post("/v1/jobs", files=photos(4, seed=1)).json()
        url = f"/v1/jobs/{job['job_id']}"
        wait_for(lambda: b.get(url).json()["counts"]["running"] == 1)
        runner = next(backend for backend in backends if backend.calls)
        cancelled_at = time.monotonic()
        assert b.delete(url).json()["state"] == "cancelled"
        calls = runner.calls
        time.sleep(1.5)  # long enough for two more files had the job gone on
        assert runner.calls <= calls + 1  # at most the file already in flight
        final = a.get(url).json()
        assert final["state"] == "cancelled" and final["counts"]["done"] < 4
        assert time.monotonic() - cancelled_at < 5


def test_jobs_are_shared_out_never_duplicated_and_each_event_sent_once(shared_settings) -> None:
    receiver = Receiver()
    try:
        with two_replicas(shared_settings, delay_s=0.2) as ((a, b), backends):
            a.post("/v1/webhooks", json={"event_type": "task_completed", "url": receiver.url})
            jobs = [
                (a if n % 2 else b).post("/v1/jobs", files=photos(2, seed=10 + n)).json() for n in range(6)
            ]
            for job in jobs:
                wait_for(lambda job=job: a.get(job["status_url"]).json()["state"] == "completed", 30)
            wait_for(lambda: len(receiver.delivered()) >= 6, 15)
            time.sleep(1.0)  # a duplicate delivery would arrive now
            assert sum(backend.calls for backend in backends) == 12  # 6 jobs x 2 files, once each
            assert all(backend.calls for backend in backends)  # both replicas took work
        ids = [r["headers"]["X-Webhook-Id"] for r in receiver.delivered()]
        assert len(ids) == len(set(ids)) == 6
        assert sorted(e["task_id"] for e in receiver.json_bodies()) == sorted(j["job_id"] for j in jobs)
    finally:
        receiver.close()


def test_shared_database_needs_one_webhook_key(make_settings, postgres_url) -> None:
    with pytest.raises(ValueError, match="webhook_secret_key"):
        make_settings(database_url=postgres_url)


def test_readiness_reflects_the_database(make_settings) -> None:
    """/v1/ready is 503 once its PostgreSQL is gone (a real server, stopped), /v1/live still 200,
    and a job submitted meanwhile gets 503 with Retry-After (storage is not the client's fault)."""
    from tests.servers.postgres import PostgresServer, require_postgres

    server = PostgresServer(require_postgres()).start()
    try:
        settings = make_settings(database_url=server.create_database(), webhook_secret_key=KEY)
        app = create_app(settings, backend=FakeBackend())
        with TestClient(app, raise_server_exceptions=False) as client:
            assert client.get("/v1/ready").status_code == 200
            server.stop()
            answer = client.get("/v1/ready")
            assert answer.status_code == 503, answer.text
            assert "database is unreachable" in answer.text
            assert client.get("/v1/live").status_code == 200
            # a request that needs the database: 503 + Retry-After, not a 500
            refused = client.post("/v1/jobs", files=photos(1, seed=90))
            assert refused.status_code == 503, refused.text
            assert refused.json()["code"] == "storage_unavailable" and refused.headers["retry-after"]
    finally:
        server.stop()

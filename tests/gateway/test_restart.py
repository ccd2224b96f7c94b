"""A new app instance on the same SQLite file and results folder loses nothing.

Results survive a restart (they must never be wiped by one): a job interrupted mid-way resumes
from its first unfinished file, an undelivered webhook is retried by the new process, earlier
downloads keep working, and only the TTL removes results.
"""

from __future__ import annotations

import sqlite3
import time

from fastapi.testclient import TestClient

from gateway.app import create_app
from tests.gateway.support import FakeBackend, Receiver, png_bytes, wait_for


def test_restart_mid_job_resumes_the_job_and_its_webhook(make_settings) -> None:
    receiver = Receiver(fail_first=1)
    settings = make_settings(webhook_backoff_s=3.0, webhook_backoff_max_s=3.0)
    try:
        first = FakeBackend(delay_s=0.4)
        with TestClient(create_app(settings, backend=first), raise_server_exceptions=False) as client:
            secret = client.post(
                "/v1/webhooks", json={"event_type": "task_completed", "url": receiver.url}
            ).json()["secret"]
            quick = client.post("/v1/predict", files={"file": ("q.png", png_bytes(5, 5))}).json()
            wait_for(lambda: receiver.attempts >= 1)  # first delivery failed; retry due in ~3 s
            files = [("files", (f"p{i}.png", png_bytes(color=(i, 1, 2)), "image/png")) for i in range(3)]
            job = client.post("/v1/jobs", files=files).json()
            wait_for(lambda: client.get(job["status_url"]).json()["counts"]["done"] >= 1)
        # the process is gone: the job is still 'running' on disk, one delivery still pending
        with sqlite3.connect(settings.database_path) as db:
            (state,) = db.execute("SELECT state FROM jobs WHERE job_id = ?", (job["job_id"],)).fetchone()
            done_before = db.execute(
                "SELECT COUNT(*) FROM job_files WHERE job_id = ? AND state = 'done'", (job["job_id"],)
            ).fetchone()[0]
            pending = db.execute("SELECT COUNT(*) FROM outbox WHERE state = 'pending'").fetchone()[0]
        assert state == "running" and 1 <= done_before < 3 and pending == 1
        assert receiver.delivered() == []

        second = FakeBackend()
        with TestClient(create_app(settings, backend=second), raise_server_exceptions=False) as client:
            finished = wait_for(
                lambda: (j := client.get(job["status_url"]).json())["state"] == "completed" and j
            )
            assert second.calls == 3 - done_before  # finished files were not redone
            assert [f["state"] for f in finished["files"]] == ["done", "done", "done"]
            assert client.get(finished["files"][0]["downloads"]["ply"]).status_code == 200
            assert client.get(quick["url"]).status_code == 200  # results survive restarts
            wait_for(lambda: len(receiver.delivered()) == 2)
        events = receiver.json_bodies()
        assert sorted(e["task_id"] for e in events) == sorted([quick["task_id"], job["job_id"]])
        job_event = next(e for e in events if e["task_id"] == job["job_id"])
        assert job_event["status"] == "completed" and job_event["url"] == job["status_url"]
        assert len(secret) >= 40
    finally:
        receiver.close()


def test_results_expire_after_the_ttl(make_settings) -> None:
    ttl_s = 2.0
    settings = make_settings(results_ttl_s=ttl_s, sweep_interval_s=0.1)
    with TestClient(create_app(settings, backend=FakeBackend()), raise_server_exceptions=False) as client:
        made = time.monotonic()
        result = client.post("/v1/predict", files={"file": ("a.png", png_bytes())}).json()
        job = client.post("/v1/jobs", files=[("files", ("b.png", png_bytes(7, 7)))]).json()
        wait_for(lambda: client.get(job["status_url"]).json()["state"] == "completed")
        still_there = client.get(result["url"]).status_code
        if time.monotonic() - made < ttl_s * 0.75:  # a slow machine may get here late: no claim then
            assert still_there == 200  # not yet expired
        wait_for(lambda: client.get(result["url"]).status_code == 404, timeout_s=10)
        wait_for(lambda: client.get(job["status_url"]).status_code == 404, timeout_s=10)
    assert not (settings.results_dir / result["task_id"]).exists()
    assert not (settings.results_dir / job["job_id"]).exists()

"""The /v1 contract end to end on the fake backend: predict, files, health, stats, cache, jobs."""

from __future__ import annotations

import io
import json
import time
import zipfile

from fastapi.testclient import TestClient

from gateway.app import create_app
from tests.gateway.support import FakeBackend, jpeg_bytes, png_bytes, sse_events, wait_for


def test_predict_contract_and_download(client: TestClient) -> None:
    image = png_bytes()
    response = client.post("/v1/predict", files={"file": ("photo.png", image, "image/png")})
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {
        "status", "url", "urls", "metadata_url", "image_size", "cached", "processing_time", "task_id"
    }  # fmt: skip
    assert body["status"] == "success" and body["cached"] is False
    assert len(body["task_id"]) == 32
    assert body["url"] == f"http://testserver/files/{body['task_id']}/output.ply"
    assert body["urls"] == {"ply": body["url"]}
    assert body["image_size"] == {"width_px": 32, "height_px": 24}
    assert body["processing_time"] >= 0
    download = client.get(body["url"])
    assert download.status_code == 200
    assert download.content.startswith(b"ply\nformat binary_little_endian 1.0\n")
    meta = client.get(body["metadata_url"]).json()
    assert meta["image_size"] == {"width_px": 32, "height_px": 24}
    assert response.headers["x-request-id"]


def test_second_identical_upload_is_a_cache_hit(client: TestClient, fake_backend: FakeBackend) -> None:
    image = jpeg_bytes()
    first = client.post("/v1/predict", files={"file": ("a.jpg", image, "image/jpeg")})
    second = client.post("/v1/predict", files={"file": ("b.jpg", image, "image/jpeg")})
    assert first.status_code == second.status_code == 200
    assert fake_backend.calls == 1
    assert first.json()["task_id"] != second.json()["task_id"]
    assert client.get(first.json()["url"]).content == client.get(second.json()["url"]).content
    stats = client.get("/v1/cache").json()
    assert stats["enabled"] is True
    assert (stats["size"], stats["hits"], stats["misses"], stats["hit_rate"]) == (1, 1, 1, 0.5)
    # another format of the same scene is a hit (converted from the stored PLY); a focal
    # override is another scene
    client.post("/v1/predict", files={"file": ("a.jpg", image)}, data={"format": "spz"})
    assert fake_backend.calls == 1
    client.post("/v1/predict", files={"file": ("a.jpg", image)}, data={"focal_mm": "26"})
    assert fake_backend.calls == 2
    cleared = client.post("/v1/cache/clear").json()
    assert cleared == {"status": "success", "message": "Cache cleared (2 entries removed)."}
    assert client.get("/v1/cache").json()["size"] == 0


def test_health_stats_metrics_shapes(client: TestClient) -> None:
    health = client.get("/v1/health").json()
    assert health["status"] == "healthy"
    assert {"gpu_available", "gpu_vendor", "gpu_name"} <= set(health)
    assert health["backend"] == "fake" and health["model_id"] == "fake-model-1"
    assert health["backend_ready"] is True and health["triton_ready"] is None
    assert client.get("/v1/ready").json() == {"status": "success", "message": "ready"}
    client.post("/v1/predict", files={"file": ("a.png", png_bytes())})
    stats = client.get("/v1/stats").json()
    assert stats["gpu"] == {"available": False, "vendor": None, "name": None, "count": 0, "memory_mb": 0}
    assert stats["queue"] == {
        "in_flight": 0,
        "waiting": 0,
        "max_in_flight": 1,
        "max_queue": 8,
        "jobs_active": 0,
    }
    assert stats["cache"]["misses"] == 1
    text = client.get("/metrics").text
    for name in (
        "http_requests_total",
        "http_request_duration_seconds",
        "predict_requests_total",
        "predict_duration_seconds",
        "predict_stage_duration_seconds",
        "active_tasks",
        "app_info",
        "input_size_info",
        "cache_hits_total",
        "cache_misses_total",
        "cache_redis_errors_total",
    ):
        assert f"\n{name}" in text, name
    assert 'predict_requests_total{format="ply",status="success"} 1.0' in text
    assert 'input_size_info{dimension="width"} 32.0' in text
    assert 'http_requests_total{endpoint="/v1/predict",method="POST",status="200"} 1.0' in text


def test_openapi_docs_and_home(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert {"/v1/predict", "/v1/jobs", "/v1/jobs/{job_id}", "/files/{task_id}/{name}", "/v1/webhooks"} <= set(
        schema["paths"]
    )
    assert client.get("/docs").status_code == 200
    assert client.get("/redoc").status_code == 200
    home = client.get("/")
    assert home.status_code in (200, 404)  # the page's router answers 404 until index.html exists
    assert home.headers["content-type"].startswith(("text/html", "application/json"))


def _wait_job(
    client: TestClient, status_url: str, states=("completed", "partial", "failed", "cancelled")
) -> dict:
    return wait_for(lambda: (job := client.get(status_url).json())["state"] in states and job)


def test_job_single_file_multiple_formats(client: TestClient) -> None:
    accepted = client.post(
        "/v1/jobs", files=[("files", ("cat.png", png_bytes(), "image/png"))], data={"format": "ply,spz"}
    )
    assert accepted.status_code == 202, accepted.text
    body = accepted.json()
    assert body["status_url"] == f"http://testserver/v1/jobs/{body['job_id']}"
    job = _wait_job(client, body["status_url"])
    assert job["state"] == "completed"
    assert job["progress"] == 1.0
    assert job["formats"] == ["ply", "spz"]
    (entry,) = job["files"]
    assert entry["filename"] == "cat.png" and entry["state"] == "done"
    assert set(entry["downloads"]) == {"ply", "spz", "metadata"}
    assert entry["downloads"]["ply"].endswith(f"/files/{body['job_id']}/00_cat.ply")
    assert client.get(entry["downloads"]["spz"]).content[:2] == b"\x1f\x8b"  # gzip: SPZ
    meta = client.get(entry["downloads"]["metadata"]).json()
    assert meta["image_size"] == {"width_px": 32, "height_px": 24}


def test_job_batch_archive_and_events(client: TestClient) -> None:
    files = [("files", (f"img{i}.png", png_bytes(color=(i * 40, 10, 10)), "image/png")) for i in range(3)]
    body = client.post("/v1/jobs", files=files).json()
    job = _wait_job(client, body["status_url"])
    assert job["state"] == "completed"
    assert [f["filename"] for f in job["files"]] == ["img0.png", "img1.png", "img2.png"]
    archive = client.get(job["archive_url"])
    assert archive.status_code == 200
    assert archive.headers["content-type"] == "application/zip"
    names = sorted(zipfile.ZipFile(io.BytesIO(archive.content)).namelist())
    assert names == sorted([f"0{i}_img{i}.{ext}" for i in range(3) for ext in ("ply", "json")])
    # the event stream of a finished job: one snapshot, then the end event
    with client.stream("GET", body["events_url"]) as stream:
        text = "".join(stream.iter_text())
    events = sse_events(text)
    assert events[0][0] == "job"
    snapshot = events[0][1]
    assert snapshot["state"] == "completed" and snapshot["counts"]["done"] == 3
    assert events[-1] == ("end", {"job_id": body["job_id"]})


def test_job_events_follow_progress_and_cancel(make_settings, receiver) -> None:
    backend = FakeBackend(delay_s=0.3)
    app = create_app(make_settings(), backend=backend)
    with TestClient(app, raise_server_exceptions=False) as client:
        client.post("/v1/webhooks", json={"event_type": "task_failed", "url": receiver.url})
        files = [("files", (f"f{i}.png", png_bytes(color=(i, i, i)), "image/png")) for i in range(4)]
        body = client.post("/v1/jobs", files=files).json()
        wait_for(lambda: client.get(body["status_url"]).json()["counts"]["done"] >= 1)
        cancelled = client.delete(body["status_url"]).json()
        assert cancelled["state"] == "cancelled"
        assert cancelled["counts"]["cancelled"] >= 1
        assert 1 <= cancelled["counts"]["done"] < 4
        time.sleep(0.5)
        after = client.get(body["status_url"]).json()
        assert after["state"] == "cancelled"
        # nothing started after the cancel (the file in flight may still have landed)
        assert after["counts"]["pending"] == after["counts"]["running"] == 0
        assert after["counts"]["done"] <= cancelled["counts"]["done"] + 1
        assert backend.calls <= cancelled["counts"]["done"] + 1
        event = wait_for(lambda: receiver.json_bodies())[0]
        assert event["event"] == "task_failed" and event["status"] == "cancelled"
        assert event["task_id"] == body["job_id"]


def test_event_stream_of_a_running_job(make_settings) -> None:
    app = create_app(make_settings(), backend=FakeBackend(delay_s=0.15))
    with TestClient(app, raise_server_exceptions=False) as client:
        files = [("files", (f"f{i}.png", png_bytes(color=(i, 9, 9)), "image/png")) for i in range(3)]
        body = client.post("/v1/jobs", files=files).json()
        with client.stream("GET", body["events_url"]) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            text = "".join(stream.iter_text())
    snapshots = [data for name, data in sse_events(text) if name == "job"]
    done = [s["counts"]["done"] for s in snapshots]
    assert len(snapshots) >= 3
    assert done == sorted(done) and done[-1] == 3
    assert snapshots[-1]["state"] == "completed"
    assert text.rstrip().endswith(json.dumps({"job_id": body["job_id"]}))

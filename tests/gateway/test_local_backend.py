"""The embedded backend: the core pipeline in worker threads (test preset, random weights).

Checks the real path of ``serve`` without Triton: the model loads in the background (503 until
then), predictions produce stamped random-weight files, and the event loop keeps answering
while the network runs.
"""

from __future__ import annotations

import threading
import time

import pytest
from fastapi.testclient import TestClient

from gateway.app import create_app
from tests.gateway.support import jpeg_bytes, wait_for

pytest.importorskip("mlsharp.checkpoint", reason="core package without mlsharp.checkpoint")
if not hasattr(pytest.importorskip("mlsharp.formats"), "encode_scene"):
    pytest.skip(
        "the core package's scene encoders (mlsharp.formats) are not there yet", allow_module_level=True
    )


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory):
    from gateway.settings import Settings

    settings = Settings.model_validate(
        {
            "results_dir": tmp_path_factory.mktemp("local") / "results",
            "backend": "local",
            "local_preset": "test",
            "local_random_weights": True,
            "local_download": False,
        }
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        wait_for(lambda: client.get("/v1/ready").status_code == 200, timeout_s=300)
        yield client


def test_local_predict_writes_stamped_files(local: TestClient) -> None:
    response = local.post(
        "/v1/predict", files={"file": ("p.jpg", jpeg_bytes(96, 64))}, data={"focal_mm": "26"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["url"].endswith("/output.RANDOM-WEIGHTS.ply")
    ply = local.get(body["url"]).content
    assert ply.startswith(b"ply\n")
    meta = local.get(f"/files/{body['task_id']}/metadata.json").json()
    assert meta["random_weights"] is True
    metrics = local.get("/metrics").text
    for stage in ("decode", "preprocess", "network", "unproject", "encode", "cache_lookup", "store"):
        assert f'predict_stage_duration_seconds_count{{stage="{stage}"}} 1.0' in metrics, stage
    health = local.get("/v1/health").json()
    assert health["backend"] == "local" and health["model_id"] and health["triton_ready"] is None


def test_local_errors_are_typed(local: TestClient) -> None:
    image = jpeg_bytes(64, 64)
    cut = local.post("/v1/predict", files={"file": ("cut.jpg", image[: len(image) // 2])})
    assert cut.status_code == 400 and "not a readable image" in cut.json()["message"]


def test_event_loop_stays_responsive_during_inference(local: TestClient) -> None:
    done = threading.Event()

    def predict() -> None:
        local.post("/v1/predict", files={"file": ("q.jpg", jpeg_bytes(128, 96, color=(1, 2, 3)))})
        done.set()

    worker = threading.Thread(target=predict)
    worker.start()
    time.sleep(0.05)
    latencies = []
    while not done.is_set() and len(latencies) < 50:
        start = time.perf_counter()
        assert local.get("/v1/health").status_code == 200
        latencies.append(time.perf_counter() - start)
    worker.join()
    assert max(latencies) < 1.0, latencies


def test_a_job_with_four_formats_runs_the_network_once(local: TestClient) -> None:
    pipeline = local.app.state.services.backend._pipeline
    calls: list[int] = []
    network = pipeline.model

    def counting(*args, **kwargs):
        calls.append(1)
        return network(*args, **kwargs)

    pipeline.model = counting
    try:
        formats = "ply,ply-clean,spz,splat"
        image = jpeg_bytes(80, 60, color=(9, 99, 199))
        job = local.post("/v1/jobs", files=[("files", ("f.jpg", image))], data={"format": formats}).json()
        done = wait_for(
            lambda: (j := local.get(job["status_url"]).json())["state"] in ("completed", "failed") and j,
            timeout_s=300,
        )
    finally:
        pipeline.model = network
    assert done["state"] == "completed", done
    assert len(calls) == 1  # one network call for four formats
    (entry,) = done["files"]
    assert set(entry["downloads"]) == {"ply", "ply-clean", "spz", "splat", "metadata"}
    assert len(local.get(entry["downloads"]["splat"]).content) == 131_072 * 32

"""The gateway against a real tritonserver serving the exported ``mlsharp`` ensemble.

The server comes from a ``triton_server`` fixture when the suite defines one (a shared,
session-scoped server, e.g. in tests/conftest.py); otherwise this module exports the ``test``
preset with random weights and starts its own with :class:`mlsharp.triton.server.TritonServer`.
Skipped, with the reason, where tritonserver (the nvidia-pytriton wheel) is not installed.
"""

from __future__ import annotations

import io
import os
import sqlite3
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.backends.triton import TritonBackend
from tests.gateway.support import jpeg_bytes, wait_for
from tests.requires import require_triton

pytestmark = [pytest.mark.triton, pytest.mark.slow]


def _require_triton() -> Any:
    from mlsharp.triton.server import TritonServer

    require_triton()
    return TritonServer


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MLSHARP_TEST_TRITON_REPOSITORY, or a fresh export of the test preset (random weights)."""
    _require_triton()
    given = os.environ.get("MLSHARP_TEST_TRITON_REPOSITORY")
    if given:
        return Path(given)
    out = tmp_path_factory.mktemp("export")
    command = [sys.executable, "-m", "export", "--preset", "test", "--random-weights", "--out", str(out)]
    result = subprocess.run([*command, "--formats", "onnx"], capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out / "model_repository"


@pytest.fixture(scope="module")
def server(request: pytest.FixtureRequest) -> Iterator[Any]:
    """The suite's shared ``triton_server`` where there is one, else our own on an export."""
    try:
        shared = request.getfixturevalue("triton_server")
    except pytest.FixtureLookupError:
        shared = None
    if shared is not None:
        yield shared
        return
    triton_server = _require_triton()
    with triton_server(request.getfixturevalue("repository")) as started:
        yield started


@pytest.fixture
def gateway(make_settings, server) -> Iterator[TestClient]:
    settings = make_settings(
        backend="triton",
        triton_url=server.grpc_url,
        triton_metrics_url=server.metrics_url,
        triton_timeout_s=300,
        upload_max_pixels=40_000_000,
    )
    with TestClient(
        create_app(settings, backend=TritonBackend(settings)), raise_server_exceptions=False
    ) as client:
        wait_for(lambda: client.get("/v1/ready").status_code == 200, timeout_s=60)
        yield client


def test_predict_end_to_end_and_cache_hit(gateway: TestClient) -> None:
    image = jpeg_bytes(320, 240)
    health = gateway.get("/v1/health").json()
    assert health["triton_ready"] is True and health["model_id"] != "triton:mlsharp"
    first = gateway.post("/v1/predict", files={"file": ("p.jpg", image)}, data={"format": "spz"})
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["url"].endswith("/output.RANDOM-WEIGHTS.spz")  # random weights are always stamped
    scene = gateway.get(body["url"])
    assert scene.status_code == 200 and len(scene.content) > 1000
    meta = gateway.get(f"/files/{body['task_id']}/metadata.json").json()
    assert meta["random_weights"] is True and meta["model_id"] == health["model_id"]
    second = gateway.post("/v1/predict", files={"file": ("again.jpg", image)}, data={"format": "spz"})
    assert gateway.get(second.json()["url"]).content == scene.content
    cache = gateway.get("/v1/cache").json()
    assert (cache["hits"], cache["misses"]) == (1, 1)


def test_batch_job_with_two_formats(gateway: TestClient) -> None:
    files = [
        ("files", (f"{i}.jpg", jpeg_bytes(160 + i * 16, 120, color=(i * 90, 40, 200)))) for i in range(2)
    ]
    job = gateway.post("/v1/jobs", files=files, data={"format": "ply,splat"}).json()
    done = wait_for(
        lambda: (j := gateway.get(job["status_url"]).json())["state"] in ("completed", "failed") and j,
        timeout_s=600,
    )
    assert done["state"] == "completed", done
    archive = zipfile.ZipFile(io.BytesIO(gateway.get(done["archive_url"]).content))
    names = sorted(archive.namelist())
    assert names == [
        f"0{i}_{i}{ext}" for i in (0, 1) for ext in (".RANDOM-WEIGHTS.ply", ".RANDOM-WEIGHTS.splat", ".json")
    ]
    assert archive.read("00_0.RANDOM-WEIGHTS.ply").startswith(b"ply\n")


def sharp_inferences(server: Any) -> int:
    """How many requests Triton's ``sharp`` model has executed (its inference statistics)."""
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        stats = client.get_inference_statistics("sharp", as_json=True)
    finally:
        client.close()
    (model,) = stats["model_stats"]
    return int(model.get("inference_count", 0))


ALL_FORMATS = ("ply", "ply-clean", "spz", "splat")


def test_a_job_with_four_formats_costs_one_sharp_inference(gateway: TestClient, server: Any) -> None:
    before = sharp_inferences(server)
    image = jpeg_bytes(200, 150, color=(30, 160, 90))
    job = gateway.post(
        "/v1/jobs", files=[("files", ("four.jpg", image))], data={"format": ",".join(ALL_FORMATS)}
    ).json()
    done = wait_for(
        lambda: (j := gateway.get(job["status_url"]).json())["state"] in ("completed", "failed") and j,
        timeout_s=300,
    )
    assert done["state"] == "completed", done
    assert sharp_inferences(server) - before == 1  # one network run for four formats
    (entry,) = done["files"]
    assert set(entry["downloads"]) == {*ALL_FORMATS, "metadata"}
    assert gateway.get(entry["downloads"]["ply"]).content.startswith(b"ply\n")
    assert gateway.get(entry["downloads"]["spz"]).content[:2] == b"\x1f\x8b"
    meta = gateway.get(entry["downloads"]["metadata"]).json()
    assert meta["image_size"] == {"width_px": 200, "height_px": 150}


def test_cache_hit_for_a_new_format_costs_no_inference_and_writes_no_scene_bytes(
    gateway: TestClient, server: Any
) -> None:
    from mlsharp.formats import decode_spz

    services = gateway.app.state.services
    image = jpeg_bytes(240, 160, color=(200, 100, 10))
    start = sharp_inferences(server)
    first = gateway.post("/v1/predict", files={"file": ("a.jpg", image)}, data={"format": "ply"})
    assert first.status_code == 200, first.text
    assert first.json()["image_size"] == {"width_px": 240, "height_px": 160}  # a real response
    assert sharp_inferences(server) - start == 1

    # the same scene in two formats it was never encoded in: converted from the stored PLY
    written = services.scenes.bytes_written
    second = gateway.post("/v1/predict", files={"file": ("b.jpg", image)}, data={"format": ["spz", "splat"]})
    assert second.status_code == 200, second.text
    body = second.json()
    assert body["cached"] is True and sharp_inferences(server) - start == 1
    assert list(body["urls"]) == ["spz", "splat"] and body["url"] == body["urls"]["spz"]
    spz = gateway.get(body["urls"]["spz"]).content
    splat = gateway.get(body["urls"]["splat"]).content
    assert decode_spz(spz).means.shape[0] == len(splat) // 32 == 131_072  # test preset: 512^2 / 2
    assert services.scenes.bytes_written - written == len(spz) + len(splat)

    # the same request again: a hit that writes no scene bytes, the task links the stored files
    written = services.scenes.bytes_written
    third = gateway.post("/v1/predict", files={"file": ("c.jpg", image)}, data={"format": ["spz", "splat"]})
    assert third.status_code == 200 and third.json()["cached"] is True
    assert services.scenes.bytes_written == written
    assert sharp_inferences(server) - start == 1
    with sqlite3.connect(services.settings.database_path) as db:
        (ref,) = db.execute(
            "SELECT blob_key FROM file_refs WHERE task_id = ? AND name = 'output.RANDOM-WEIGHTS.spz'",
            (third.json()["task_id"],),
        ).fetchone()
    assert ref.startswith("scenes/") and ref.endswith("/scene.spz")  # a reference, not a copy
    text = gateway.get("/metrics").text
    assert 'input_size_info{dimension="width"} 240.0' in text
    assert 'input_size_info{dimension="height"} 160.0' in text


def test_corrupt_image_is_a_4xx_from_triton(gateway: TestClient) -> None:
    image = jpeg_bytes(64, 64)
    truncated = image[: len(image) // 2]  # header intact, scan data cut: decoding fails in Triton
    response = gateway.post("/v1/predict", files={"file": ("cut.jpg", truncated)})
    assert response.status_code == 400, response.text
    assert "not a readable image" in response.json()["message"]
    assert response.json()["code"] == "invalid_image"


def test_triton_stopped_gives_503_then_recovers(make_settings, server) -> None:
    """Our own server on the same model repository: killed under the gateway (as a crash would), then
    back. Killed rather than stopped: the graceful unload costs seconds and is tested elsewhere."""
    triton_server = _require_triton()
    repository = server.repository
    first = triton_server(repository).start()
    settings = make_settings(backend="triton", triton_url=first.grpc_url, triton_timeout_s=120)
    try:
        with TestClient(
            create_app(settings, backend=TritonBackend(settings)), raise_server_exceptions=False
        ) as client:
            image = jpeg_bytes(96, 64)
            assert client.post("/v1/predict", files={"file": ("a.jpg", image)}).status_code == 200
            first.kill()
            down = client.post("/v1/predict", files={"file": ("b.jpg", jpeg_bytes(97, 64))})
            assert down.status_code == 503 and down.headers["retry-after"]
            assert client.get("/v1/ready").status_code == 503
            second = triton_server(
                repository,
                grpc_port=first.grpc_port,
                http_port=first.http_port,
                metrics_port=first.metrics_port,
            ).start()
            try:
                wait_for(lambda: client.get("/v1/ready").status_code == 200, timeout_s=60)
                again = client.post("/v1/predict", files={"file": ("c.jpg", jpeg_bytes(98, 64))})
                assert again.status_code == 200, again.text
            finally:
                second.kill()
    finally:
        first.kill()

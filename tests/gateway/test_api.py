"""The /v1 contract end to end on the fake backend: predict, files, health, stats, cache, jobs."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.gateway.support import png_bytes


def test_predict_contract_and_download(client: TestClient) -> None:
    image = png_bytes()
    response = client.post("/v1/predict", files={"file": ("photo.png", image, "image/png")})
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"status", "url", "processing_time", "task_id"}
    assert body["status"] == "success"
    assert len(body["task_id"]) == 32
    assert body["url"] == f"http://testserver/files/{body['task_id']}/output.ply"
    assert body["processing_time"] >= 0
    download = client.get(body["url"])
    assert download.status_code == 200
    assert download.content.startswith(b"FAKESCENE\n")
    assert download.content.endswith(b"\nply")
    meta = client.get(f"/files/{body['task_id']}/metadata.json").json()
    assert meta["width_px"] == 32 and meta["height_px"] == 24
    assert response.headers["x-request-id"]

"""Jobs with ``render=true``: a preview still and an orbit video per photo, end to end through the
API with the fake backend (real encoders, real renderer, real PyAV)."""

from __future__ import annotations

import io
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from gateway.app import create_app
from gateway.service import renders
from mlsharp.render.video import read_video
from tests.gateway.support import FakeBackend, png_bytes, sse_events, wait_for

FRAMES = 6
WIDTH, HEIGHT = 96, 64


@pytest.fixture
def render_client(make_settings: Any) -> Any:
    settings = make_settings(render_frames=FRAMES, render_size=f"{WIDTH}x{HEIGHT}")
    with TestClient(create_app(settings, backend=FakeBackend()), raise_server_exceptions=False) as client:
        yield client


def _submit(client: TestClient, render: str | None, n: int = 1) -> Any:
    data = {} if render is None else {"render": render}
    files = [("files", (f"p{i}.png", png_bytes(64, 48, (40 * i, 90, 200)), "image/png")) for i in range(n)]
    return client.post("/v1/jobs", files=files, data=data)


def _finished(client: TestClient, status_url: str) -> dict[str, Any]:
    ended = ("completed", "partial", "failed", "cancelled")
    job: dict[str, Any] = wait_for(
        lambda: (body := client.get(status_url).json())["state"] in ended and body, timeout_s=60
    )
    return job


def test_render_true_adds_a_preview_and_an_orbit_per_photo(render_client: TestClient, tmp_path: Path) -> None:
    accepted = _submit(render_client, "true", n=2)
    assert accepted.status_code == 202, accepted.text
    job = _finished(render_client, accepted.json()["status_url"])
    assert job["state"] == "completed", job
    assert job["render"] is True
    for file in job["files"]:
        assert file["stage"] is None  # only while running
        assert set(file["downloads"]) == {"ply", "metadata", "preview", "orbit"}
        preview = render_client.get(file["downloads"]["preview"])
        assert preview.status_code == 200
        assert preview.headers["content-type"] == "image/png"
        image = np.asarray(Image.open(io.BytesIO(preview.content)))
        assert image.shape == (HEIGHT, WIDTH, 3)
        assert float(image.astype(np.float64).var()) > 1.0  # gaussians drawn, not a blank frame
        orbit = render_client.get(file["downloads"]["orbit"])
        assert orbit.status_code == 200
        assert orbit.headers["content-type"] == "video/mp4"
        path = tmp_path / f"{file['index']}.mp4"
        path.write_bytes(orbit.content)
        frames = read_video(path)
        assert len(frames) == FRAMES
        assert frames[0].shape == (HEIGHT, WIDTH, 3)
    idx0 = job["files"][0]["downloads"]
    assert idx0["preview"].endswith("/00_p0_preview.png") and idx0["orbit"].endswith("/00_p0_orbit.mp4")
    archive = zipfile.ZipFile(io.BytesIO(render_client.get(job["archive_url"]).content))
    assert {"00_p0_preview.png", "00_p0_orbit.mp4", "01_p1_preview.png", "01_p1_orbit.mp4"} <= set(
        archive.namelist()
    )


def test_render_false_or_absent_adds_no_pictures(render_client: TestClient) -> None:
    for value in ("false", None):
        job = _finished(render_client, _submit(render_client, value).json()["status_url"])
        assert job["state"] == "completed" and job["render"] is False
        assert set(job["files"][0]["downloads"]) == {"ply", "metadata"}


@pytest.mark.parametrize("value", ["maybe", "2", "tru"])
def test_a_bad_render_value_is_a_readable_422(render_client: TestClient, value: str) -> None:
    response = _submit(render_client, value)
    assert response.status_code == 422
    assert response.json()["message"] == f"'render' must be true or false, got '{value}'."


def test_the_event_stream_shows_the_render_stage(
    render_client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = renders.render_files

    def slow(ply: bytes, spec: renders.RenderSpec) -> dict[str, bytes]:
        time.sleep(0.4)  # long enough for the stream to see the stage on any machine
        return real(ply, spec)

    monkeypatch.setattr(renders, "render_files", slow)
    body = _submit(render_client, "true").json()
    with render_client.stream("GET", body["events_url"]) as stream:
        text = "".join(stream.iter_text())
    files = [data["files"][0] for name, data in sse_events(text) if name == "job"]
    stages = [(f["state"], f["stage"]) for f in files]
    assert ("running", "render") in stages, stages
    rendering = files[stages.index(("running", "render"))]
    assert set(rendering["downloads"]) == {"ply", "metadata"}  # the scene, before its pictures
    assert stages[-1] == ("done", None)
    assert set(files[-1]["downloads"]) == {"ply", "metadata", "preview", "orbit"}


def test_render_settings_are_checked() -> None:
    from gateway.settings import Settings, SettingsError, load_settings

    assert Settings().render_frames == 60 and Settings().render_size == "512x512"
    with pytest.raises(SettingsError, match="render_size"):
        load_settings(overrides={"render_size": "511x512"})

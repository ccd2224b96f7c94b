"""TritonBackend against an in-process gRPC server that speaks Triton's protocol.

Exercises the real tritonclient.grpc.aio client: tensor names and types of the ensemble
contract, model id discovery, large messages (> gRPC's 4 MB default), deadlines, typed error
mapping, and 503 while the server is down or not ready.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.backends.triton import TritonBackend, typed_error
from gateway.errors import BackendError, BackendUnavailable, Overloaded
from mlsharp.errors import ImageTooLargeError, InvalidImageError, InvalidParameterError
from mlsharp.triton.backend import error_text
from tests.gateway.fake_triton import FakeTriton
from tests.gateway.support import png_bytes

MB = 1024 * 1024


@pytest.fixture
def triton() -> Iterator[FakeTriton]:
    with FakeTriton(scene_bytes=12 * MB) as server:
        yield server


def gateway_for(make_settings, url: str, **overrides) -> TestClient:
    settings = make_settings(backend="triton", triton_url=url, triton_metrics_url=None, **overrides)
    return TestClient(create_app(settings, backend=TritonBackend(settings)), raise_server_exceptions=False)


def test_predict_through_grpc_with_a_large_scene(make_settings, triton: FakeTriton) -> None:
    with gateway_for(make_settings, triton.url) as client:
        health = client.get("/v1/health").json()
        assert (health["backend"], health["triton_ready"], health["model_id"]) == (
            "triton",
            True,
            "sharp_test",
        )
        response = client.post(
            "/v1/predict",
            files={"file": ("a.png", png_bytes())},
            data={"format": "spz", "focal_mm": "26"},
            headers={"X-Request-ID": "req-42"},
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["url"].endswith("/output.RANDOM-WEIGHTS.spz")  # stamped from metadata
        assert body["image_size"] == {"width_px": 7, "height_px": 5}
        scene = client.get(body["url"]).content
        assert len(scene) == 6 + 3 + 12 * MB and scene.startswith(b"TRITONspz")
        # the served sharp config (max batch 4, one instance) sets the default admission
        assert client.get("/v1/stats").json()["queue"]["max_in_flight"] == 8
    (sent,) = triton.requests
    assert sent["image_bytes"] == png_bytes()
    assert sent["formats"] == [b"spz", b"ply"]  # the PLY the scene store keeps comes along
    assert sent["focal_mm"] == 26.0 and sent["focal_px"] == -1.0  # <= 0 means "not set"
    assert sent["request_id"] == "req-42"


def test_typed_errors_from_the_models(make_settings, triton: FakeTriton) -> None:
    with gateway_for(make_settings, triton.url) as client:
        # the gateway's own sniffing lets these through (valid PNG magic), Triton refuses them
        bad = client.post("/v1/predict", files={"file": ("a.png", b"\x89PNG\r\n\x1a\n")})
        assert bad.status_code == 400  # the gateway's header check answers first
        triton_backend = client.app.state.services.backend

        async def call(image: bytes):
            return await triton_backend.infer(image, None, None, ("ply",))

        portal = client.portal
        with pytest.raises(
            InvalidImageError, match=r"^The upload is not a readable image \(truncated PNG data\)\.$"
        ):
            portal.call(call, b"BAD image")
        with pytest.raises(BackendError, match="internal_error"):
            portal.call(call, b"CRASH")


@pytest.mark.parametrize(
    ("message", "status", "expected", "text"),
    [
        (
            "in ensemble 'mlsharp', " + error_text(InvalidImageError("truncated")),
            "StatusCode.INTERNAL",
            InvalidImageError,
            "truncated",
        ),
        (
            error_text(ImageTooLargeError("9x9 too big")),
            "StatusCode.INTERNAL",
            ImageTooLargeError,
            "9x9 too big",
        ),
        (
            error_text(InvalidParameterError("focal_px: > 0")),
            "StatusCode.INTERNAL",
            InvalidParameterError,
            "focal_px",
        ),
        ("unexpected shape", "StatusCode.INVALID_ARGUMENT", InvalidParameterError, "unexpected shape"),
        ("failed to connect", "StatusCode.UNAVAILABLE", BackendUnavailable, "UNAVAILABLE"),
        (
            "in ensemble 'mlsharp', Exceeds maximum queue size",
            "StatusCode.UNAVAILABLE",
            Overloaded,
            "queue is full",
        ),
        ("Deadline Exceeded", "StatusCode.DEADLINE_EXCEEDED", BackendUnavailable, "DEADLINE_EXCEEDED"),
        ("Request for unknown model", "StatusCode.NOT_FOUND", BackendUnavailable, "does not serve"),
        (error_text(ZeroDivisionError("x")), "StatusCode.INTERNAL", BackendError, "internal_error"),
        ("invalid_image: the old text protocol", "StatusCode.INTERNAL", BackendError, "internal_error"),
    ],
)
def test_typed_error_mapping(message: str, status: str, expected: type, text: str) -> None:
    error = typed_error(message, status, retry_after_s=7.2)
    assert type(error) is expected
    assert text in str(error)
    if expected is Overloaded:  # Triton's bounded queue is full: 429, with the measured wait
        assert error.headers == {"Retry-After": "8"}


def test_not_ready_without_a_served_model_id(make_settings) -> None:
    """A repository whose configs carry no model_id: never an invented id, never a cache key."""
    with FakeTriton(model_id="") as server, gateway_for(make_settings, server.url) as client:
        assert client.get("/v1/ready").status_code == 503
        health = client.get("/v1/health").json()
        assert health["model_id"] == "" and health["backend_ready"] is False
        response = client.post("/v1/predict", files={"file": ("a.png", png_bytes())})
        assert response.status_code == 503 and response.json()["code"] == "backend_unavailable"
        assert server.requests == []  # nothing was sent to the model
    settings = dict(triton_model_id="pinned-id")
    with FakeTriton(model_id="") as server, gateway_for(make_settings, server.url, **settings) as client:
        assert client.get("/v1/ready").status_code == 200  # an explicit id is enough
        assert client.post("/v1/predict", files={"file": ("a.png", png_bytes())}).status_code == 200


def test_deadline_gives_503(make_settings) -> None:
    with (
        FakeTriton(delay_s=2.0) as slow,
        gateway_for(make_settings, slow.url, triton_timeout_s=0.3) as client,
    ):
        response = client.post("/v1/predict", files={"file": ("a.png", png_bytes())})
    assert response.status_code == 503
    assert response.json()["message"] == "Triton is unavailable (DEADLINE_EXCEEDED)."


def test_not_ready_then_recovery(make_settings, triton: FakeTriton) -> None:
    with gateway_for(make_settings, triton.url) as client:
        triton.ready = False
        assert client.get("/v1/ready").status_code == 503
        assert client.get("/v1/health").json()["status"] == "degraded"
        down = client.post("/v1/predict", files={"file": ("a.png", png_bytes())})
        assert down.status_code == 503 and down.headers["retry-after"] == "5"
        triton.ready = True
        assert client.get("/v1/ready").status_code == 200
        assert client.post("/v1/predict", files={"file": ("a.png", png_bytes())}).status_code == 200


def test_server_gone_gives_503(make_settings) -> None:
    with FakeTriton() as server:
        url = server.url
    with gateway_for(make_settings, url, triton_timeout_s=2.0) as client:
        assert client.get("/v1/health").json()["triton_ready"] is False
        response = client.post("/v1/predict", files={"file": ("a.png", png_bytes())})
    assert response.status_code == 503
    # never an invented model id: without the served config there is no cache key, so no call
    assert response.json()["message"] == (
        "The triton backend is not ready: its model id has not been read yet."
    )

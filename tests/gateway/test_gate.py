"""Item 1 of issue 13: 401/403/429/413 come right after the headers, before any body byte is read.

A real uvicorn server on 127.0.0.1 and a raw socket: the request declares a 200 MB multipart body
and sends none of it. Before the fix the gateway waited for the body (auth ran as a FastAPI
dependency after parsing), so no reply came within the timeout.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from gateway.app import create_app
from gateway.service.auth import hash_key
from tests.gateway.live import LiveServer
from tests.gateway.support import FakeBackend, png_bytes

DECLARED = 200 * 1024 * 1024


@pytest.fixture
def live(make_settings) -> Iterator[LiveServer]:
    keys = [
        {"name": "user", "sha256": hash_key("user-key"), "scopes": ["predict"]},
        {"name": "slow", "sha256": hash_key("slow-key"), "scopes": ["predict"], "rate_per_minute": 1},
    ]
    settings = make_settings(
        auth_enabled=True, api_keys=keys, rate_limit_burst=1, upload_max_bytes=300 * 1024 * 1024
    )
    server = LiveServer(create_app(settings, backend=FakeBackend()))
    yield server
    server.close()


def head(path: str, extra: str = "", length: int = DECLARED) -> str:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: multipart/form-data; boundary=XyZ\r\n"
        f"Content-Length: {length}\r\n{extra}\r\n"
    )


@pytest.mark.parametrize(
    ("path", "extra", "status"),
    [
        ("/v1/predict", "", b"401"),
        ("/v1/predict", "X-API-Key: wrong\r\n", b"401"),
        ("/v1/jobs", "Authorization: Bearer a.b.c\r\n", b"401"),
        ("/v1/webhooks", "X-API-Key: user-key\r\n", b"403"),
    ],
)
def test_refused_right_after_the_headers_and_closed(
    live: LiveServer, path: str, extra: str, status: bytes
) -> None:
    reply, closed = live.raw(head(path, extra), body=b"--XyZ\r\n")
    assert reply.startswith(b"HTTP/1.1 " + status), reply[:200]
    assert closed, "the server must close the connection instead of waiting for the body"
    assert b"connection: close" in reply.lower()


def test_rate_limit_answers_429_before_the_body(live: LiveServer) -> None:
    ok = httpx.post(
        live.url + "/v1/predict", files={"file": ("a.png", png_bytes())}, headers={"X-API-Key": "slow-key"}
    )
    assert ok.status_code == 200  # the burst of one
    reply, closed = live.raw(head("/v1/predict", "X-API-Key: slow-key\r\n"))
    assert reply.startswith(b"HTTP/1.1 429"), reply[:200]
    assert b"retry-after:" in reply.lower() and closed


def test_declared_size_over_the_limit_is_413_at_once(live: LiveServer) -> None:
    reply, closed = live.raw(head("/v1/predict", "X-API-Key: user-key\r\n", length=1 << 30))
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert closed


def test_a_good_key_still_uploads(live: LiveServer) -> None:
    response = httpx.post(
        live.url + "/v1/predict", files={"file": ("a.png", png_bytes())}, headers={"X-API-Key": "user-key"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["url"].endswith("/output.ply")


def test_the_gate_finds_routes_behind_a_root_path(make_settings) -> None:
    from fastapi.testclient import TestClient

    from gateway.gate import required_scope, route_path

    assert route_path({"path": "/api/v1/predict", "root_path": "/api"}) == "/v1/predict"
    assert route_path({"path": "/apiv1/predict", "root_path": "/api"}) == "/apiv1/predict"
    assert [
        required_scope(p) for p in ("/v1/predict", "/v1/jobs/x/events", "/v1/cache/clear", "/v1/health")
    ] == [
        "predict",
        "predict",
        "admin",
        None,
    ]
    keys = [{"name": "user", "sha256": hash_key("user-key"), "scopes": ["predict"]}]
    settings = make_settings(auth_enabled=True, api_keys=keys, root_path="/api")
    with TestClient(create_app(settings, backend=FakeBackend()), raise_server_exceptions=False) as client:
        refused = client.post("/api/v1/predict", files={"file": ("a.png", png_bytes())})
        ok = client.post(
            "/api/v1/predict", files={"file": ("a.png", png_bytes())}, headers={"X-API-Key": "user-key"}
        )
    assert refused.status_code == 401 and refused.headers["connection"] == "close"
    assert ok.status_code == 200

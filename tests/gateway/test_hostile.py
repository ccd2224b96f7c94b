"""Hostile inputs: every case must get the right 4xx with a helpful message, never a 5xx.

Each case is (name, request function, expected status, expected message fragment). The limits
are set small (2 MB uploads, 4 MP, 4 files per job) so oversize cases stay cheap.
"""

from __future__ import annotations

import re
import struct
import time
import zlib
from collections.abc import Callable, Iterator

import jwt
import pytest
from fastapi.testclient import TestClient
from httpx import Response

from gateway.app import create_app
from gateway.ids import new_id
from gateway.service.auth import hash_key
from tests.gateway.support import FakeBackend, jpeg_bytes, png_bytes, wait_for

MB = 1024 * 1024


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares width x height (a decompression bomb's calling card)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def multipart(
    parts: list[tuple[str, str | None, bytes]], boundary: str = "XyZ"
) -> tuple[bytes, dict[str, str]]:
    body = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        body += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    from gateway.settings import Settings

    settings = Settings.model_validate(
        {
            "results_dir": tmp_path_factory.mktemp("hostile") / "results",
            "upload_max_bytes": 2 * MB,
            "upload_max_pixels": 4_000_000,
            "job_max_files": 4,
            "job_max_bytes": 6 * MB,
            "webhook_allow_hosts": [],
        }
    )
    with TestClient(create_app(settings, backend=FakeBackend()), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    from gateway.settings import Settings

    settings = Settings.model_validate(
        {
            "results_dir": tmp_path_factory.mktemp("secured") / "results",
            "auth_enabled": True,
            "api_keys": [{"name": "u", "sha256": hash_key("good-key"), "scopes": ["predict"]}],
            "jwt_secret": "a-secret-that-is-long-enough-for-hs256!!",
        }
    )
    with TestClient(create_app(settings, backend=FakeBackend()), raise_server_exceptions=False) as client:
        yield client


def predict_file(data: bytes, filename: str = "x.png", content_type: str = "image/png", **form: str):
    return lambda c: c.post("/v1/predict", files={"file": (filename, data, content_type)}, data=form)


def chunked_upload(total: int) -> Callable[[TestClient], Response]:
    def send(client: TestClient) -> Response:
        body, headers = multipart([("file", "big.png", png_bytes() + b"\0" * total)])

        def stream() -> Iterator[bytes]:
            for start in range(0, len(body), 256 * 1024):
                yield body[start : start + 256 * 1024]

        return client.post("/v1/predict", content=stream(), headers=headers)

    return send


def raw(method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None):
    return lambda c: c.request(method, path, content=body, headers=headers or {})


GOOD = png_bytes()
TRUNCATED_PNG = png_bytes(64, 64)[:60]
TRUNCATED_JPEG = jpeg_bytes(64, 64)[: len(jpeg_bytes(64, 64)) // 2]
NOT_FOUND_ID = new_id()

CASES: list[tuple[str, Callable[[TestClient], Response], int, str]] = [
    ("empty file", predict_file(b""), 400, "The upload is empty"),
    ("truncated png", predict_file(TRUNCATED_PNG), 400, "not a readable image"),
    ("truncated jpeg", predict_file(TRUNCATED_JPEG, "t.jpg", "image/jpeg"), 400, "not a readable image"),
    ("random bytes", predict_file(bytes(range(256)) * 8), 415, "not a supported image"),
    ("text named .jpg", predict_file(b"hello world", "cat.jpg", "image/jpeg"), 415, "checked, not its name"),
    ("html page", predict_file(b"<!doctype html><html></html>", "p.png"), 415, "not a supported image"),
    (
        "svg",
        predict_file(b'<svg xmlns="http://www.w3.org/2000/svg"/>', "a.svg", "image/svg+xml"),
        415,
        "image",
    ),
    ("pdf", predict_file(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "doc.pdf", "application/pdf"), 415, "image"),
    ("zip archive", predict_file(b"PK\x03\x04" + bytes(100), "a.zip"), 415, "image"),
    ("declared bomb 30000x30000", predict_file(png_header_only(30000, 30000)), 413, "decompression-bomb"),
    (
        "over pixel limit 2500x2000",
        predict_file(png_header_only(2500, 2000)),
        413,
        "exceeds the limit of 4,000,000",
    ),
    ("file over 2 MB", predict_file(GOOD + bytes(2 * MB)), 413, "exceeds the limit"),
    (
        "declared content-length 1 GB",
        raw("POST", "/v1/predict", b"x", {"Content-Length": str(1 << 30)}),
        413,
        "exceeds",
    ),
    ("chunked stream over limit", chunked_upload(3 * MB), 413, "exceeds the limit"),
    (
        "missing file field",
        lambda c: c.post("/v1/predict", data={"format": "ply"}),
        422,
        "file: Field required",
    ),
    ("file sent as text field", lambda c: c.post("/v1/predict", data={"file": "abc"}), 422, "file"),
    ("unknown format", predict_file(GOOD, format="obj"), 422, "Unknown output format 'obj'"),
    ("negative focal_px", predict_file(GOOD, focal_px="-5"), 422, "focal_px must be greater than 0"),
    ("nan focal_px", predict_file(GOOD, focal_px="nan"), 422, "finite"),
    ("text focal_mm", predict_file(GOOD, focal_mm="wide"), 422, "focal_mm"),
    ("both focal overrides", predict_file(GOOD, focal_px="1000", focal_mm="26"), 422, "not both"),
    ("huge focal_mm", predict_file(GOOD, focal_mm="1e9"), 422, "between 1 and 5000 mm"),
    ("json body to predict", lambda c: c.post("/v1/predict", json={"file": "x"}), 422, "file"),
    (
        "multipart without boundary",
        raw("POST", "/v1/predict", b"--x\r\n", {"Content-Type": "multipart/form-data"}),
        400,
        "multipart",
    ),
    (
        "garbage multipart",
        raw("POST", "/v1/predict", b"\x00\xff" * 50, {"Content-Type": "multipart/form-data; boundary=b"}),
        400,
        "Invalid multipart data",
    ),
    (
        "too many form fields",
        raw("POST", "/v1/predict", *multipart([("f", None, b"x")] * 1100)),
        400,
        "Too many fields",
    ),
    ("path traversal in files", lambda c: c.get("/files/..%2F..%2Fetc/passwd"), 404, "Not Found"),
    (
        "dot-dot name",
        lambda c: c.get(f"/files/{NOT_FOUND_ID}/..%2F..%2Fgateway.sqlite3"),
        404,
        "Not Found",
    ),
    ("short task id", lambda c: c.get("/files/abcd1234/output.ply"), 404, "No such file"),
    ("unknown task id", lambda c: c.get(f"/files/{NOT_FOUND_ID}/output.ply"), 404, "No such file"),
    ("hidden file name", lambda c: c.get(f"/files/{NOT_FOUND_ID}/.output.ply.tmp"), 404, "No such file"),
    ("sqlite via files", lambda c: c.get("/files/gateway.sqlite3/x"), 404, "No such file"),
    ("bad job id", lambda c: c.get("/v1/jobs/not-an-id"), 404, "No such job"),
    ("unknown job id", lambda c: c.get(f"/v1/jobs/{NOT_FOUND_ID}"), 404, "No such job"),
    ("overlong job id", lambda c: c.get("/v1/jobs/" + "a" * 500), 422, "job_id"),
    ("cancel unknown job", lambda c: c.delete(f"/v1/jobs/{NOT_FOUND_ID}"), 404, "No such job"),
    ("archive unknown job", lambda c: c.get(f"/v1/jobs/{NOT_FOUND_ID}/archive"), 404, "No such job"),
    ("events unknown job", lambda c: c.get(f"/v1/jobs/{NOT_FOUND_ID}/events"), 404, "No such job"),
    ("job with no files", lambda c: c.post("/v1/jobs", data={"format": "ply"}), 422, "files: Field required"),
    (
        "job with 5 files",
        lambda c: c.post("/v1/jobs", files=[("files", (f"{i}.png", GOOD)) for i in range(5)]),
        413,
        "At most 4 files",
    ),
    (
        "job with one bad file",
        lambda c: c.post("/v1/jobs", files=[("files", ("ok.png", GOOD)), ("files", ("bad.png", b"nope"))]),
        415,
        "bad.png: ",
    ),
    (
        "job with bad format",
        lambda c: c.post("/v1/jobs", files=[("files", ("a.png", GOOD))], data={"format": "ply,gltf"}),
        422,
        "'gltf'",
    ),
    (
        "job over total bytes",
        lambda c: c.post(
            "/v1/jobs",
            files=[("files", (f"{i}.png", GOOD + bytes(int(1.9 * MB)))) for i in range(4)],
        ),
        413,
        "exceeds the limit of 6,553,600",
    ),
    (
        "webhook to private ip",
        lambda c: c.post("/v1/webhooks", json={"event_type": "task_completed", "url": "http://10.0.0.1/h"}),
        422,
        "non-public address",
    ),
    (
        "webhook to metadata ip",
        lambda c: c.post(
            "/v1/webhooks", json={"event_type": "task_failed", "url": "http://169.254.169.254/"}
        ),
        422,
        "non-public",
    ),
    (
        "webhook to loopback",
        lambda c: c.post("/v1/webhooks", json={"event_type": "task_failed", "url": "http://127.0.0.1:22/"}),
        422,
        "non-public",
    ),
    (
        "webhook file url",
        lambda c: c.post("/v1/webhooks", json={"event_type": "task_failed", "url": "file:///etc/passwd"}),
        422,
        "url",
    ),
    (
        "webhook unknown event",
        lambda c: c.post("/v1/webhooks", json={"event_type": "rm_rf", "url": "https://example.com/"}),
        422,
        "event_type",
    ),
    (
        "webhook extra field",
        lambda c: c.post(
            "/v1/webhooks", json={"event_type": "task_failed", "url": "https://example.com/", "x": 1}
        ),
        422,
        "Extra inputs",
    ),
    (
        "webhook invalid json",
        raw("POST", "/v1/webhooks", b"{not json", {"Content-Type": "application/json"}),
        422,
        "JSON",
    ),
    (
        "webhook body over 64 KB",
        raw("POST", "/v1/webhooks", b"{" + b" " * 70000 + b"}", {"Content-Type": "application/json"}),
        413,
        "65,536",
    ),
    ("delete unknown event hook", lambda c: c.delete("/v1/webhooks/nope"), 422, "event_type"),
    (
        "delete unregistered hook",
        lambda c: c.delete("/v1/webhooks/task_failed"),
        404,
        "No webhook registered",
    ),
    ("wrong method", lambda c: c.put("/v1/predict"), 405, "Method Not Allowed"),
    ("unknown route", lambda c: c.get("/v2/predict"), 404, "Not Found"),
    (
        "archive of unknown format file",
        lambda c: c.get(f"/files/{NOT_FOUND_ID}/output.exe"),
        404,
        "No such file",
    ),
    # issue 13: addresses that wrap private IPv4 or are site-local; no DNS answer in errors
    (
        "webhook to 6to4 of loopback",
        lambda c: c.post(
            "/v1/webhooks", json={"event_type": "task_failed", "url": "http://[2002:7f00:1::1]/"}
        ),
        422,
        "non-public address (2002:7f00:1::1)",
    ),
    (
        "webhook to site-local v6",
        lambda c: c.post("/v1/webhooks", json={"event_type": "task_failed", "url": "http://[fec0::1]/"}),
        422,
        "non-public",
    ),
    (
        "webhook to nat64 of private v4",
        lambda c: c.post(
            "/v1/webhooks", json={"event_type": "task_failed", "url": "http://[64:ff9b::a00:1]/"}
        ),
        422,
        "non-public",
    ),
    (
        "webhook name answer not revealed",
        lambda c: c.post("/v1/webhooks", json={"event_type": "task_failed", "url": "http://localhost:9/"}),
        422,
        "resolves to a non-public address;",
    ),
]

AUTH_CASES: list[tuple[str, Callable[[TestClient], Response], int, str]] = [
    ("no credentials", predict_file(GOOD), 401, "Authentication required"),
    (
        "wrong api key",
        lambda c: c.post("/v1/predict", files={"file": ("a.png", GOOD)}, headers={"X-API-Key": "bad"}),
        401,
        "Invalid API key",
    ),
    (
        "empty bearer",
        lambda c: c.post(
            "/v1/predict", files={"file": ("a.png", GOOD)}, headers={"Authorization": "Bearer "}
        ),
        401,
        "Bearer",
    ),
    (
        "garbage jwt",
        lambda c: c.get("/v1/jobs/" + NOT_FOUND_ID, headers={"Authorization": "Bearer a.b.c"}),
        401,
        "token is invalid",
    ),
    (
        "jwt without exp",
        lambda c: c.get(
            "/v1/cache",
            headers={
                "Authorization": "Bearer "
                + jwt.encode({"sub": "x", "scope": "admin"}, "a-secret-that-is-long-enough-for-hs256!!")
            },
        ),
        401,
        "token is invalid",
    ),
    (
        "predict key on admin route",
        lambda c: c.post("/v1/cache/clear", headers={"X-API-Key": "good-key"}),
        403,
        "'admin' scope",
    ),
    ("webhooks without credentials", lambda c: c.get("/v1/webhooks"), 401, "Authentication required"),
    (
        "jobs without credentials",
        lambda c: c.post("/v1/jobs", files=[("files", ("a.png", GOOD))]),
        401,
        "Authentication required",
    ),
    # issue 13: refused from the headers alone, before the declared body; JWT rules
    (
        "no credentials, 1 GB declared",
        raw("POST", "/v1/predict", b"x", {"Content-Length": str(1 << 30)}),
        401,
        "Authentication required",
    ),
    (
        "wrong key, 1 GB declared job",
        raw("POST", "/v1/jobs", b"x", {"Content-Length": str(1 << 30), "X-API-Key": "bad"}),
        401,
        "Invalid API key",
    ),
    (
        "jwt living a year",
        lambda c: c.get(
            "/v1/jobs/" + NOT_FOUND_ID,
            headers={
                "Authorization": "Bearer "
                + jwt.encode(
                    {"sub": "x", "scope": "predict", "exp": int(time.time()) + 365 * 86400},
                    "a-secret-that-is-long-enough-for-hs256!!",
                )
            },
        ),
        401,
        "lives longer than the maximum",
    ),
    (
        "jwt for another audience",
        lambda c: c.get(
            "/v1/jobs/" + NOT_FOUND_ID,
            headers={
                "Authorization": "Bearer "
                + jwt.encode(
                    {"sub": "x", "scope": "predict", "aud": "billing", "exp": int(time.time()) + 60},
                    "a-secret-that-is-long-enough-for-hs256!!",
                )
            },
        ),
        401,
        "another audience",
    ),
]


def _check(response: Response, status: int, fragment: str) -> None:
    assert response.status_code < 500 or status == 503, response.text
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "code", "message", "status_code", "path", "timestamp"}
    assert re.fullmatch(r"[a-z][a-z_]+", body["code"]), body
    assert body["status_code"] == status
    assert fragment.lower() in body["message"].lower(), body["message"]


@pytest.mark.parametrize(("name", "send", "status", "fragment"), CASES, ids=[c[0] for c in CASES])
def test_hostile_input(hostile: TestClient, name: str, send, status: int, fragment: str) -> None:
    _check(send(hostile), status, fragment)


@pytest.mark.parametrize(("name", "send", "status", "fragment"), AUTH_CASES, ids=[c[0] for c in AUTH_CASES])
def test_hostile_auth(secured: TestClient, name: str, send, status: int, fragment: str) -> None:
    _check(send(secured), status, fragment)


def test_real_png_with_lying_name_and_type_is_accepted(hostile: TestClient) -> None:
    response = hostile.post("/v1/predict", files={"file": ("notes.txt", GOOD, "text/plain")})
    assert response.status_code == 200
    assert response.json()["url"].endswith("/output.ply")


def test_traversal_in_job_filenames_is_neutralised(hostile: TestClient) -> None:
    response = hostile.post("/v1/jobs", files=[("files", ("../../../etc/evil.png", GOOD))])
    assert response.status_code == 202
    status_url = response.json()["status_url"]
    deadline = time.monotonic() + 10
    while (job := hostile.get(status_url).json())["state"] != "completed" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert job["files"][0]["filename"] == "../../../etc/evil.png"  # reported as given
    assert job["files"][0]["downloads"]["ply"].endswith("/00_evil.ply")  # stored under a safe name


def test_request_id_header_is_sanitised(hostile: TestClient) -> None:
    echoed = hostile.get("/v1/health", headers={"X-Request-ID": "abc-123"})
    assert echoed.headers["x-request-id"] == "abc-123"
    replaced = hostile.get("/v1/health", headers={"X-Request-ID": "evil\tvalue" + "x" * 300})
    assert replaced.headers["x-request-id"] != "evil\tvalue" + "x" * 300
    assert len(replaced.headers["x-request-id"]) == 32


def test_overloaded_backend_answers_429_with_retry_after(make_settings) -> None:
    import threading

    backend = FakeBackend(delay_s=1.0, max_queue=0)
    app = create_app(make_settings(), backend=backend)
    with TestClient(app, raise_server_exceptions=False) as client:
        results: list[Response] = []
        first = threading.Thread(
            target=lambda: results.append(client.post("/v1/predict", files={"file": ("a.png", GOOD)}))
        )
        first.start()
        wait_for(lambda: backend.admission.in_flight == 1)
        busy = client.post("/v1/predict", files={"file": ("b.png", png_bytes(9, 9))})
        first.join()
    _check(busy, 429, "The server is busy")
    assert busy.headers["retry-after"] == "3"
    assert results[0].status_code == 200


def test_backend_down_is_503_then_recovers(make_settings) -> None:
    backend = FakeBackend()
    with TestClient(create_app(make_settings(), backend=backend), raise_server_exceptions=False) as client:
        backend.is_ready = False
        down = client.post("/v1/predict", files={"file": ("a.png", GOOD)})
        _check(down, 503, "fake backend is down")
        assert down.headers["retry-after"] == "5"
        _check(client.get("/v1/ready"), 503, "not ready")
        assert client.get("/v1/health").json()["status"] == "degraded"
        backend.is_ready = True
        assert client.post("/v1/predict", files={"file": ("a.png", GOOD)}).status_code == 200
        assert client.get("/v1/health").json()["status"] == "healthy"


def test_archive_of_a_running_job_is_409(make_settings) -> None:
    backend = FakeBackend(delay_s=0.5)
    with TestClient(create_app(make_settings(), backend=backend), raise_server_exceptions=False) as client:
        job = client.post("/v1/jobs", files=[("files", ("a.png", GOOD))]).json()
        _check(client.get(job["status_url"] + "/archive"), 409, "has not finished")


class CountingBody:
    """A 3 MB chunked body that counts how many chunks the server pulled."""

    def __init__(self) -> None:
        self.pulled = 0
        self.body, self.headers = multipart([("file", "big.png", GOOD + bytes(3 * MB))])

    def __iter__(self) -> Iterator[bytes]:
        for start in range(0, len(self.body), 64 * 1024):
            self.pulled += 1
            yield self.body[start : start + 64 * 1024]


@pytest.mark.parametrize(
    ("path", "headers", "status", "fragment"),
    [
        ("/v1/predict", {}, 401, "Authentication required"),
        ("/v1/predict", {"X-API-Key": "bad"}, 401, "Invalid API key"),
        ("/v1/jobs", {"Authorization": "Bearer a.b.c"}, 401, "token is invalid"),
        ("/v1/webhooks", {"X-API-Key": "good-key"}, 403, "'admin' scope"),
    ],
)
def test_refusals_read_no_body_byte(
    secured: TestClient, path: str, headers, status: int, fragment: str
) -> None:
    body = CountingBody()
    response = secured.post(path, content=iter(body), headers={**body.headers, **headers})
    _check(response, status, fragment)
    assert body.pulled == 0, f"{body.pulled} chunks of the body were read before the refusal"
    assert response.headers["connection"] == "close"


def test_rate_limited_upload_reads_no_body_byte(make_settings) -> None:
    keys = [{"name": "u", "sha256": hash_key("k"), "scopes": ["predict"], "rate_per_minute": 1}]
    settings = make_settings(auth_enabled=True, api_keys=keys, rate_limit_burst=1)
    with TestClient(create_app(settings, backend=FakeBackend()), raise_server_exceptions=False) as client:
        assert (
            client.post(
                "/v1/predict", files={"file": ("a.png", GOOD)}, headers={"X-API-Key": "k"}
            ).status_code
            == 200
        )
        body = CountingBody()
        limited = client.post("/v1/predict", content=iter(body), headers={**body.headers, "X-API-Key": "k"})
    _check(limited, 429, "Rate limit of 1 requests per minute exceeded")
    assert body.pulled == 0


def test_cache_hit_flood_meets_admission(make_settings) -> None:
    """Repeated tiny uploads of one photo are hits; while the backend is full they get 429."""
    import threading

    backend = FakeBackend(delay_s=1.0, max_queue=0)
    with TestClient(create_app(make_settings(), backend=backend), raise_server_exceptions=False) as client:
        assert client.post("/v1/predict", files={"file": ("a.png", GOOD)}).status_code == 200
        busy = threading.Thread(
            target=lambda: client.post("/v1/predict", files={"file": ("b.png", png_bytes(7, 7))})
        )
        busy.start()
        wait_for(lambda: backend.admission.in_flight == 1)
        flood = [client.post("/v1/predict", files={"file": ("a.png", GOOD)}) for _ in range(5)]
        busy.join()
    for response in flood:
        _check(response, 429, "The server is busy")


@pytest.mark.parametrize("kind", ["16-bit png", "float tiff"])
def test_wide_sample_images_are_served(hostile: TestClient, kind: str) -> None:
    import io

    import numpy as np
    from PIL import Image

    buffer = io.BytesIO()
    if kind == "16-bit png":
        Image.fromarray(np.full((40, 50), 51400, dtype=np.uint16)).save(buffer, format="PNG")
    else:
        plane = np.full((40, 50), 0.5, dtype=np.float32)
        plane[0, 0] = np.nan
        Image.fromarray(plane, mode="F").save(buffer, format="TIFF")
    response = hostile.post("/v1/predict", files={"file": ("wide", buffer.getvalue())})
    assert response.status_code == 200, response.text

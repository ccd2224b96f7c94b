"""Unit tests: ids and download paths, the error table, cache keys and bounds, admission."""

from __future__ import annotations

import asyncio
import json
import re

import pytest

from gateway.backends.base import Admission
from gateway.errors import (
    BackendUnavailable,
    Conflict,
    Forbidden,
    NotFound,
    Overloaded,
    PayloadTooLarge,
    RateLimited,
    Unauthorized,
    UnsupportedMediaType,
    error_body,
    error_response,
    status_for,
)
from gateway.ids import new_id, safe_stem
from gateway.service.cache import CachedScene, MemoryCache, ResultCache, scene_key
from gateway.service.metrics import Metrics
from mlsharp.errors import CheckpointError, ImageTooLargeError, InvalidImageError, InvalidParameterError
from tests.gateway.support import png_bytes


def test_ids_are_long_random_and_urlsafe() -> None:
    ids = {new_id() for _ in range(1000)}
    assert len(ids) == 1000
    for value in ids:
        assert re.fullmatch(r"[A-Za-z0-9_-]{32}", value)
    assert 32 * 6 >= 128  # 32 base64 characters carry 192 bits


def test_downloads_cannot_escape(client) -> None:
    """Only names a task references are served: never its inputs, paths or other tasks' files."""
    task = client.post("/v1/predict", files={"file": ("a.png", png_bytes())}).json()["task_id"]
    job = client.post("/v1/jobs", files=[("files", ("b.png", png_bytes(9, 9)))]).json()["job_id"]
    assert client.get(f"/files/{task}/output.ply").status_code == 200
    for task_id, name in [
        (task, "..%2Foutside.txt"),
        (task, ".."),
        (task, "inputs"),
        (job, "inputs%2F0.bin"),
        (job, "0.bin"),
        (task, ".hidden"),
        (task, "missing.ply"),
        ("..", "outside.txt"),
        ("abc", "output.ply"),
        (new_id(), "output.ply"),
    ]:
        assert client.get(f"/files/{task_id}/{name}").status_code == 404, (task_id, name)


@pytest.mark.parametrize(
    ("filename", "stem"),
    [
        ("photo.jpg", "photo"),
        ("../../etc/passwd", "passwd"),
        ("C:\\x\\my pic.HEIC", "my_pic"),
        ("", "image"),
        (None, "image"),
        ("....", "image"),
    ],
)
def test_safe_stem(filename, stem: str) -> None:
    assert safe_stem(filename) == stem


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (InvalidImageError("x"), 400),
        (ImageTooLargeError("x"), 413),
        (InvalidParameterError("x"), 422),
        (CheckpointError("x"), 503),
        (Unauthorized("x"), 401),
        (Forbidden("x"), 403),
        (NotFound("x"), 404),
        (Conflict("x"), 409),
        (PayloadTooLarge("x"), 413),
        (UnsupportedMediaType("x"), 415),
        (RateLimited("x", retry_after_s=2), 429),
        (Overloaded("x", retry_after_s=2), 429),
        (BackendUnavailable("x"), 503),
        (RuntimeError("boom"), 500),
    ],
)
def test_status_table(error: Exception, status: int) -> None:
    assert status_for(error) == status


def test_error_body_shape() -> None:
    body = error_body(413, "too big", "/v1/predict")
    assert set(body) == {"error", "code", "message", "status_code", "path", "timestamp"}
    assert (body["error"], body["status_code"], body["path"]) == ("Payload Too Large", 413, "/v1/predict")
    assert body["code"] == "payload_too_large"


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (InvalidImageError("x"), "invalid_image"),
        (ImageTooLargeError("x"), "image_too_large"),
        (InvalidParameterError("x"), "invalid_parameter"),
        (Overloaded("x", retry_after_s=1), "overloaded"),
        (RateLimited("x", retry_after_s=1), "rate_limited"),
        (BackendUnavailable("x"), "backend_unavailable"),
        (RuntimeError("secret detail"), "internal_error"),
    ],
)
def test_error_responses_carry_the_code(error: Exception, code: str) -> None:
    body = json.loads(error_response(error, "/v1/predict").body)
    assert body["code"] == code
    assert "secret detail" not in body["message"]
    assert Overloaded("busy", retry_after_s=4.2).headers == {"Retry-After": "5"}


def test_scene_key_covers_every_input_but_the_format() -> None:
    base = scene_key("a" * 64, None, None, "model-1")
    variants = [
        scene_key("b" * 64, None, None, "model-1"),
        scene_key("a" * 64, 1000.0, None, "model-1"),
        scene_key("a" * 64, None, 1000.0, "model-1"),
        scene_key("a" * 64, None, None, "model-2"),
    ]
    assert len({base, *variants}) == 5
    assert base == scene_key("a" * 64, None, None, "model-1")
    assert re.fullmatch(r"[0-9a-f]{64}", base)
    with pytest.raises(ValueError, match="no model id"):
        scene_key("a" * 64, None, None, "")  # never an invented id in a key


def test_memory_cache_is_bounded_in_bytes_and_entries() -> None:
    async def scenario() -> None:
        pad = "x" * 290
        cache = MemoryCache(max_bytes=1000, max_entries=3)
        for i in range(5):
            await cache.set(f"k{i}", CachedScene({"i": i, "p": pad}))
        assert cache.bytes <= 1000
        one = len(f'{{"i": 0, "p": "{pad}"}}')
        assert (await cache.size(), cache.bytes) == (3, 3 * one)
        assert await cache.get("k0") is None and await cache.get("k1") is None
        hit = await cache.get("k4")
        assert hit is not None and hit.metadata == {"i": 4, "p": pad}
        await cache.set("huge", CachedScene({"p": "x" * 5000}))
        assert await cache.get("huge") is None  # larger than the whole cache: skipped
        await cache.get("k2")  # k2 becomes most recent, so k3 is evicted next
        await cache.set("k5", CachedScene({"p": pad}))
        assert await cache.get("k2") is not None and await cache.get("k3") is None
        assert await cache.clear() == 3 and cache.bytes == 0

    asyncio.run(scenario())


class _Broken:
    kind = "redis"

    async def get(self, key):
        raise ConnectionError("redis down")

    async def set(self, key, value):
        raise ConnectionError("redis down")

    async def clear(self):
        raise ConnectionError("redis down")

    async def size(self):
        raise ConnectionError("redis down")

    async def close(self):
        pass


def test_store_failures_are_misses_with_a_metric(caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics("t", "fake", "m")
    cache = ResultCache(_Broken(), metrics, max_size=10)

    async def scenario() -> dict:
        assert await cache.get("k") is None
        await cache.set("k", CachedScene({}))
        assert await cache.clear() == 0
        return await cache.stats()

    stats = asyncio.run(scenario())
    assert (stats["misses"], stats["errors"], stats["size"]) == (1, 4, None)
    assert metrics.registry.get_sample_value("cache_redis_errors_total") == 4.0
    assert "cache read failed, serving without cache: redis down" in caplog.text


def test_admission_refuses_when_slots_and_queue_are_full() -> None:
    async def scenario() -> list[str]:
        admission = Admission(max_in_flight=1, max_queue=1, retry_after_s=7)
        release = asyncio.Event()
        outcomes: list[str] = []

        async def request(wait: bool = False) -> None:
            try:
                async with admission.slot(wait=wait):
                    await release.wait()
                outcomes.append("ok")
            except Overloaded as error:
                outcomes.append(f"429 retry {error.headers['Retry-After']}")

        tasks = [asyncio.create_task(request()) for _ in range(2)]
        await asyncio.sleep(0.01)
        assert admission.load() == {"in_flight": 1, "waiting": 1, "max_in_flight": 1, "max_queue": 1}
        await request()  # third: refused at once
        jobs = asyncio.create_task(request(wait=True))  # jobs wait regardless of the queue bound
        await asyncio.sleep(0.01)
        release.set()
        await asyncio.gather(*tasks, jobs)
        return outcomes

    assert asyncio.run(scenario()) == ["429 retry 7", "ok", "ok", "ok"]


def test_output_names_never_collide_between_formats() -> None:
    from gateway.formats import known_formats, output_name

    names = [output_name(fmt, stem="00_cat") for fmt in known_formats()]
    assert len(set(names)) == len(names)
    assert output_name("ply") == "output.ply"
    assert output_name("ply-clean") == "output.ply-clean.ply"
    assert output_name("spz", random_weights=True) == "output.RANDOM-WEIGHTS.spz"


def test_storage_outages_are_503_and_bugs_stay_500() -> None:
    from botocore.exceptions import ClientError, EndpointConnectionError

    from gateway.errors import status_for

    def client_error(status: int) -> ClientError:
        body = {"Error": {"Code": "X", "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}
        return ClientError(body, "PutObject")  # type: ignore[arg-type]

    assert status_for(EndpointConnectionError(endpoint_url="http://s3")) == 503
    assert status_for(client_error(500)) == 503 and status_for(client_error(503)) == 503
    assert status_for(client_error(403)) == 500  # our credentials are wrong: a bug, not an outage
    assert status_for(ConnectionRefusedError()) == 503 and status_for(OSError(28, "No space")) == 503
    assert status_for(KeyError("x")) == 500

"""One contract for both storage implementations: the embedded one (local files, SQLite) and the
shared one (a real S3 server, SeaweedFS, with a real PostgreSQL; no mocks).

The same tests run on each: the store's own operations, downloads and archives through the app,
references instead of copies on a cache hit, expiry by TTL, the total-size bound's eviction
order and its protection of work in progress, and (S3) presigned downloads.
"""

from __future__ import annotations

import asyncio
import io
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from gateway.api.files import media_type_for
from gateway.app import create_app
from gateway.service.blobs import BlobNotFound, BlobStore, LocalBlobStore
from gateway.service.container import Services, build_blob_store
from gateway.settings import Settings
from tests.gateway.support import FakeBackend, png_bytes, wait_for
from tests.servers.seaweed import ACCESS_KEY_ID, SECRET_ACCESS_KEY, SeaweedServer

KINDS = ("local", "s3")
MiB = 1024 * 1024


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store_settings(kind: str, request: pytest.FixtureRequest) -> dict[str, Any]:
    """Settings that select the store under test (a fresh bucket for each S3 test)."""
    if kind == "local":
        return {}
    server: SeaweedServer = request.getfixturevalue("seaweed")
    return {
        "database_url": request.getfixturevalue("postgres_url"),
        "webhook_secret_key": "w" * 48,
        "object_store_url": f"s3://mlsharp-{uuid.uuid4().hex[:12]}/gateway/results",
        "s3_endpoint_url": server.endpoint_url,
        "s3_access_key_id": ACCESS_KEY_ID,
        "s3_secret_access_key": SECRET_ACCESS_KEY,
        "s3_create_bucket": True,
    }


@pytest.fixture
def app_for(
    make_settings: Callable[..., Settings], store_settings: dict[str, Any]
) -> Iterator[Callable[..., TestClient]]:
    """Start a gateway on the store under test; keyword arguments override settings."""
    clients: list[TestClient] = []

    def start(backend: FakeBackend | None = None, **overrides: Any) -> TestClient:
        settings = make_settings(**{"sweep_interval_s": 3600.0, **store_settings, **overrides})
        client = TestClient(
            create_app(settings, backend=backend or FakeBackend()), raise_server_exceptions=False
        )
        client.__enter__()
        clients.append(client)
        return client

    yield start
    for client in clients:
        client.__exit__(None, None, None)


def services_of(client: TestClient) -> Services:
    return client.app.state.services


def run(client: TestClient, fn: Callable[..., Any], *args: Any) -> Any:
    """Await ``fn(*args)`` on the app's own event loop (its S3 client and database live there)."""
    return client.portal.call(fn, *args)


def rows(client: TestClient, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Through the app's own database (SQLite or PostgreSQL)."""
    found = run(client, services_of(client).db.fetch_all, sql, params)
    return [tuple(row.values()) for row in found]


def stored_sizes(client: TestClient) -> dict[str, int]:
    """Every blob really in the store (a listing, unlike the service itself)."""
    services = services_of(client)
    if isinstance(services.blobs, LocalBlobStore):
        root = services.blobs.root
        skip = ("gateway.sqlite3", "webhook-secret.key")
        return {
            str(p.relative_to(root)): p.stat().st_size
            for p in root.rglob("*")
            if p.is_file() and not p.name.startswith(skip)
        }

    async def listing() -> dict[str, int]:
        blobs: Any = services.blobs
        pages = blobs.client.get_paginator("list_objects_v2").paginate(
            Bucket=blobs.bucket, Prefix=blobs.prefix
        )
        return {
            item["Key"][len(blobs.prefix) :]: item["Size"]
            async for page in pages
            for item in page.get("Contents", [])
        }

    return run(client, listing)


def predict(client: TestClient, image: bytes, **data: Any) -> dict[str, Any]:
    response = client.post("/v1/predict", files={"file": ("a.png", image)}, data=data)
    assert response.status_code == 200, response.text
    return response.json()


def job(client: TestClient, *images: bytes) -> dict[str, Any]:
    files = [("files", (f"p{i}.png", image)) for i, image in enumerate(images)]
    accepted = client.post("/v1/jobs", files=files).json()
    return wait_for(lambda: (j := client.get(accepted["status_url"]).json())["state"] == "completed" and j)


# -- the store itself ------------------------------------------------------------------------


def test_put_read_stream_size_and_delete(
    make_settings, store_settings: dict[str, Any], tmp_path: Path
) -> None:
    async def scenario() -> None:
        blobs: BlobStore = build_blob_store(make_settings(**store_settings))
        await blobs.start()
        try:
            data = bytes(range(256)) * (10 * 1024)  # 2.5 MiB: several chunks
            assert await blobs.put("t1/a.bin", data) == len(data)
            assert await blobs.read("t1/a.bin") == data and await blobs.size("t1/a.bin") == len(data)
            stream = await blobs.open("t1/a.bin")
            chunks = [chunk async for chunk in stream.chunks]
            assert stream.size_bytes == len(data) and len(chunks) >= 2 and b"".join(chunks) == data
            big = tmp_path / "big.bin"  # over one part: a multipart upload on S3
            big.write_bytes(b"\x01\x02\x03" * (3 * MiB) + b"end")
            expected = big.read_bytes()
            assert await blobs.put("t1/sub/big.bin", big, move=True) == len(expected)
            assert not big.exists() and await blobs.read("t1/sub/big.bin") == expected
            await blobs.delete(["t1/a.bin", "t1/sub/big.bin", "t1/never-stored.bin"])
            assert await blobs.size("t1/a.bin") is None and await blobs.size("t1/sub/big.bin") is None
            with pytest.raises(BlobNotFound):
                await blobs.open("t1/a.bin")
            with pytest.raises(ValueError):
                await blobs.put("../escape", b"x")
        finally:
            await blobs.close()

    asyncio.run(scenario())


def test_presigned_urls_fetch_the_bytes(make_settings, store_settings: dict[str, Any], kind: str) -> None:
    async def scenario() -> str | None:
        blobs: BlobStore = build_blob_store(make_settings(**store_settings))
        await blobs.start()
        try:
            await blobs.put("t2/x.ply", b"ply bytes")
            return await blobs.presigned_url("t2/x.ply", 60, "x.ply", "application/octet-stream")
        finally:
            await blobs.close()

    url = asyncio.run(scenario())
    if kind == "local":
        assert url is None  # nothing but the gateway serves local files
        return
    assert url is not None
    response = httpx.get(url)
    assert response.status_code == 200 and response.content == b"ply bytes"
    assert response.headers["content-disposition"] == 'attachment; filename="x.ply"'
    assert httpx.get(url.replace("Signature=", "Signature=0")).status_code == 403  # really signed


# -- through the app -------------------------------------------------------------------------


def test_predict_then_download_streams_the_stored_bytes(app_for, kind: str) -> None:
    client = app_for()
    body = predict(client, png_bytes(30, 20))
    response = client.get(body["url"])
    assert response.status_code == 200
    ref = rows(client, "SELECT blob_key, size_bytes FROM file_refs WHERE task_id = ?", (body["task_id"],))
    keys = dict(ref)
    (ply_key,) = [k for k in keys if k.endswith("scene.ply")]
    assert response.content == run(client, services_of(client).blobs.read, ply_key)
    assert response.headers["content-length"] == str(keys[ply_key]) == str(len(response.content))
    assert response.headers["content-type"].split(";")[0] == media_type_for("output.ply")
    assert response.headers["content-disposition"] == 'attachment; filename="output.ply"'
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "private, max-age=3600"
    meta = client.get(body["metadata_url"])
    assert meta.status_code == 200 and meta.json()["model_id"] == "fake-model-1"
    assert stored_sizes(client)[ply_key] == keys[ply_key]  # really in the store
    # only referenced names are served: not a job's input, not a made-up name
    done = job(client, png_bytes(9, 9))
    assert client.get(f"/files/{done['job_id']}/inputs%2F0.bin").status_code == 404
    assert client.get(f"/files/{done['job_id']}/0.bin").status_code == 404
    assert client.get(f"/files/{body['task_id']}/missing.ply").status_code == 404


def test_presigned_mode_redirects_to_the_same_bytes(app_for, kind: str) -> None:
    client = app_for(download_mode="presigned")
    body = predict(client, png_bytes(31, 21))
    response = client.get(body["url"], follow_redirects=False)
    if kind == "local":
        assert response.status_code == 200  # no presigned URL for local files: proxied
        return
    assert response.status_code == 307
    (key,) = [
        k
        for (k,) in rows(client, "SELECT blob_key FROM file_refs WHERE task_id = ?", (body["task_id"],))
        if k.endswith(".ply")
    ]
    fetched = httpx.get(response.headers["location"])
    assert fetched.status_code == 200 and fetched.content == run(client, services_of(client).blobs.read, key)
    assert fetched.headers["content-disposition"] == 'attachment; filename="output.ply"'
    done = job(client, png_bytes(8, 8))
    archive = client.get(f"/v1/jobs/{done['job_id']}/archive", follow_redirects=False)
    assert archive.status_code == 307
    names = zipfile.ZipFile(io.BytesIO(httpx.get(archive.headers["location"]).content)).namelist()
    assert sorted(names) == ["00_p0.json", "00_p0.ply"]


def test_a_cache_hit_writes_no_scene_bytes(app_for) -> None:
    backend = FakeBackend()
    client = app_for(backend)
    image = png_bytes(25, 25)
    first = predict(client, image, format="spz")
    services = services_of(client)
    written, before = services.scenes.bytes_written, stored_sizes(client)
    second = predict(client, image, format="spz")
    done = job(client, image)  # the PLY was stored with the first inference: also a hit
    assert second["cached"] and backend.calls == 1 and services.scenes.bytes_written == written
    after = stored_sizes(client)
    new = set(after) - set(before)
    assert all(not key.startswith("scenes/") for key in new)  # only the job's own input
    assert new == {f"{done['job_id']}/inputs/0.bin"}
    refs = rows(
        client,
        "SELECT blob_key FROM file_refs WHERE (task_id = ? OR task_id = ?) AND name = 'output.spz'",
        (first["task_id"], second["task_id"]),
    )
    assert len(refs) == 2 and len(set(refs)) == 1
    assert client.get(first["url"]).content == client.get(second["url"]).content


def test_archive_is_stored_once_and_holds_every_file(app_for) -> None:
    client = app_for()
    done = job(client, png_bytes(10, 10), png_bytes(11, 11, color=(1, 2, 3)))
    archive = client.get(f"/v1/jobs/{done['job_id']}/archive")
    assert archive.status_code == 200 and archive.headers["content-type"] == "application/zip"
    assert (
        archive.headers["content-disposition"] == f'attachment; filename="mlsharp-{done["job_id"][:12]}.zip"'
    )
    members = zipfile.ZipFile(io.BytesIO(archive.content))
    assert sorted(members.namelist()) == ["00_p0.json", "00_p0.ply", "01_p1.json", "01_p1.ply"]
    for entry in done["files"]:
        url = entry["downloads"]["ply"]
        assert members.read(url.rsplit("/", 1)[1]) == client.get(url).content
    key = f"{done['job_id']}/results.zip"
    assert stored_sizes(client)[key] == len(archive.content)
    again = client.get(f"/v1/jobs/{done['job_id']}/archive")
    assert again.content == archive.content
    assert rows(
        client, "SELECT size_bytes FROM blobs WHERE owner_id = ? AND blob_key = ?", (done["job_id"], key)
    ) == [(len(archive.content),)]


def test_results_expire_after_the_ttl(app_for) -> None:
    client = app_for(results_ttl_s=0.5, sweep_interval_s=0.1)
    body = predict(client, png_bytes(12, 12))
    done = job(client, png_bytes(13, 13))
    assert client.get(f"/v1/jobs/{done['job_id']}/archive").status_code == 200
    wait_for(lambda: client.get(body["url"]).status_code == 404, timeout_s=5)
    wait_for(lambda: client.get(done["status_url"]).status_code == 404, timeout_s=5)
    owned = [key for key in stored_sizes(client) if not key.startswith("scenes/")]
    assert owned == []  # inputs and the archive are gone from the store
    for table in ("file_refs", "tasks", "jobs"):
        assert rows(client, f"SELECT COUNT(*) FROM {table}") == [(0,)]
    # the scenes stay (unreferenced) until their own cache_ttl_s
    assert rows(client, "SELECT COUNT(*) FROM blobs WHERE owner_id IS NOT NULL") == [(0,)]
    assert any(key.startswith("scenes/") for key in stored_sizes(client))


def test_size_bound_evicts_cache_then_oldest_finished_and_spares_work_in_progress(app_for) -> None:
    backend = FakeBackend()
    client = app_for(backend)
    services = services_of(client)
    a = predict(client, png_bytes(14, 14))
    b = predict(client, png_bytes(15, 15))
    c = job(client, png_bytes(16, 16))
    orphan = predict(client, png_bytes(17, 17))  # its task goes: an unreferenced scene remains
    orphan_keys = [
        k for (k,) in rows(client, "SELECT blob_key FROM file_refs WHERE task_id = ?", (orphan["task_id"],))
    ]
    run(client, services.store.expire, orphan["task_id"], "task")
    assert set(orphan_keys) <= set(stored_sizes(client))
    retention = services.retention
    # everything is fresh (used in the last IN_USE_S): nothing goes, even with a bound of 0
    retention.results_max_bytes = 0
    assert run(client, retention.sweep) == 0
    assert client.get(a["url"]).status_code == 200 and set(orphan_keys) <= set(stored_sizes(client))
    now = time.time()
    ages = [  # a finished first, then b, then c
        ("UPDATE tasks SET created_at = ? WHERE task_id = ?", (now - 300, a["task_id"])),
        ("UPDATE tasks SET created_at = ? WHERE task_id = ?", (now - 200, b["task_id"])),
        ("UPDATE jobs SET finished_at = ? WHERE job_id = ?", (now - 100, c["job_id"])),
    ]
    run(client, services.db.execute_many, ages)
    backend.delay_s = 30.0
    running = client.post("/v1/jobs", files=[("files", ("r.png", png_bytes(18, 18)))]).json()
    wait_for(lambda: client.get(running["status_url"]).json()["state"] == "running")
    total = run(client, retention.total_bytes)
    assert total == sum(stored_sizes(client).values())  # the database knows every stored byte

    later = now + 3600  # past IN_USE_S for all, before any TTL
    retention.results_max_bytes = total - 1  # 1: the unreferenced scene (only a cache) goes first
    assert run(client, retention.sweep, later) == 1
    assert not set(orphan_keys) & set(stored_sizes(client))
    assert all(client.get(x["url"]).status_code == 200 for x in (a, b))
    total = run(client, retention.total_bytes)
    retention.results_max_bytes = total - 1  # 2: then the oldest finished task, a
    run(client, retention.sweep, later)
    assert client.get(a["url"]).status_code == 404 and client.get(b["url"]).status_code == 200
    assert client.get(c["status_url"]).status_code == 200
    assert run(client, retention.total_bytes) < total
    retention.results_max_bytes = 0  # 3: everything that ended; the running job's input stays
    run(client, retention.sweep, later)
    assert client.get(b["url"]).status_code == 404 and client.get(c["status_url"]).status_code == 404
    assert set(stored_sizes(client)) == {f"{running['job_id']}/inputs/0.bin"}
    assert client.get(running["status_url"]).json()["state"] == "running"
    client.delete(running["status_url"])

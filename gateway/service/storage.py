"""Task and job files: owned blobs, references to scene files, zip archives and expiry.

Nothing is wiped at start-up; files go away only when the task that owns them expires (TTL) or
is evicted by the size bound (:mod:`gateway.service.retention`). A task's or job's downloadable
names map to blob keys through ``file_refs`` rows (a scene file is referenced, never copied);
the blobs a task owns itself (job inputs, its archive) are ``blobs`` rows with its id as
``owner_id``. Sizes live in the database, so expiry and the size bound never list the store.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
import time
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

from gateway.ids import is_valid_id
from gateway.service.blobs import BlobNotFound, BlobStore
from gateway.service.db import Database

log = logging.getLogger("gateway.storage")

ARCHIVE_NAME = "results.zip"
UPSERT_REF_SQL = (
    "INSERT INTO file_refs (task_id, name, blob_key, size_bytes, created_at) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (task_id, name) DO UPDATE SET blob_key = excluded.blob_key, "
    "size_bytes = excluded.size_bytes, created_at = excluded.created_at"
)
OWNED_SQL = (
    "INSERT INTO blobs (blob_key, size_bytes, owner_id, scene_key, created_at) VALUES (?, ?, ?, NULL, ?) "
    "ON CONFLICT (blob_key) DO UPDATE SET size_bytes = excluded.size_bytes"
)


class FileRef(NamedTuple):
    """A downloadable name of a task: the blob holding its bytes and their size."""

    blob_key: str
    size_bytes: int


class ResultStore:
    """Files of tasks and jobs, by id, in a :class:`BlobStore`."""

    def __init__(self, blobs: BlobStore, db: Database, ttl_s: float) -> None:
        self.blobs = blobs
        self.db = db
        self.ttl_s = ttl_s

    @staticmethod
    def key(task_id: str, name: str) -> str:
        """The blob key of a file a task owns (``<task id>/<name>``)."""
        if not is_valid_id(task_id):
            raise ValueError("invalid task id")
        return f"{task_id}/{name}"

    async def register_task(self, task_id: str, owner: str) -> None:
        now = time.time()
        await self.db.execute(
            "INSERT INTO tasks (task_id, owner, created_at, expires_at) VALUES (?, ?, ?, ?)",
            (task_id, owner, now, now + self.ttl_s),
        )

    async def write(self, task_id: str, files: dict[str, bytes]) -> None:
        """Store files the task owns (job inputs). The row first: a crash leaves a row whose
        missing blob expiry shrugs off, never a blob nobody would delete."""
        now = time.time()
        for name, data in files.items():
            key = self.key(task_id, name)
            await self.db.execute(OWNED_SQL, (key, len(data), task_id, now))
            await self.blobs.put(key, data)

    async def read(self, task_id: str, name: str) -> bytes:
        return await self.blobs.read(self.key(task_id, name))

    async def add_refs(self, task_id: str, refs: dict[str, tuple[str, int]]) -> None:
        """Make ``name`` of the task download ``blob key`` (name -> (blob key, size))."""
        now = time.time()
        await self.db.execute_many(
            [(UPSERT_REF_SQL, (task_id, name, key, size, now)) for name, (key, size) in refs.items()]
        )

    async def ref(self, task_id: str, name: str) -> FileRef | None:
        row = await self.db.fetch_one(
            "SELECT blob_key, size_bytes FROM file_refs WHERE task_id = ? AND name = ?", (task_id, name)
        )
        return FileRef(row["blob_key"], int(row["size_bytes"])) if row else None

    async def archive(self, task_id: str, members: Iterable[str], name: str = ARCHIVE_NAME) -> str:
        """Zip some of a task's files once (streamed blob by blob through a temporary file, never
        whole in memory), store it as a blob the task owns and references; returns its name."""
        if await self.ref(task_id, name) is not None:
            return name
        path = await self._build_zip(task_id, list(members))
        key = self.key(task_id, name)
        size = path.stat().st_size
        await self.db.execute(OWNED_SQL, (key, size, task_id, time.time()))
        await self.blobs.put(key, path, move=True)
        await self.add_refs(task_id, {name: (key, size)})
        return name

    async def _build_zip(self, task_id: str, members: list[str]) -> Path:
        fd, tmp = tempfile.mkstemp(prefix=".archive-", suffix=".tmp", dir=self.blobs.scratch_dir())
        path = Path(tmp)
        try:
            with os.fdopen(fd, "wb") as handle, zipfile.ZipFile(handle, "w", zipfile.ZIP_STORED) as archive:
                for member in members:
                    await self._add_member(archive, task_id, member)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return path

    async def _add_member(self, archive: zipfile.ZipFile, task_id: str, member: str) -> None:
        ref = await self.ref(task_id, member)
        if ref is None:
            return
        try:
            stream = await self.blobs.open(ref.blob_key)
        except BlobNotFound:
            return
        info = zipfile.ZipInfo(member, date_time=time.localtime()[:6])
        info.file_size = stream.size_bytes
        info.external_attr = 0o600 << 16
        with archive.open(info, "w") as out:
            async for chunk in stream.chunks:
                await asyncio.to_thread(out.write, chunk)

    async def _owned(self, task_id: str) -> list[str]:
        rows = await self.db.fetch_all("SELECT blob_key FROM blobs WHERE owner_id = ?", (task_id,))
        return [row["blob_key"] for row in rows]

    async def delete(self, task_id: str, extra: list[tuple[str, tuple[Any, ...]]] | None = None) -> None:
        """Remove a task's own blobs, then (in one transaction) their rows, its references and
        ``extra`` statements. Blobs first: a crash in between leaves rows a retry cleans up."""
        await self.blobs.delete(await self._owned(task_id))
        await self.db.execute_many(
            [
                ("DELETE FROM blobs WHERE owner_id = ?", (task_id,)),
                ("DELETE FROM file_refs WHERE task_id = ?", (task_id,)),
                *(extra or []),
            ]
        )

    async def expire(self, item_id: str, kind: str) -> None:
        """Delete an ended task (``kind`` "task") or job ("job"): files, references and rows."""
        if kind == "task":
            await self.delete(item_id, [("DELETE FROM tasks WHERE task_id = ?", (item_id,))])
        else:
            await self.delete(
                item_id,
                [
                    ("DELETE FROM job_files WHERE job_id = ?", (item_id,)),
                    ("DELETE FROM jobs WHERE job_id = ?", (item_id,)),
                ],
            )

    async def sweep(self, now: float | None = None) -> int:
        """Delete expired tasks and finished jobs (rows and files); returns how many."""
        now = time.time() if now is None else now
        expired = await self.db.fetch_all("SELECT task_id FROM tasks WHERE expires_at < ?", (now,))
        expired_jobs = await self.db.fetch_all(
            "SELECT job_id FROM jobs WHERE expires_at IS NOT NULL AND expires_at < ?", (now,)
        )
        for row in expired:
            await self.expire(row["task_id"], "task")
        for row in expired_jobs:
            await self.expire(row["job_id"], "job")
        if expired or expired_jobs:
            log.info("expired results removed", extra={"tasks": len(expired), "jobs": len(expired_jobs)})
        return len(expired) + len(expired_jobs)

    async def oldest_finished(self, before: float, limit: int = 50) -> list[dict[str, Any]]:
        """Ended tasks and jobs, oldest-finished first, with the bytes they own or reference
        (an upper bound of what evicting them frees: scene files may be shared)."""
        rows = await self.db.fetch_all(
            "SELECT task_id AS id, 'task' AS kind, created_at AS finished_at FROM tasks WHERE created_at < ? "
            "UNION ALL SELECT job_id AS id, 'job' AS kind, finished_at FROM jobs "
            "WHERE finished_at IS NOT NULL AND finished_at < ? AND state NOT IN ('queued', 'running') "
            "ORDER BY finished_at LIMIT ?",
            (before, before, limit),
        )
        for row in rows:
            size = await self.db.fetch_one(
                "SELECT (SELECT COALESCE(SUM(size_bytes), 0) FROM blobs WHERE owner_id = ?) + "
                "(SELECT COALESCE(SUM(r.size_bytes), 0) FROM file_refs r JOIN blobs b "
                "ON b.blob_key = r.blob_key WHERE r.task_id = ? AND b.owner_id IS NULL) AS n",
                (row["id"], row["id"]),
            )
            row["size_bytes"] = int(size["n"]) if size else 0
        return rows

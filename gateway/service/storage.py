"""Result files on disk: atomic writes, per-task folders, zip archives and TTL expiry.

Nothing is wiped at start-up (the seed ``rmtree``'d its workspace); files go away only when the
task that owns them expires. Every write is temp file + fsync + rename, so a crash never leaves
a half-written result under a final name; the folder is fsynced after the rename. Files are
0600 and folders 0700: results are private to the service.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
import time
import zipfile
from collections.abc import Iterable
from pathlib import Path

from gateway.ids import is_valid_id
from gateway.service.db import Database
from mlsharp.fileio import atomic_write, fsync_dir

log = logging.getLogger("gateway.storage")

#: results are read only by the gateway itself (the /files route), never by other local users
FILE_MODE = 0o600
FOLDER_MODE = 0o700


def make_private_dir(path: Path) -> None:
    """Create (or tighten) a folder to 0700; a mount point owned by someone else (a Kubernetes
    volume root owned by root with fsGroup) is left as the platform made it, with a warning."""
    path.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
    try:
        os.chmod(path, FOLDER_MODE)
    except PermissionError:
        log.warning("cannot make %s private (not its owner); its files are still 0600", path)


def _write_zip(target: Path, members: list[tuple[str, Path]]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle, zipfile.ZipFile(handle, "w", zipfile.ZIP_STORED) as archive:
            for arcname, source in members:
                archive.write(source, arcname)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)


class ResultStore:
    """Owns ``results_dir``: one folder per task or job id."""

    def __init__(self, root: Path, db: Database, ttl_s: float) -> None:
        self.root = root
        self.db = db
        self.ttl_s = ttl_s

    def folder(self, task_id: str) -> Path:
        if not is_valid_id(task_id):
            raise ValueError("invalid task id")
        return self.root / task_id

    async def register_task(self, task_id: str, owner: str) -> None:
        now = time.time()
        await self.db.execute(
            "INSERT INTO tasks (task_id, owner, created_at, expires_at) VALUES (?, ?, ?, ?)",
            (task_id, owner, now, now + self.ttl_s),
        )

    async def write(self, task_id: str, files: dict[str, bytes]) -> None:
        folder = self.folder(task_id)

        def _write_all() -> None:
            folder.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
            for name, data in files.items():
                target = folder / name
                target.parent.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
                atomic_write(target, data, mode=FILE_MODE)

        await asyncio.to_thread(_write_all)

    async def read(self, task_id: str, name: str) -> bytes:
        return await asyncio.to_thread((self.folder(task_id) / name).read_bytes)

    async def archive(self, task_id: str, members: Iterable[str], name: str = "results.zip") -> Path:
        """Zip some of a task's files into the task folder once; later calls reuse it."""
        folder = self.folder(task_id)
        target = folder / name
        if not target.exists():
            pairs = [(member, folder / member) for member in members if (folder / member).is_file()]
            await asyncio.to_thread(_write_zip, target, pairs)
        return target

    async def delete(self, task_id: str) -> None:
        await asyncio.to_thread(shutil.rmtree, self.folder(task_id), True)

    async def sweep(self, now: float | None = None) -> int:
        """Delete expired tasks and finished jobs (rows and files); returns how many."""
        now = time.time() if now is None else now
        expired = [
            row["task_id"]
            for row in await self.db.fetch_all("SELECT task_id FROM tasks WHERE expires_at < ?", (now,))
        ]
        expired_jobs = [
            row["job_id"]
            for row in await self.db.fetch_all(
                "SELECT job_id FROM jobs WHERE expires_at IS NOT NULL AND expires_at < ?", (now,)
            )
        ]
        for task_id in expired:
            await self.delete(task_id)
            await self.db.execute("DELETE FROM tasks WHERE task_id = ?", (task_id,))
        for job_id in expired_jobs:
            await self.delete(job_id)
            await self.db.execute_many(
                [
                    ("DELETE FROM job_files WHERE job_id = ?", (job_id,)),
                    ("DELETE FROM jobs WHERE job_id = ?", (job_id,)),
                ]
            )
        if expired or expired_jobs:
            log.info("expired results removed", extra={"tasks": len(expired), "jobs": len(expired_jobs)})
        return len(expired) + len(expired_jobs)

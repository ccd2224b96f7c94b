"""Content-addressed scene files: each scene is stored once, tasks reference it by a row.

Why: a scene is the same bytes whichever task asks for it. Its files live once in the blob store
under ``scenes/<scene key>/<file>`` (one ``blobs`` row each, with its size); a predict task or job
gets ``file_refs`` rows pointing at them (see :meth:`ResultStore.add_refs`), so a cache hit
writes no scene bytes, on local files and on S3 alike. A scene file no row references belongs to
no task; only such files expire, by last access (``cache_ttl_s``, kept in the ``scenes`` table)
and by size (least recently used first). Files of live tasks are never deleted here; they become
unreferenced when their last task expires.
"""

from __future__ import annotations

import json
import logging
import time

from gateway.formats import output_name
from gateway.service.blobs import BlobStore
from gateway.service.db import Database
from mlsharp.formats.metadata import SceneMetadata

log = logging.getLogger("gateway.scenes")

METADATA_FILE = "metadata.json"
#: a scene used this recently may be mid-write or about to be referenced by a task: never swept,
#: even over the size bound (a sweep once removed a scene between its write and the task's link:
#: a 500). put, claim and refs all refresh the scene's last access first.
IN_USE_S = 60.0

TOUCH_SQL = (
    "INSERT INTO scenes (scene_key, accessed_at) VALUES (?, ?) "
    "ON CONFLICT (scene_key) DO UPDATE SET accessed_at = excluded.accessed_at"
)
UNREFERENCED_SQL = (
    "SELECT b.blob_key, b.size_bytes, b.scene_key, s.accessed_at FROM blobs b "
    "LEFT JOIN scenes s ON s.scene_key = b.scene_key WHERE b.scene_key IS NOT NULL "
    "AND NOT EXISTS (SELECT 1 FROM file_refs r WHERE r.blob_key = b.blob_key)"
)
SCENE_BLOB_SQL = (
    "INSERT INTO blobs (blob_key, size_bytes, owner_id, scene_key, created_at) VALUES (?, ?, NULL, ?, ?) "
    "ON CONFLICT (blob_key) DO UPDATE SET size_bytes = excluded.size_bytes"
)
#: deletes the row only if nothing referenced the blob or used the scene since the sweep looked
DELETE_IDLE_SQL = (
    "DELETE FROM blobs WHERE blob_key = ? "
    "AND NOT EXISTS (SELECT 1 FROM file_refs r WHERE r.blob_key = ?) "
    "AND NOT EXISTS (SELECT 1 FROM scenes s WHERE s.scene_key = ? AND s.accessed_at > ?)"
)


def scene_file(fmt: str) -> str:
    """A format's file name inside a scene (``scene.ply``, ``scene.ply-clean.ply``, ...)."""
    return output_name(fmt, stem="scene")


def check_scene_key(key: str) -> str:
    if len(key) != 64 or any(c not in "0123456789abcdef" for c in key):
        raise ValueError("invalid scene key")
    return key


def blob_key(key: str, name: str) -> str:
    return f"scenes/{check_scene_key(key)}/{name}"


class SceneStore:
    """Scene files in the blob store, their sizes and last access in the database."""

    def __init__(self, blobs: BlobStore, db: Database) -> None:
        self.blobs = blobs
        self.db = db
        #: scene bytes written since start (tests and /v1/stats: a hit must not add to it)
        self.bytes_written = 0

    async def touch(self, key: str, now: float | None = None) -> None:
        await self.db.execute(TOUCH_SQL, (check_scene_key(key), time.time() if now is None else now))

    async def stored(self, key: str) -> dict[str, int]:
        """File name -> size of what is stored for a scene."""
        rows = await self.db.fetch_all(
            "SELECT blob_key, size_bytes FROM blobs WHERE scene_key = ?", (check_scene_key(key),)
        )
        return {row["blob_key"].rsplit("/", 1)[1]: int(row["size_bytes"]) for row in rows}

    async def has(self, key: str, fmt: str) -> bool:
        return scene_file(fmt) in await self.stored(key)

    async def claim(self, key: str) -> set[str] | None:
        """For a cache hit: mark the scene used, then the file names stored, or None when its PLY
        is not (or no longer) there; a PLY row without its blob is dropped so a put rewrites it.

        A PLY (and metadata) in the store that this database has no row for (written by a gateway
        with another database, or before rows existed) is adopted: a row is added."""
        await self.touch(key)
        stored = await self.stored(key)
        ply = scene_file("ply")
        for name in (ply, METADATA_FILE):
            size = await self.blobs.size(blob_key(key, name))
            if size is None and name in stored:
                log.warning("a stored scene lost %s; storing it again", name, extra={"scene": key[:12]})
                await self.db.execute("DELETE FROM blobs WHERE blob_key = ?", (blob_key(key, name),))
                del stored[name]
            elif size is not None and name not in stored:
                await self.db.execute(SCENE_BLOB_SQL, (blob_key(key, name), size, key, time.time()))
                stored[name] = size
        return set(stored) if ply in stored else None

    async def read(self, key: str, fmt: str) -> bytes:
        return await self.blobs.read(blob_key(key, scene_file(fmt)))

    async def put(self, key: str, scenes: dict[str, bytes], metadata: SceneMetadata) -> int:
        """Store the formats not stored yet (and the metadata once); returns scene bytes written.

        The blob first, then its row: a row always names bytes that exist (a crash in between
        leaves bytes that the next put of the same scene overwrites under the same key).
        """
        await self.touch(key)  # first, so a concurrent sweep sees a fresh scene
        stored = await self.stored(key)
        files = {scene_file(fmt): data for fmt, data in scenes.items()}
        if METADATA_FILE not in stored:
            files[METADATA_FILE] = json.dumps(metadata, indent=2, sort_keys=True).encode()
        written = 0
        for name, data in files.items():
            if name in stored:
                continue
            target = blob_key(key, name)
            await self.blobs.put(target, data)
            await self.db.execute(SCENE_BLOB_SQL, (target, len(data), key, time.time()))
            if name != METADATA_FILE:
                written += len(data)
        await self.touch(key)
        self.bytes_written += written
        return written

    async def refs(self, key: str, files: dict[str, str]) -> dict[str, tuple[str, int]]:
        """What a task's ``file_refs`` rows should say for ``files`` (scene file -> task name):
        task name -> (blob key, size). Marks the scene used first, so a sweep keeps it."""
        await self.touch(key)
        stored = await self.stored(key)
        missing = [name for name in files if name not in stored]
        if missing:
            raise LookupError(f"scene {key[:12]} has no {', '.join(missing)}")
        return {name: (blob_key(key, source), stored[source]) for source, name in files.items()}

    async def sweep(
        self, ttl_s: float, max_bytes: int, now: float | None = None, *, total_max_bytes: int | None = None
    ) -> int:
        """Delete unreferenced scene files idle past ``ttl_s``, then least recently used ones while
        unreferenced bytes exceed ``max_bytes`` (or all stored bytes exceed ``total_max_bytes``).
        Scenes used in the last IN_USE_S stay. Returns how many scenes lost files."""
        now = time.time() if now is None else now
        scenes: dict[str, tuple[float, list[tuple[str, int]]]] = {}
        for row in await self.db.fetch_all(UNREFERENCED_SQL):
            last = float(row["accessed_at"] or 0.0)
            entry = scenes.setdefault(row["scene_key"], (last, []))
            entry[1].append((row["blob_key"], int(row["size_bytes"])))
        unreferenced = sum(size for _, files in scenes.values() for _, size in files)
        bound = max_bytes
        if total_max_bytes is not None:
            total = await self.db.fetch_one("SELECT COALESCE(SUM(size_bytes), 0) AS n FROM blobs")
            held_elsewhere = int(total["n"] if total else 0) - unreferenced
            bound = min(bound, max(0, total_max_bytes - held_elsewhere))
        removed = 0
        for key, (last, files) in sorted(scenes.items(), key=lambda item: item[1][0]):  # LRU first
            if now - last < IN_USE_S or (now - last <= ttl_s and unreferenced <= bound):
                continue
            gone = await self._delete_idle(key, last, files)
            unreferenced -= sum(size for name, size in files if name in gone)
            removed += bool(gone)
        if removed:
            log.info("unreferenced scenes removed", extra={"scenes": removed})
        return removed

    async def _delete_idle(self, key: str, last: float, files: list[tuple[str, int]]) -> set[str]:
        """Drop the rows still unreferenced and unused since ``last``, then their blobs."""
        gone: set[str] = set()
        async with self.db.transaction() as tx:
            for name, _ in files:
                if await tx.execute(DELETE_IDLE_SQL, (name, name, key, last)):
                    gone.add(name)
            await tx.execute(
                "DELETE FROM scenes WHERE scene_key = ? AND accessed_at <= ? "
                "AND NOT EXISTS (SELECT 1 FROM blobs WHERE scene_key = ?)",
                (key, last, key),
            )
        await self.blobs.delete(sorted(gone))
        return gone

"""Content-addressed scene files: each scene is written once, results reference it by hard link.

Why: a scene is the same bytes whichever task asks for it. It lives once under
``<results_dir>/scenes/<scene key>/``; a predict task's or job's folder gets a hard link to it
(no bytes copied, the download route and archives see ordinary files), so a cache hit writes no
scene bytes. The link count is the reference count: a scene file with one link belongs to no
task, and only such files expire, by last access (``cache_ttl_s``) and total size
(``cache_max_bytes``, least recently used first). Files of live tasks are never deleted here; they
go when their last task expires.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

from gateway.formats import output_name
from gateway.service.storage import FILE_MODE, FOLDER_MODE
from mlsharp.fileio import atomic_write

log = logging.getLogger("gateway.scenes")

METADATA_FILE = "metadata.json"
#: touched on every use; its mtime is the scene's last access
ACCESS_FILE = ".access"
#: a scene used this recently may be mid-write or about to be linked by a task: never swept, even
#: over the size bound (a sweep once removed a scene between its write and the task's link: 500)
IN_USE_S = 60.0


def scene_file(fmt: str) -> str:
    """A format's file name inside a scene folder (``scene.ply``, ``scene.ply-clean.ply``, ...)."""
    return output_name(fmt, stem="scene")


class SceneStore:
    """Owns ``<results_dir>/scenes``; keys are hex sha256 digests (see cache.scene_key)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        #: scene bytes written since start (tests and /v1/stats: a hit must not add to it)
        self.bytes_written = 0
        self.links_copied = 0

    def folder(self, key: str) -> Path:
        if len(key) != 64 or any(c not in "0123456789abcdef" for c in key):
            raise ValueError("invalid scene key")
        return self.root / key

    def path(self, key: str, fmt: str) -> Path:
        return self.folder(key) / scene_file(fmt)

    def has(self, key: str, fmt: str) -> bool:
        return self.path(key, fmt).is_file()

    async def read(self, key: str, fmt: str) -> bytes:
        return await asyncio.to_thread(self.path(key, fmt).read_bytes)

    async def metadata(self, key: str) -> dict[str, Any] | None:
        """The stored metadata document, or None when the scene is not (or no longer) stored."""
        path = self.folder(key) / METADATA_FILE
        try:
            return json.loads(await asyncio.to_thread(path.read_bytes))
        except (OSError, ValueError):
            return None

    async def put(self, key: str, scenes: dict[str, bytes], metadata: dict[str, Any]) -> int:
        """Write the formats not stored yet (and the metadata once); returns scene bytes written."""
        folder = self.folder(key)

        def _write() -> int:
            folder.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
            (folder / ACCESS_FILE).touch(mode=FILE_MODE)  # first, so a concurrent sweep sees a fresh scene
            written = 0
            for fmt, data in scenes.items():
                target = folder / scene_file(fmt)
                if not target.is_file():
                    atomic_write(target, data, mode=FILE_MODE)
                    written += len(data)
            meta = folder / METADATA_FILE
            if not meta.is_file():
                atomic_write(meta, json.dumps(metadata, indent=2, sort_keys=True).encode(), mode=FILE_MODE)
            return written

        written = await asyncio.to_thread(_write)
        self.bytes_written += written
        return written

    async def link(self, key: str, files: dict[str, str], task_id_folder: Path) -> None:
        """Reference scene files from a task folder: ``files`` maps scene file -> name there.

        A hard link where the filesystem allows (no bytes); a copy otherwise (counted).
        """

        def _link() -> int:
            (self.folder(key) / ACCESS_FILE).touch()  # first: a concurrent sweep keeps it
            task_id_folder.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
            copies = 0
            for source_name, name in files.items():
                source, target = self.folder(key) / source_name, task_id_folder / name
                target.unlink(missing_ok=True)
                try:
                    os.link(source, target)
                except OSError:
                    shutil.copyfile(source, target)
                    copies += 1
            return copies

        self.links_copied += await asyncio.to_thread(_link)

    def _sweep(self, now: float, ttl_s: float, max_bytes: int) -> int:
        """Delete unreferenced scene files: idle past ``ttl_s``, then LRU down to ``max_bytes``."""
        if not self.root.is_dir():
            return 0
        scenes: list[tuple[float, Path, list[Path], int]] = []
        for folder in self.root.iterdir():
            try:
                last = (folder / ACCESS_FILE).stat().st_mtime
            except OSError:
                last = 0.0
            names = {METADATA_FILE, ACCESS_FILE}
            # dot files are atomic_write's temporaries of a write in progress
            files = [p for p in folder.iterdir() if not p.name.startswith(".") and p.name not in names]
            files = [p for p in files if p.is_file()]
            unreferenced = [p for p in files if p.stat().st_nlink == 1]
            scenes.append((last, folder, unreferenced, sum(p.stat().st_size for p in unreferenced)))
        scenes.sort(key=lambda item: item[0])  # least recently used first
        total = sum(item[3] for item in scenes)
        removed = 0
        for last, folder, unreferenced, size in scenes:
            if now - last < IN_USE_S or (now - last <= ttl_s and total <= max_bytes):
                continue
            for path in unreferenced:
                path.unlink(missing_ok=True)
            total -= size
            names = {METADATA_FILE, ACCESS_FILE}
            if not any(p.name not in names for p in folder.iterdir()):
                shutil.rmtree(folder, ignore_errors=True)  # no task references any of it
            removed += bool(unreferenced)
        return removed

    async def sweep(self, ttl_s: float, max_bytes: int, now: float | None = None) -> int:
        removed = await asyncio.to_thread(self._sweep, time.time() if now is None else now, ttl_s, max_bytes)
        if removed:
            log.info("unreferenced scenes removed", extra={"scenes": removed})
        return removed

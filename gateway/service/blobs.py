"""Blob storage: one interface for result bytes, on local files or an S3 bucket.

Why: with several gateway replicas the results must live where every replica reads them. The
rest of the service (scenes, task files, archives, downloads, expiry) talks only to
:class:`BlobStore`, so it is written once; which bytes belong to whom and how big they are is
kept in the database (``blobs`` / ``file_refs``), never found by listing the store.

Keys are relative, ``/``-separated and whitelisted (``<task id>/<name>``,
``scenes/<scene key>/<file>``). Reads stream in chunks; nothing here holds a whole blob in memory
except a ``put`` that was handed bytes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import NamedTuple, Protocol

from mlsharp.fileio import atomic_copy, atomic_write, fsync_dir

log = logging.getLogger("gateway.blobs")

#: results are read only by the gateway itself, never by other local users
FILE_MODE = 0o600
FOLDER_MODE = 0o700
CHUNK_BYTES = 1024 * 1024
_KEY_RE = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}(/[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}){0,3}$")


class BlobNotFound(LookupError):
    """The key names no stored blob."""


class BlobStream(NamedTuple):
    """An opened blob: its size (for Content-Length) and its bytes, chunk by chunk."""

    size_bytes: int
    chunks: AsyncIterator[bytes]


def check_key(key: str) -> str:
    """A key the stores accept: whitelisted segments, no ``..``, at most four levels."""
    if not _KEY_RE.fullmatch(key) or ".." in key:
        raise ValueError(f"invalid blob key: {key!r}")
    return key


class BlobStore(Protocol):
    """What the service needs from a place that keeps bytes under keys."""

    kind: str

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def check(self) -> None:
        """Raise when the store cannot be used now (readiness: the bucket or folder is there)."""
        ...

    async def put(self, key: str, source: bytes | Path, *, move: bool = False) -> int:
        """Store bytes, or a local file streamed (``move``: the file is consumed); returns size."""
        ...

    async def open(self, key: str) -> BlobStream:
        """The blob's size and chunks; raises :class:`BlobNotFound` before any byte is sent."""
        ...

    async def read(self, key: str) -> bytes: ...

    async def size(self, key: str) -> int | None:
        """Bytes stored under ``key``, None when nothing is."""
        ...

    async def delete(self, keys: list[str]) -> None:
        """Remove blobs; missing ones are not an error."""
        ...

    async def presigned_url(self, key: str, expires_s: float, filename: str, media_type: str) -> str | None:
        """A URL that fetches the blob without the gateway, or None where there is none (local)."""
        ...

    def scratch_dir(self) -> Path:
        """Where temporary files meant for ``put(..., move=True)`` are built."""
        ...


def make_private_dir(path: Path) -> None:
    """Create (or tighten) a folder to 0700; a mount point owned by someone else (a Kubernetes
    volume root owned by root with fsGroup) is left as the platform made it, with a warning."""
    path.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
    try:
        os.chmod(path, FOLDER_MODE)
    except PermissionError:
        log.warning("cannot make %s private (not its owner); its files are still 0600", path)


class LocalBlobStore:
    """Files under ``root`` (the results directory): key ``a/b/c`` is ``root/a/b/c``.

    Every write is temp file + fsync + rename + folder fsync, so a crash never leaves a
    half-written blob under its final name. Files are 0600 and folders 0700. Empty folders are
    removed when their last blob goes.
    """

    kind = "local"

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, key: str) -> Path:
        return self.root / check_key(key)

    async def start(self) -> None:
        make_private_dir(self.root)

    async def close(self) -> None:
        return None

    async def check(self) -> None:
        if not await asyncio.to_thread(os.access, self.root, os.W_OK | os.X_OK):
            raise OSError(f"{self.root} is not a writable folder")

    def _folders(self, target: Path) -> None:
        self.root.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
        for parent in reversed(target.relative_to(self.root).parents[:-1]):
            (self.root / parent).mkdir(mode=FOLDER_MODE, exist_ok=True)

    def _put(self, target: Path, source: bytes | Path, move: bool) -> int:
        for attempt in range(2):  # a concurrent delete may prune the folder between the two steps
            self._folders(target)
            try:
                if isinstance(source, bytes):
                    atomic_write(target, source, mode=FILE_MODE)
                    return len(source)
                if move and source.stat().st_dev == self.root.stat().st_dev:
                    os.chmod(source, FILE_MODE)
                    with source.open("rb") as handle:
                        os.fsync(handle.fileno())
                    os.replace(source, target)
                    fsync_dir(target.parent)
                else:
                    atomic_copy(target, source, mode=FILE_MODE, chunk_bytes=CHUNK_BYTES)
                    if move:
                        source.unlink(missing_ok=True)
                return target.stat().st_size
            except FileNotFoundError:
                if attempt or (isinstance(source, Path) and not source.exists()):
                    raise
        raise AssertionError("unreachable")

    async def put(self, key: str, source: bytes | Path, *, move: bool = False) -> int:
        return await asyncio.to_thread(self._put, self.path(key), source, move)

    async def open(self, key: str) -> BlobStream:
        path = self.path(key)
        try:
            handle = await asyncio.to_thread(path.open, "rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as error:
            raise BlobNotFound(key) from error
        size = os.fstat(handle.fileno()).st_size

        async def chunks() -> AsyncIterator[bytes]:
            try:
                while chunk := await asyncio.to_thread(handle.read, CHUNK_BYTES):
                    yield chunk
            finally:
                handle.close()

        return BlobStream(size, chunks())

    async def read(self, key: str) -> bytes:
        try:
            return await asyncio.to_thread(self.path(key).read_bytes)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as error:
            raise BlobNotFound(key) from error

    async def size(self, key: str) -> int | None:
        try:
            return (await asyncio.to_thread(self.path(key).stat)).st_size
        except (FileNotFoundError, NotADirectoryError):
            return None

    def _delete(self, paths: list[Path]) -> None:
        for path in paths:
            path.unlink(missing_ok=True)
            for parent in path.relative_to(self.root).parents[:-1]:
                try:
                    (self.root / parent).rmdir()  # only when empty
                except OSError:
                    break

    async def delete(self, keys: list[str]) -> None:
        if keys:
            await asyncio.to_thread(self._delete, [self.path(key) for key in keys])

    async def presigned_url(self, key: str, expires_s: float, filename: str, media_type: str) -> str | None:
        return None

    def scratch_dir(self) -> Path:
        return self.root

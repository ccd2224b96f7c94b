"""Crash-safe file writes shared by the CLI and the gateway."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def fsync_dir(path: Path) -> None:
    """Persist a directory's entries (a rename is only durable once its directory is synced)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _replace_atomically(path: Path, mode: int | None, fill: Callable[[BinaryIO], object]) -> None:
    """``fill`` a temporary beside ``path``, fsync it, rename it over ``path``, fsync the folder:
    a crash (or power loss) never leaves a half-written file, nor loses one reported written.

    ``mode`` None gives an ordinary file (0666 less the umask, the CLI's outputs); the gateway
    passes 0o600 for results that only the service itself reads.
    """
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    if mode is None:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask  # mkstemp creates 0600; CLI results are ordinary files
    os.chmod(tmp_name, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            fill(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write(path: Path, data: bytes, *, mode: int | None = None) -> None:
    """Write ``data`` to ``path`` crash-safely (see _replace_atomically), creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _replace_atomically(path, mode, lambda handle: handle.write(data))


def atomic_copy(path: Path, source: Path, *, mode: int | None = None, chunk_bytes: int = 8 << 20) -> None:
    """Stream ``source`` into ``path`` crash-safely, never whole in memory (the folder must exist)."""

    def fill(handle: BinaryIO) -> None:
        with source.open("rb") as src:
            shutil.copyfileobj(src, handle, chunk_bytes)

    _replace_atomically(path, mode, fill)

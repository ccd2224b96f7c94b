"""A real PostgreSQL server for tests: Debian's ``postgresql`` package, a throw-away data
directory, 127.0.0.1 on a free port, stopped by pid at the end.

PostgreSQL refuses to run as root, so as root the server runs as the ``postgres`` user the package
creates. fsync is off: a test database need not survive a power cut, and the suite runs faster.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from mlsharp.triton.server import free_port
from tests.requires import missing


def postgres_bin() -> Path | None:
    """The server's bin folder (Debian keeps it out of PATH, under /usr/lib/postgresql/N/bin)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


def require_postgres() -> Path:
    """The bin folder, or :func:`tests.requires.missing` (a failure under CI=true)."""
    found = postgres_bin()
    if found is None:
        missing("PostgreSQL is not installed (Debian package postgresql; scripts/setup.sh installs it)")
    return found


class PostgresServer:
    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="mlsharp-pg-"))
        self.data = self.root / "data"
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
        self.process: subprocess.Popen[bytes] | None = None

    def _cmd(self, *args: str) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *args] if self._as_postgres else list(args)

    def start(self) -> PostgresServer:
        subprocess.run(
            self._cmd(
                str(self.bin_dir / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ),
            check=True,
            stdout=subprocess.DEVNULL,
        )
        self.process = subprocess.Popen(
            self._cmd(
                str(self.bin_dir / "postgres"),
                "-D",
                str(self.data),
                "-p",
                str(self.port),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                f"unix_socket_directories={self.root}",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
            ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ready = subprocess.run(
                [str(self.bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                stdout=subprocess.DEVNULL,
            )
            if ready.returncode == 0:
                return self
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited with {self.process.returncode}")
            time.sleep(0.2)
        raise RuntimeError("postgres did not become ready in 30 s")

    def create_database(self, name: str | None = None) -> str:
        """A fresh empty database; returns its URL."""
        name = name or f"t_{uuid.uuid4().hex[:12]}"
        subprocess.run(
            [str(self.bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name],
            check=True,
        )
        return self.url(name)

    def url(self, name: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def _postmaster_pid(self) -> int | None:
        """The server's own pid (first line of postmaster.pid): as root the child of ``runuser``,
        which does not pass SIGINT on."""
        try:
            return int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def stop(self) -> None:
        """SIGINT to the postmaster ("fast" shutdown), SIGKILL if it lingers; then the wrapper."""
        pid = self._postmaster_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGINT)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
                time.sleep(0.05)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.process is not None:
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        shutil.rmtree(self.root, ignore_errors=True)

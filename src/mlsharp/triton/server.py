"""Run the pip-installed ``tritonserver`` locally: ``TritonServer`` (tests, gateway) and a CLI.

Why a launcher: the wheel's server needs a prepared backend directory, a NumPy-1 stub environment
and library paths (see :mod:`mlsharp.triton.paths`); a bad model otherwise leaves the server sitting
in "loading"; and a hard kill leaks ``/dev/shm`` regions and orphan stubs that ignore SIGTERM.
This launcher fails fast with the log tail, gives every server its own shm prefix and scratch
directory, and on stop sends SIGTERM, waits, then SIGKILLs the server and its stubs and removes
exactly the shm regions and files it created.

Shutdown caveat (Triton >= 24.04, measured on 2.51): after SIGTERM the server first waits for open
HTTP keep-alive connections to close, for up to ``--exit-timeout-secs``, then exits 1 with "Exit
timeout expired". gRPC channels do not count. Close HTTP clients before stopping.

    python -m mlsharp.triton.server --repository artifacts/repo --http-port 8000
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from mlsharp.triton import paths

#: log lines that mean a model will never become ready (the server may not exit by itself)
FATAL_LOG_PATTERNS = (
    re.compile(r"failed to load '"),
    re.compile(r"error: creating server"),
    re.compile(r"error while loading shared libraries"),
    re.compile(r"failed to start \w+ service"),
    re.compile(r"Unable to initialize shared memory"),
)
SHM_DIR = Path("/dev/shm")


class TritonStartError(RuntimeError):
    """The server exited or reported a model load failure before becoming ready."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (for tests that start servers side by side)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Ask Linux to SIGTERM the server if the launcher dies, so no server outlives its owner."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (the python-backend stubs of a server), from /proc."""
    found = []
    for status in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = status.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                found.append(int(status.parent.name))
    return found


class TritonServer:
    """One local tritonserver process; use as a context manager or call ``start``/``stop``.

    Ports of 0 are replaced by free ones. ``python_env`` is the environment the python-backend
    stubs run in (default: :func:`paths.resolve_stub_env`).
    """

    def __init__(
        self,
        repository: str | os.PathLike[str],
        *,
        http_port: int = 0,
        grpc_port: int = 0,
        metrics_port: int = 0,
        host: str = "127.0.0.1",
        python_env: str | os.PathLike[str] | None = None,
        log_path: str | os.PathLike[str] | None = None,
        startup_timeout_s: float = 180.0,
        exit_timeout_s: int = 30,
        shm_default_bytes: int = 16 * 1024 * 1024,
        log_verbose: int = 0,
        extra_args: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.repository = Path(repository).resolve()
        self.host = host
        self.http_port = http_port or free_port(host)
        self.grpc_port = grpc_port or free_port(host)
        self.metrics_port = metrics_port or free_port(host)
        self._python_env = python_env
        self._log_path = Path(log_path).resolve() if log_path else None
        self.startup_timeout_s = startup_timeout_s
        self.exit_timeout_s = exit_timeout_s
        self.shm_default_bytes = shm_default_bytes
        self.log_verbose = log_verbose
        self.extra_args = tuple(extra_args)
        self.extra_env = dict(env or {})
        self.shm_prefix = f"mlsharp_{uuid.uuid4().hex[:12]}_"
        self.process: subprocess.Popen[bytes] | None = None
        self.workdir: Path | None = None
        self.log_file: Path | None = None
        self._stubs: set[int] = set()
        #: the log's last lines as of the last stop() (the log itself may live in the removed scratch dir)
        self.last_log_tail = ""
        self._lock = threading.Lock()

    # -- addresses ------------------------------------------------------------------------
    @property
    def http_url(self) -> str:
        """``host:port`` for tritonclient.http."""
        return f"{self.host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        """``host:port`` for tritonclient.grpc."""
        return f"{self.host}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        """Full Prometheus metrics URL."""
        return f"http://{self.host}:{self.metrics_port}/metrics"

    # -- lifecycle ------------------------------------------------------------------------
    def command(self, backend_dir: Path) -> list[str]:
        """The tritonserver command line (flags verified against 2.51.0)."""
        install = paths.find_triton()
        cmd = [
            str(install.server_binary),
            f"--model-repository={self.repository}",
            f"--backend-directory={backend_dir}",
            f"--http-address={self.host}",
            f"--grpc-address={self.host}",
            f"--metrics-address={self.host}",
            f"--http-port={self.http_port}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-port={self.metrics_port}",
            "--pinned-memory-pool-byte-size=0",
            "--allow-gpu-metrics=false",
            "--disable-auto-complete-config",
            f"--exit-timeout-secs={self.exit_timeout_s}",
            f"--log-verbose={self.log_verbose}",
            f"--backend-config=python,shm-default-byte-size={self.shm_default_bytes}",
            f"--backend-config=python,shm-region-prefix-name={self.shm_prefix}",
        ]
        return cmd + list(self.extra_args)

    def _prepare_backends(self, workdir: Path, python_version: str) -> Path:
        """Copy the python backend and the stub for ``X.Y`` into a private backend directory.

        A private copy (not the wheel's directory) keeps site-packages untouched; the copied
        stub's relative RPATH then points nowhere, hence the wheel's libs on LD_LIBRARY_PATH.
        """
        install = paths.find_triton()
        backend_dir = workdir / "backends"
        shutil.copytree(
            install.python_backend_dir, backend_dir / "python", ignore=shutil.ignore_patterns("__pycache__")
        )
        shutil.copy2(install.stub_for(python_version), backend_dir / "python" / "triton_python_backend_stub")
        return backend_dir

    def _environment(self, stub_env: Path) -> dict[str, str]:
        install = paths.find_triton()
        env = dict(os.environ)
        env.update(self.extra_env)
        bins = [str(stub_env / "bin"), str(Path(sys.prefix) / "bin")]
        env["PATH"] = os.pathsep.join([*dict.fromkeys(bins), env.get("PATH", "")])
        libs = [str(paths.python_libdir()), str(install.libs_dir)]
        if env.get("LD_LIBRARY_PATH"):
            libs.append(env["LD_LIBRARY_PATH"])
        env["LD_LIBRARY_PATH"] = os.pathsep.join(libs)
        env.pop("PYTHONHOME", None)
        return env

    def start(self) -> TritonServer:
        """Launch and block until ready; raise :class:`TritonStartError` with the log tail on failure."""
        if self.process is not None:
            raise RuntimeError("server already started")
        if not self.repository.is_dir():
            raise TritonStartError(f"model repository {self.repository} does not exist")
        stub_env = paths.resolve_stub_env(self._python_env)
        version = paths.env_python_version(stub_env)
        if version != paths.python_version():
            raise TritonStartError(
                f"stub env {stub_env} runs Python {version}, this launcher {paths.python_version()}"
            )
        self.workdir = Path(tempfile.mkdtemp(prefix="mlsharp-triton-"))
        backend_dir = self._prepare_backends(self.workdir, version)
        self.log_file = self._log_path or self.workdir / "tritonserver.log"
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "wb") as log:
            self.process = subprocess.Popen(
                self.command(backend_dir),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self._environment(stub_env),
                cwd=self.workdir,
                start_new_session=True,  # a terminal's Ctrl-C reaches us, and we stop it in order
                preexec_fn=_die_with_parent,
            )
        try:
            self.wait_ready(self.startup_timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def _check_log(self) -> str | None:
        with contextlib.suppress(OSError):
            for line in self.log_tail(400).splitlines():
                if any(p.search(line) for p in FATAL_LOG_PATTERNS):
                    return line
        return None

    def is_ready(self) -> bool:
        """True when /v2/health/ready answers 200."""
        url = f"http://{self.http_url}/v2/health/ready"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self, timeout_s: float) -> None:
        """Poll readiness while watching the process and the log, so failures surface at once."""
        assert self.process is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self._remember_stubs()
            code = self.process.poll()
            if code is not None:
                raise TritonStartError(
                    f"tritonserver exited with code {code} before ready:\n{self.log_tail()}"
                )
            fatal = self._check_log()
            if fatal is not None:
                raise TritonStartError(
                    f"tritonserver cannot load a model ({fatal.strip()}):\n{self.log_tail()}"
                )
            if self.is_ready():
                self._remember_stubs()
                return
            time.sleep(0.2)
        raise TritonStartError(f"tritonserver not ready after {timeout_s:.0f} s:\n{self.log_tail()}")

    def _remember_stubs(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self._stubs.update(_children(self.process.pid))

    def log_tail(self, lines: int = 60) -> str:
        """The last ``lines`` lines of the server log (stubs log there too)."""
        if self.log_file is None or not self.log_file.exists():
            return ""
        text = self.log_file.read_bytes()[-256 * 1024 :].decode("utf-8", "replace")
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout_s: float | None = None) -> int | None:
        """SIGTERM, wait (in-flight requests finish), then SIGKILL; remove stubs, shm and scratch files.

        Returns the server's exit code (None if it was never started). Safe to call twice.
        """
        with self._lock:
            process, self.process = self.process, None
            code = None
            if process is not None:
                self._stubs.update(_children(process.pid) if process.poll() is None else [])
                wait = timeout_s if timeout_s is not None else self.exit_timeout_s + 15
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
                try:
                    code = process.wait(timeout=wait)
                except subprocess.TimeoutExpired:
                    process.kill()
                    code = process.wait(timeout=30)
            self._kill_stubs()
            self._remove_shm()
            self.last_log_tail = self.log_tail() if process is not None else self.last_log_tail
            if self.workdir is not None:
                shutil.rmtree(self.workdir, ignore_errors=True)
                self.workdir = None
            return code

    def kill(self) -> int | None:
        """Stop without Triton's graceful unload (~6 s for the five idle python stubs): SIGTERM then
        SIGKILL at once, with the same cleanup as :meth:`stop`. For callers with nothing in flight
        and nothing to flush, such as test fixtures; a served deployment stops with :meth:`stop`."""
        return self.stop(timeout_s=0)

    def _kill_stubs(self) -> None:
        """Stubs orphaned by a hard kill ignore SIGTERM: SIGKILL the ones this server started."""
        for pid in sorted(self._stubs):
            with contextlib.suppress(OSError):
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                if b"triton_python_backend_stub" in cmdline and self.shm_prefix.encode() in cmdline:
                    os.kill(pid, signal.SIGKILL)
        self._stubs.clear()

    def leftover_shm(self) -> list[Path]:
        """Shared-memory regions carrying this server's prefix."""
        return sorted(SHM_DIR.glob(f"{self.shm_prefix}*"))

    def _remove_shm(self) -> None:
        for region in self.leftover_shm():
            with contextlib.suppress(OSError):
                region.unlink()

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlsharp-triton", description="Run a local Triton on a model repository."
    )
    parser.add_argument("--repository", type=Path, help="model repository (from `python -m export`)")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address for HTTP, gRPC and metrics (default 127.0.0.1)"
    )
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument("--metrics-port", type=int, default=8002)
    parser.add_argument(
        "--python-env", help=f"environment for python models (default ${paths.STUB_ENV_VARIABLE})"
    )
    parser.add_argument(
        "--log-file", type=Path, help="server log (default: a scratch file, printed on failure)"
    )
    parser.add_argument("--log-verbose", type=int, default=0)
    parser.add_argument("--startup-timeout", type=float, default=600.0, help="seconds to wait for ready")
    parser.add_argument(
        "--exit-timeout", type=int, default=30, help="seconds Triton waits for in-flight work on stop"
    )
    parser.add_argument(
        "--setup-stub-env", action="store_true", help="only create the NumPy-1 stub env if needed, then exit"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: start, print addresses, serve until SIGTERM/SIGINT, then stop cleanly."""
    args = _parser().parse_args(argv)
    if args.setup_stub_env:
        print(f"stub env: {paths.resolve_stub_env(args.python_env)}")
        return 0
    if args.repository is None:
        _parser().error("--repository is required")
    server = TritonServer(
        args.repository,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port,
        host=args.host,
        python_env=args.python_env,
        log_path=args.log_file,
        startup_timeout_s=args.startup_timeout,
        log_verbose=args.log_verbose,
        exit_timeout_s=args.exit_timeout,
    )
    stop = threading.Event()

    def _on_signal(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    try:
        server.start()
    except (TritonStartError, paths.TritonNotInstalledError) as exc:
        print(f"mlsharp-triton: {exc}", file=sys.stderr)
        return 1
    print(
        f"triton ready: http {server.http_url}  grpc {server.grpc_url}  metrics {server.metrics_url}",
        flush=True,
    )
    while not stop.wait(0.5):
        if server.process is None or server.process.poll() is not None:
            print(f"mlsharp-triton: server exited:\n{server.log_tail()}", file=sys.stderr)
            server.stop()
            return 1
    code = server.stop()
    print(f"triton stopped (exit code {code})", flush=True)
    if code not in (0, None) and server.last_log_tail and "Exit timeout expired" in server.last_log_tail:
        print(
            "mlsharp-triton: clients kept HTTP connections open past --exit-timeout-secs; Triton waits "
            "for them on shutdown (close HTTP clients before stopping)",
            file=sys.stderr,
        )
    return 0 if code in (0, None) else 1


if __name__ == "__main__":
    sys.exit(main())

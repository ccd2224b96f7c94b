"""Drive the real compose stack on this machine: a private Docker engine, the local base images,
the project's images built with the engine's BuildKit, and `docker compose` with the CPU override.

Why the images are built with ``docker build`` and not ``docker compose build``: Compose v2+ builds
only through the buildx plugin, which no package source here provides; the engine's built-in
BuildKit (Debian's docker.io 20.10) builds the same Dockerfiles with the same arguments, read from
``docker compose config`` so the compose files stay the single source of them.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKER = "/usr/bin/docker"  # Debian's CLI, matching the engine (another docker may be first on PATH)
ENGINE = ROOT / "scripts" / "docker-engine.sh"
BASES = ROOT / "scripts" / "docker-bases.sh"
CI_OVERRIDE = ROOT / "docker" / "ci" / "compose.cpu.yml"
WHEELS = ROOT / "docker" / "wheels"
TORCH_WHEEL = "torch==2.13.0+cpu"
PROJECT = "mlsharp-ci"
LOCK_FILE = Path("/run/mlsharp-compose-stage.lock")
CA_BUNDLE = Path(os.environ.get("MLSHARP_BUILD_CA", "/etc/ssl/certs/ca-certificates.crt"))

PORT_NAMES = ("TRITON_HTTP", "TRITON_GRPC", "TRITON_METRICS", "GATEWAY", "REDIS", "PROMETHEUS")
#: the `scale` profile's services (docker/ci/compose.scale.yml); SeaweedFS also listens on each
#: of its ports + 10000 (gRPC), hence ports below 55536 whose +10000 is free too
SCALE_PORT_NAMES = ("POSTGRES", "REDIS_LIMITS")
SEAWEED_PORT_NAMES = ("S3", "SEAWEED_MASTER", "SEAWEED_VOLUME", "SEAWEED_FILER")
SCALE_OVERRIDE = ROOT / "docker" / "ci" / "compose.scale.yml"


def missing_requirements() -> list[str]:
    """What this machine lacks to run the stack (empty when it can)."""
    missing = []
    if os.geteuid() != 0:
        missing.append("root (dockerd and debootstrap need it)")
    for tool in ("dockerd", "debootstrap"):
        if shutil.which(tool) is None:
            missing.append(f"{tool} (apt-get install docker.io debootstrap; scripts/setup.sh does)")
    if not Path(DOCKER).exists():
        missing.append(f"{DOCKER} (Debian's docker.io)")
    if compose_binary() is None:
        missing.append("docker-compose (scripts/validate-deploy.sh --install-only)")
    return missing


def compose_binary() -> Path | None:
    tools = Path(os.environ.get("MLSHARP_DEPLOY_TOOLS", ROOT / ".venv" / "deploy-tools"))
    found = tools / "bin" / "docker-compose"
    return found if found.is_file() else None


def seaweed_ports(count: int) -> list[int]:
    """Free ports p <= 55535 with p + 10000 free too (SeaweedFS's gRPC ports)."""
    from tests.servers.seaweed import free_port_pair

    taken: set[int] = set()
    return [free_port_pair(taken) for _ in range(count)]


def free_ports(count: int) -> list[int]:
    """Distinct free TCP ports on 127.0.0.1."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def port_open(port: int) -> bool:
    with closing(socket.socket()) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class Phases:
    """Wall-clock seconds per phase, printed at the end of the run."""

    seconds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what the tests observed, one line each

    @contextmanager
    def run(self, name: str) -> Iterator[None]:
        start = time.monotonic()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.monotonic() - start

    def lines(self) -> list[str]:
        total = sum(self.seconds.values())
        rows = [f"  {name:<34} {value:7.1f} s" for name, value in self.seconds.items()]
        notes = [f"  {note}" for note in self.notes]
        return ["compose stage, seconds per phase:", *rows, f"  {'total':<34} {total:7.1f} s", *notes]


#: what tests/deploy/conftest.py prints at the end of the run (set by the compose tests' fixture)
PHASES_KEY = pytest.StashKey[Phases]()
LOGS_KEY = pytest.StashKey[tuple[Path, bool]]()
SIZES_KEY = pytest.StashKey[dict[str, int]]()


class ComposeStack:
    """The stack of docker-compose.yml + docker/ci/compose.cpu.yml on loopback ports."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.logs_dir = workdir / "logs"
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        self.phases = Phases()
        names = PORT_NAMES + SCALE_PORT_NAMES
        self.ports = dict(zip(names, free_ports(len(names)), strict=True))
        self.ports |= dict(zip(SEAWEED_PORT_NAMES, seaweed_ports(len(SEAWEED_PORT_NAMES)), strict=True))
        #: compose files and profiles beyond the CPU override (the scale phase adds its own)
        self.extra_files: list[Path] = []
        self.profiles: list[str] = []
        self.env_file = workdir / "ci.env"
        self.prometheus_config = workdir / "prometheus.yml"
        self.started_engine = False
        self.env = {**os.environ, "DOCKER_HOST": "unix:///run/mlsharp-docker/docker.sock"}
        self.env.pop("DOCKER_BUILDKIT", None)
        self.image_sizes: dict[str, int] = {}
        self.first_result: tuple[str, bytes] | None = None  # (url, bytes) of a served result

    # -- processes -------------------------------------------------------------------------------
    def sh(self, *argv: str, log: str | None = None, timeout: float = 900, check: bool = True) -> str:
        """Run a command with the private engine; output to ``logs/<log>`` when named, else returned."""
        if log:
            with open(self.logs_dir / log, "ab") as out:
                result = subprocess.run(
                    argv, stdout=out, stderr=subprocess.STDOUT, env=self.env, timeout=timeout
                )
            if check and result.returncode != 0:
                tail = (self.logs_dir / log).read_text(errors="replace")[-6000:]
                raise AssertionError(f"{' '.join(argv[:4])}... exited {result.returncode}; log tail:\n{tail}")
            return ""
        result = subprocess.run(argv, capture_output=True, text=True, env=self.env, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(argv)} exited {result.returncode}:\n{result.stdout}{result.stderr}"
            )
        return result.stdout

    def compose(self, *args: str, log: str | None = None, timeout: float = 900, check: bool = True) -> str:
        argv = [str(compose_binary()), "--project-name", PROJECT, "--project-directory", str(ROOT)]
        argv += [
            "-f",
            str(ROOT / "docker-compose.yml"),
            "-f",
            str(CI_OVERRIDE),
            "--env-file",
            str(self.env_file),
        ]
        for extra in self.extra_files:
            argv += ["-f", str(extra)]
        for profile in self.profiles:
            argv += ["--profile", profile]
        return self.sh(*argv, *args, log=log, timeout=timeout, check=check)

    def enable_scale(self) -> None:
        """From now on the stack is the `scale` profile: PostgreSQL, SeaweedFS, limits Redis."""
        self.extra_files = [SCALE_OVERRIDE]
        self.profiles = ["scale"]

    # -- set-up ----------------------------------------------------------------------------------
    def start_engine(self) -> None:
        with self.phases.run("docker engine start"):
            self.started_engine = subprocess.run([str(ENGINE), "status"], env=self.env).returncode != 0
            self.sh(str(ENGINE), "start", timeout=120)

    def stop_engine(self) -> None:
        if self.started_engine:
            self.sh(str(ENGINE), "stop", timeout=120, check=False)

    def write_env(self) -> None:
        lines = [f"CI_{name}_PORT={port}" for name, port in self.ports.items()]
        lines.append(f"CI_PROMETHEUS_CONFIG={self.prometheus_config}")
        self.env_file.write_text("\n".join(lines) + "\n")
        config = (ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text()
        config = config.replace("gateway:8080", f"127.0.0.1:{self.ports['GATEWAY']}")
        config = config.replace("triton:8002", f"127.0.0.1:{self.ports['TRITON_METRICS']}")
        config = config.replace("localhost:9090", f"127.0.0.1:{self.ports['PROMETHEUS']}")
        config = config.replace("dcgm-exporter:9400", "127.0.0.1:9")  # absent: a down target
        self.prometheus_config.write_text(config.replace("scrape_interval: 10s", "scrape_interval: 2s"))

    def build_bases(self) -> None:
        with self.phases.run("base images (debootstrap, stand-ins)"):
            self.sh("bash", str(BASES), log="bases.log", timeout=1200)

    def place_wheels(self) -> None:
        """The CPU torch wheel from the wheel directory pip is configured with (TORCH_INDEX_URL="")."""
        if not list(WHEELS.glob("torch-2.13.0+cpu-*.whl")):
            pip = [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "-q",
                "--dest",
                str(WHEELS),
                TORCH_WHEEL,
            ]
            self.sh(*pip, log="wheels.log", timeout=600)

    def build_images(self) -> None:
        """Every image of the stack from its compose build section, with the engine's BuildKit."""
        self.place_wheels()
        config = json.loads(self.compose("config", "--format", "json"))
        self.env["DOCKER_BUILDKIT"] = "1"
        built: set[str] = set()
        for name, service in config["services"].items():
            build, image = service.get("build"), service.get("image")
            if not build or image in built:
                continue
            argv = [DOCKER, "build", "--network", "host", "--progress", "plain", "-t", image]
            dockerfile = Path(build["context"]) / build["dockerfile"]  # relative to the context
            argv += ["--secret", f"id=ca,src={CA_BUNDLE}", "-f", str(dockerfile)]
            if build.get("target"):
                argv += ["--target", build["target"]]
            for key, value in (build.get("args") or {}).items():
                argv += ["--build-arg", f"{key}={value if value is not None else ''}"]
            with self.phases.run(f"build {image}"):
                self.sh(*argv, build["context"], log=f"build-{name}.log", timeout=1500)
            built.add(image)
            self.image_sizes[image] = int(self.sh(DOCKER, "image", "inspect", "-f", "{{.Size}}", image))
        # a rebuilt tag leaves its previous image dangling: ~5 GB per local run until pruned
        self.sh(DOCKER, "image", "prune", "-f", check=False)

    # -- the running stack -----------------------------------------------------------------------
    def up(self, phase: str) -> None:
        with self.phases.run(phase):
            self.compose(
                "up", "-d", "--no-build", "--wait", "--wait-timeout", "600", log="compose.log", timeout=700
            )

    def service_logs(self, service: str) -> str:
        return self.compose("logs", "--no-color", "--no-log-prefix", service, check=False)

    def save_logs(self) -> Path:
        """Every container's log (all services, whatever state they are in) under logs/."""
        services = ["export", "triton", "gateway", "redis", "prometheus"]
        if self.profiles:
            services += ["postgres", "seaweedfs", "redis-limits"]
        for service in services:
            (self.logs_dir / f"container-{service}.log").write_text(self.service_logs(service))
        return self.logs_dir

    def down(self, *extra: str) -> None:
        self.compose("down", "--remove-orphans", *extra, log="compose.log", timeout=300)

    def url(self, name: str, path: str = "") -> str:
        return f"http://127.0.0.1:{self.ports[name]}{path}"


@contextmanager
def exclusive_engine(phases: Phases, wait_s: float = 1800.0) -> Iterator[None]:
    """One compose stage at a time on this machine: runs share the engine, its images and the
    project name, and the one that started the engine stops it at the end."""
    with open(LOCK_FILE, "w") as lock:
        with phases.run("waiting for another compose stage"):
            deadline = time.monotonic() + wait_s
            while True:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise AssertionError(
                            f"another compose stage held {LOCK_FILE} for {wait_s:.0f} s"
                        ) from None
                    time.sleep(2)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def stack_lifecycle(workdir: Path) -> Iterator[ComposeStack]:
    """Engine, bases, images, ``up``; on exit: logs saved, ``down -v``, the engine stopped."""
    stack = ComposeStack(workdir)
    stack.write_env()
    with exclusive_engine(stack.phases):
        yield from _lifecycle(stack)


def _lifecycle(stack: ComposeStack) -> Iterator[ComposeStack]:
    try:
        stack.start_engine()
        stack.build_bases()
        stack.build_images()
        stack.down("-v", "--timeout", "5")  # a stack left by an interrupted run
        stack.up("compose up (export, triton, gateway)")
        yield stack
    finally:
        try:
            stack.save_logs()
            with stack.phases.run("compose down -v"):
                stack.down("-v", "--timeout", "10")
        finally:
            stack.stop_engine()

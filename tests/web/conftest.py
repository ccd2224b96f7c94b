"""Browser-test fixtures: Debian's Chromium driven by the `playwright` Python package (no
`playwright install`: the browser is /usr/bin/chromium), WebGL2 through ANGLE + SwiftShader, and
HTTP servers on free 127.0.0.1 ports running in threads of the test process."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.requires import missing

CHROMIUM = Path(os.environ.get("MLSHARP_CHROMIUM", "/usr/bin/chromium"))
REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / "artifacts" / "web"
NODE_MODULES = REPO_ROOT / "web" / "node_modules"

# Measured on Debian 12 / Chromium 156: WebGL2 through ANGLE on
# SwiftShader, with no deprecation fallback and no sandbox (tests run as root).
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
    "--ignore-gpu-blocklist",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--metrics-recording-only",
    "--mute-audio",
    "--disable-dev-shm-usage",
]


def ensure_node_modules() -> None:
    """web/node_modules comes from `npm ci` in web/ at set-up; run it here if set-up has not."""
    if (NODE_MODULES / "@sparkjsdev" / "spark" / "package.json").exists():
        return
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("web/node_modules is missing and npm is not installed: run `npm ci` in web/")
    result = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund"],
        cwd=NODE_MODULES.parent,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"`npm ci` in web/ failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")


def _require_browser() -> None:
    if not CHROMIUM.exists():
        missing(f"{CHROMIUM} is missing: install Debian's Chromium (apt-get install -y chromium)")
    ensure_node_modules()


@pytest.fixture(scope="session")
def browser():
    _require_browser()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("the `playwright` Python package is not installed (pip install playwright==1.65.2)")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser, request):
    """A fresh browser context per test; console errors and page errors are collected."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, device_scale_factor=1)
    pg = context.new_page()
    pg.set_default_timeout(60_000)
    pg.console_messages = []  # type: ignore[attr-defined]
    pg.page_errors = []  # type: ignore[attr-defined]
    pg.on("console", lambda msg: pg.console_messages.append(f"{msg.type}: {msg.text}"))
    pg.on("pageerror", lambda err: pg.page_errors.append(str(err)))
    yield pg
    context.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ThreadedServer:
    """uvicorn serving one ASGI app on a free 127.0.0.1 port in a daemon thread."""

    def __init__(self, app, *, startup_timeout_s: float = 60.0) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # a page still polling or streaming events when the test ends would hold the shutdown for
        # seconds: the tests are over, so bound the graceful wait
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="on",
            timeout_graceful_shutdown=1,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name=f"uvicorn-{self.port}", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + startup_timeout_s
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"server on port {self.port} did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


def _wait_ready(url: str, timeout_s: float) -> None:
    """Wait until /v1/health says the backend is ready (the local model loads in the background)."""
    import httpx

    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        try:
            last = httpx.get(f"{url}/v1/health", timeout=5).json()
            if last.get("backend_ready"):
                return
        except (httpx.HTTPError, ValueError) as error:
            last = error
        time.sleep(0.25)
    raise RuntimeError(f"gateway backend not ready after {timeout_s} s: {last}")


def _local_backend(request, tmp_path: Path) -> tuple[dict, object | None]:
    """The gateway's in-process LocalBackend on the `test` preset with random weights."""
    return {
        "backend": "local",
        "local_preset": "test",
        "local_random_weights": True,
        "local_download": False,
    }, None


def _triton_backend(request, tmp_path: Path) -> tuple[dict, object | None]:
    """A real tritonserver serving the exported `test` preset: the suite's shared, session-scoped
    `triton_server` fixture (exporting and starting one per module is too slow for browser tests)."""
    try:
        server = request.getfixturevalue("triton_server")
    except pytest.FixtureLookupError:
        pytest.skip("no shared `triton_server` fixture in this suite (tests/conftest.py) to run the page on")
    return {
        "backend": "triton",
        "triton_url": server.grpc_url,
        "triton_metrics_url": server.metrics_url,
        "triton_timeout_s": 300,
    }, None


def _known_scene_backend(request, tmp_path: Path) -> tuple[dict, object | None]:
    from web_scene_backend import KnownSceneBackend

    return {}, KnownSceneBackend()


# Backends the page is tested against: name -> (settings overrides, backend object or None).
BACKEND_FACTORIES = {"local": _local_backend, "triton": _triton_backend, "known-scene": _known_scene_backend}
GATEWAY_BACKENDS = [
    name.strip()
    for name in os.environ.get("MLSHARP_WEB_TEST_BACKENDS", "local,triton").split(",")
    if name.strip()
]


def start_gateway(tmp_path: Path, backend: str, request=None, **overrides) -> ThreadedServer:
    """The real gateway (gateway.app.create_app) on a free port, with the named backend."""
    from gateway.app import create_app
    from gateway.settings import Settings

    backend_settings, backend_object = BACKEND_FACTORIES[backend](request, tmp_path)
    values = {
        "results_dir": tmp_path / "results",
        "job_max_files": 8,
        "webhooks_enabled": False,
        **backend_settings,
        **overrides,
    }
    app = create_app(Settings.model_validate(values), backend=backend_object)
    server = ThreadedServer(app)
    try:
        _wait_ready(server.url, timeout_s=120)
    except Exception:
        server.stop()
        raise
    return server


@pytest.fixture(params=GATEWAY_BACKENDS)
def gateway_server(request, tmp_path) -> Iterator[ThreadedServer]:
    """The gateway with each backend in GATEWAY_BACKENDS (the backend is the parameter)."""
    _require_browser()
    server = start_gateway(tmp_path, request.param, request)
    yield server
    server.stop()


@pytest.fixture
def known_scene_gateway(tmp_path) -> Iterator[ThreadedServer]:
    """The gateway with a backend that answers every photo with the same known scene."""
    _require_browser()
    server = start_gateway(tmp_path, "known-scene")
    yield server
    server.stop()


def save_screenshot(png: bytes, tmp_path: Path, name: str) -> Path:
    """Write under the test's output folder and copy to artifacts/web/ (git-ignored)."""
    path = tmp_path / name
    path.write_bytes(png)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, ARTIFACTS / name)
    return path

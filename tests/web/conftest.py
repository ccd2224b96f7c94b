"""Browser-test fixtures: Debian's Chromium driven by the `playwright` Python package (no
`playwright install`: the browser is /usr/bin/chromium), WebGL2 through ANGLE + SwiftShader, and
HTTP servers on free 127.0.0.1 ports running in threads of the test process."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = Path(os.environ.get("MLSHARP_CHROMIUM", "/usr/bin/chromium"))
REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / "artifacts" / "web"
NODE_MODULES = REPO_ROOT / "web" / "node_modules"

# Measured on Debian 12 / Chromium 156 (shared/formats/viewers.md §5): WebGL2 through ANGLE on
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


def _require_browser() -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's Chromium (apt-get install -y chromium)")
    if not (NODE_MODULES / "@sparkjsdev" / "spark" / "package.json").exists():
        pytest.fail("web/node_modules is missing: run `npm ci` in web/ (scripts/setup.sh does it)")


@pytest.fixture(scope="session")
def browser():
    _require_browser()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the `playwright` Python package is missing (pip install playwright; no browser download)")
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
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
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


@pytest.fixture
def stub_server() -> Iterator[ThreadedServer]:
    from web_stub_server import create_stub_app

    server = ThreadedServer(create_stub_app())
    yield server
    server.stop()


def save_screenshot(png: bytes, tmp_path: Path, name: str) -> Path:
    """Write under the test's output folder and copy to artifacts/web/ (git-ignored)."""
    path = tmp_path / name
    path.write_bytes(png)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, ARTIFACTS / name)
    return path

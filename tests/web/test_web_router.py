"""The web router without a browser: what it serves, what it refuses, and rules on the page's
source (no HTML built from strings, no address outside the gateway)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from gateway.api import web

STATIC = Path(web.STATIC_DIR)


@pytest.fixture
def client(tmp_path) -> TestClient:
    app = FastAPI()
    app.include_router(web.create_router())
    return TestClient(app)


def _import_map(html: str) -> tuple[str, dict]:
    block = re.search(r'<script type="importmap">(.*?)</script>', html, re.S).group(1)
    return block, json.loads(block)["imports"]


def test_page_has_strict_csp_matching_its_import_map(client):
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    csp = response.headers["content-security-policy"]
    block, _ = _import_map(response.text)
    digest = base64.b64encode(hashlib.sha256(block.encode()).digest()).decode()
    assert f"'sha256-{digest}'" in csp
    assert "default-src 'self'" in csp
    assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp
    assert response.headers["x-content-type-options"] == "nosniff"


def test_import_map_and_page_files_resolve(client):
    from conftest import ensure_node_modules

    ensure_node_modules()
    html = client.get("/").text
    _, imports = _import_map(html)
    for specifier, target in imports.items():
        url = "/" + target.removeprefix("./")
        if url.endswith("/"):
            url += "controls/OrbitControls.js" if specifier == "three/addons/" else ""
        response = client.get(url)
        assert response.status_code == 200, (specifier, url)
        assert response.headers["content-type"].startswith("text/javascript")
    # three.module.js imports ./three.core.js next to it
    assert client.get("/vendor/three/build/three.core.js").status_code == 200
    for name in web.PAGE_FILES:
        assert client.get(f"/static/{name}").status_code == 200, name
    assert web.vendor_versions() == {"three": "0.187.0", "@sparkjsdev/spark": "2.2.0"}


@pytest.mark.parametrize(
    "path",
    [
        "/vendor/three/package.json",
        "/vendor/../package.json",
        "/vendor/%2e%2e/%2e%2e/pyproject.toml",
        "/vendor/three/build/three.webgpu.js",
        "/vendor/fflate/esm/browser.js",
        "/static/index.html.bak",
        "/static/..%2Fapi%2Fweb.py",
        "/static/%2e%2e/app.py",
    ],
)
def test_only_listed_files_are_served(client, path):
    assert client.get(path).status_code == 404


def test_missing_node_modules_is_a_clear_503(tmp_path):
    app = FastAPI()
    app.include_router(web.create_router(node_modules=tmp_path))
    response = TestClient(app).get("/vendor/spark/spark.module.min.js")
    assert response.status_code == 503
    assert "npm ci" in response.text


def test_page_source_never_builds_html_from_strings():
    for path in STATIC.glob("*.js"):
        source = path.read_text(encoding="utf-8")
        for sink in (
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
        ):
            assert sink not in source, f"{path.name} uses {sink}"


def test_page_names_no_outside_address():
    for path in [*STATIC.glob("*.js"), *STATIC.glob("*.css"), *STATIC.glob("*.html")]:
        source = path.read_text(encoding="utf-8")
        assert not re.search(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", source, re.I), path.name

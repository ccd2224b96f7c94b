"""The web page: `/` plus its own static files and the few vendor ES modules it imports.

Everything the page needs is served from this process (no CDN): the page's files from
`gateway/static/` and exactly five files from `web/node_modules/` (installed by `npm ci` in `web/`
from the pinned lock file): three's ES module build (two files), its OrbitControls and Pass addons,
and Spark's ES module. The import map in `index.html` maps the bare specifiers (`three`,
`three/addons/...`, `@sparkjsdev/spark`) to the `/vendor/...` URLs below.

Only listed files are served; a request for anything else is a 404, so no path can reach outside.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, Response

_HERE = Path(__file__).resolve().parent
STATIC_DIR = _HERE.parent / "static"
# web/node_modules at the repository root; MLSHARP_WEB_MODULES overrides (e.g. an installed copy).
NODE_MODULES = Path(os.environ.get("MLSHARP_WEB_MODULES", _HERE.parent.parent / "web" / "node_modules"))

# The page's own files: URL name -> media type.
PAGE_FILES = {
    "api.js": "text/javascript; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "dom.js": "text/javascript; charset=utf-8",
    "events.js": "text/javascript; charset=utf-8",
    "files.js": "text/javascript; charset=utf-8",
    "history.js": "text/javascript; charset=utf-8",
    "i18n.js": "text/javascript; charset=utf-8",
    "job.js": "text/javascript; charset=utf-8",
    "preview.js": "text/javascript; charset=utf-8",
    "state.js": "text/javascript; charset=utf-8",
    "viewer.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}

# Vendor files: URL path under /vendor/ -> path under node_modules. Nothing else is reachable.
VENDOR_FILES = {
    "three/build/three.module.js": "three/build/three.module.js",
    "three/build/three.core.js": "three/build/three.core.js",
    "three/addons/controls/OrbitControls.js": "three/examples/jsm/controls/OrbitControls.js",
    "three/addons/postprocessing/Pass.js": "three/examples/jsm/postprocessing/Pass.js",
    "spark/spark.module.min.js": "@sparkjsdev/spark/dist/spark.module.min.js",
    "three/LICENSE": "three/LICENSE",
    "spark/LICENSE": "@sparkjsdev/spark/LICENSE",
}

_IMPORTMAP_RE = re.compile(r'<script type="importmap">(.*?)</script>', re.S)


@dataclass(frozen=True)
class _Page:
    html: bytes
    csp: str


def _content_security_policy(html: str) -> str:
    """A strict policy: only this origin; the inline import map allowed by its hash.

    Spark runs its sorter in a worker made from a Blob URL and compiles WebAssembly, hence
    `worker-src blob:` and `'wasm-unsafe-eval'`; it never evaluates strings as code.
    """
    hashes = []
    for block in _IMPORTMAP_RE.findall(html):
        digest = base64.b64encode(hashlib.sha256(block.encode("utf-8")).digest()).decode("ascii")
        hashes.append(f"'sha256-{digest}'")
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self' 'wasm-unsafe-eval' " + " ".join(hashes),
            "worker-src 'self' blob:",
            "connect-src 'self' blob: data:",
            "img-src 'self' blob: data:",
            "style-src 'self'",
            "object-src 'none'",
            "base-uri 'self'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


def _load_page(static_dir: Path) -> _Page:
    html = (static_dir / "index.html").read_text(encoding="utf-8")
    return _Page(html=html.encode("utf-8"), csp=_content_security_policy(html))


def vendor_versions(node_modules: Path = NODE_MODULES) -> dict[str, str | None]:
    """Installed versions of the vendored packages (None where `npm ci` has not been run)."""
    versions: dict[str, str | None] = {}
    for name in ("three", "@sparkjsdev/spark"):
        try:
            versions[name] = json.loads((node_modules / name / "package.json").read_text())["version"]
        except (OSError, ValueError, KeyError):
            versions[name] = None
    return versions


def create_router(static_dir: Path = STATIC_DIR, node_modules: Path = NODE_MODULES) -> APIRouter:
    """Router for `/`, `/static/{file}` and `/vendor/{path}`; hidden from the OpenAPI schema."""
    router = APIRouter(include_in_schema=False)
    page_cache: dict[str, _Page] = {}

    def page() -> _Page:
        # Read once per process; in development (MLSHARP_WEB_RELOAD=1) on every request.
        if "page" not in page_cache or os.environ.get("MLSHARP_WEB_RELOAD") == "1":
            page_cache["page"] = _load_page(static_dir)
        return page_cache["page"]

    security_headers = {
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
    }

    @router.get("/", response_class=Response)
    def index() -> Response:
        try:
            current = page()
        except OSError as exc:
            raise HTTPException(status_code=404, detail="The web page is not installed.") from exc
        return Response(
            content=current.html,
            media_type="text/html; charset=utf-8",
            headers={
                **security_headers,
                "Content-Security-Policy": current.csp,
                "Cache-Control": "no-cache",
            },
        )

    @router.get("/static/{name}")
    def static_file(name: str) -> FileResponse:
        media_type = PAGE_FILES.get(name)
        path = static_dir / name
        if media_type is None or not path.is_file():
            raise HTTPException(status_code=404, detail="Not found.")
        return FileResponse(
            path, media_type=media_type, headers={**security_headers, "Cache-Control": "no-cache"}
        )

    @router.get("/vendor/{path:path}")
    def vendor_file(path: str) -> FileResponse:
        relative = VENDOR_FILES.get(path)
        if relative is None:
            raise HTTPException(status_code=404, detail="Not found.")
        file = node_modules / relative
        if not file.is_file():
            raise HTTPException(
                status_code=503,
                detail="The viewer's modules are not installed: run `npm ci` in web/ and restart.",
            )
        media_type = (
            "text/plain; charset=utf-8" if path.endswith("LICENSE") else "text/javascript; charset=utf-8"
        )
        # Versions are pinned by web/package-lock.json; revalidate cheaply with the ETag.
        return FileResponse(
            file, media_type=media_type, headers={**security_headers, "Cache-Control": "no-cache"}
        )

    return router


router = create_router()

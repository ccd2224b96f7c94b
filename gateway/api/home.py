"""Fallback for ``/`` when the web page's router (gateway.api.web) is not installed."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, HTMLResponse, Response

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
PLACEHOLDER = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>MLSharp</title></head>
<body><h1>MLSharp gateway</h1><p>The API is at <a href="/docs">/docs</a>.</p></body></html>"""


def create_router(static_dir: Path = STATIC_DIR) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/")
    def index() -> Response:
        page = static_dir / "index.html"
        if page.is_file():
            return FileResponse(page, media_type="text/html; charset=utf-8")
        return HTMLResponse(PLACEHOLDER)

    return router

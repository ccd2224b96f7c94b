"""The render option in a real browser: a job with "render" ticked shows the rendered still beside
the 3D view and offers the orbit video for download (gateway with the known-scene backend)."""

from __future__ import annotations

import pytest
from conftest import _require_browser, start_gateway
from web_helpers import photo_like_jpeg

pytestmark = pytest.mark.timeout(150)


def test_render_option_shows_the_still_and_offers_the_video(page, tmp_path):
    _require_browser()
    server = start_gateway(tmp_path, "known-scene", render_frames=4, render_size="128x96")
    try:
        page.goto(server.url + "/")
        page.wait_for_selector("body[data-ready=true]")
        page.check("#render-option")
        page.set_input_files(
            "#file-input",
            files=[{"name": "r.jpg", "mimeType": "image/jpeg", "buffer": photo_like_jpeg(320, 240)}],
        )
        page.click("#submit")
        page.wait_for_selector("article.job[data-state=completed]", timeout=90_000)
        page.wait_for_selector("#render-figure:not([hidden])", timeout=30_000)
        page.wait_for_function(
            "() => { const img = document.getElementById('render-preview');"
            " return img.complete && img.naturalWidth > 0; }",
            timeout=30_000,
        )
        size = page.evaluate(
            "() => { const img = document.getElementById('render-preview');"
            " return [img.naturalWidth, img.naturalHeight]; }"
        )
        assert size == [128, 96]
        video = page.locator("#render-video")
        assert video.is_visible()
        href = video.get_attribute("href")
        assert href.endswith("_orbit.mp4") and video.get_attribute("download").endswith("_orbit.mp4")
        # the file's own downloads list both renders too
        assert page.locator(".job-file .downloads a[data-format=preview]").count() == 1
        assert page.locator(".job-file .downloads a[data-format=orbit]").count() == 1
        assert page.page_errors == []
    finally:
        server.stop()

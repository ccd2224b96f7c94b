"""The web page in a real browser (Debian's Chromium, WebGL2 on SwiftShader) against the real
gateway: a photo goes in, the job's progress comes back, and the 3D preview draws the scene; a
corrupt upload is explained in words and the page keeps working.

The gateway's backend is the fixture's parameter (GATEWAY_BACKENDS in conftest.py): by default
the in-process LocalBackend on the `test` preset with random weights.
"""

from __future__ import annotations

import pytest
from conftest import save_screenshot
from web_helpers import corrupt_jpeg, count_non_background, mean_colour, photo_like_jpeg

pytestmark = pytest.mark.timeout(150)


def _open(page, url: str) -> None:
    page.goto(url + "/")
    page.wait_for_selector("body[data-ready=true]")


def _wait_job_done(page, timeout_ms: int = 100_000) -> None:
    """Wait for the newest job to end; fail at once, with the page's words, if it did not succeed."""
    job = page.locator("article.job").first
    page.wait_for_selector(
        "article.job:is([data-state=completed],[data-state=failed],[data-state=partial],"
        "[data-state=cancelled],[data-state=expired])",
        timeout=timeout_ms,
    )
    state = job.get_attribute("data-state")
    assert state == "completed", f"job ended {state}: {job.inner_text()}"


def _choose(page, name: str, data: bytes, mime: str = "image/jpeg") -> None:
    page.set_input_files("#file-input", files=[{"name": name, "mimeType": mime, "buffer": data}])


def test_photo_to_3d_preview(page, gateway_server, tmp_path, request):
    backend = request.node.callspec.params["gateway_server"]
    _open(page, gateway_server.url)
    # Ask for every format, so every download button can be checked.
    for fmt in ("ply", "ply-clean", "spz", "splat"):
        page.check(f"#format-{fmt}")
    _choose(page, "garden.jpg", photo_like_jpeg())
    page.click("#submit")

    job = page.locator("article.job").first
    job.wait_for()
    # Live progress while the job runs: the file row shows its state as the events arrive.
    page.wait_for_function(
        "() => ['running', 'done', 'failed'].includes(document.querySelector('.job-file')?.dataset.state)",
        timeout=60_000,
    )
    _wait_job_done(page)
    page.wait_for_selector("#viewer[data-state=rendered]", timeout=100_000)

    canvas = page.locator("#viewer canvas")
    shot = canvas.screenshot()
    path = save_screenshot(shot, tmp_path, f"web-preview-{backend}.png")
    save_screenshot(page.screenshot(full_page=True), tmp_path, f"web-page-{backend}.png")
    hits, total = count_non_background(shot)
    assert hits > 0.02 * total, f"the viewer shows almost only background ({hits}/{total} pixels): {path}"
    # SHARP's colours follow the input photo (even with random weights), so from the photo's
    # viewpoint the preview shows it upright and unmirrored: sky top-left, the sun top-right.
    sky = mean_colour(shot, (0.03, 0.03, 0.3, 0.2))
    sun = mean_colour(shot, (0.76, 0.13, 0.82, 0.21))
    assert sky[2] > sky[0] + 40, f"no blue sky top-left: {sky} ({path})"
    assert sun[0] > 180 and sun[1] > 170 and sun[2] < sun[0] - 30, f"no yellow sun top-right: {sun} ({path})"

    # Download buttons: one per format plus metadata, each a working same-origin link.
    links = job.locator(".downloads a")
    by_format = {links.nth(i).get_attribute("data-format"): links.nth(i) for i in range(links.count())}
    assert set(by_format) == {"ply", "ply-clean", "spz", "splat", "metadata"}
    for fmt, link in by_format.items():
        response = page.request.get(link.get_attribute("href"))
        assert response.status == 200, fmt
        assert response.body(), fmt
    assert page.request.get(by_format["spz"].get_attribute("href")).body()[:2] == b"\x1f\x8b"  # gzip
    meta = page.request.get(by_format["metadata"].get_attribute("href")).json()
    assert meta.get("random_weights") in (True, False)

    # The job is remembered by this browser (id and names only).
    history = page.evaluate("JSON.parse(localStorage.getItem('mlsharp.jobs'))")
    assert history[0]["names"] == ["garden.jpg"]
    assert set(history[0]) == {"id", "names", "created"}
    assert page.page_errors == []


def test_corrupt_upload_is_explained_and_page_keeps_working(page, gateway_server, tmp_path, request):
    backend = request.node.callspec.params["gateway_server"]
    _open(page, gateway_server.url)
    _choose(page, "broken.jpg", corrupt_jpeg())
    page.click("#submit")
    error = page.locator("#form-error")
    error.wait_for(state="visible", timeout=30_000)
    text = error.text_content()
    assert text.startswith("Not an image"), text
    assert "broken.jpg" in text  # the server's own message names the file
    save_screenshot(page.screenshot(full_page=True), tmp_path, f"web-corrupt-upload-{backend}.png")
    # Nothing was submitted, and the chosen file stays so it can be removed.
    assert page.locator("article.job").count() == 0
    page.click("#clear-files")

    # Not an image at all (text with an image name): the same plain words.
    _choose(page, "notes.png", b"just some text, not pixels\n" * 20, mime="image/png")
    page.click("#submit")
    page.wait_for_function("() => document.getElementById('form-error').textContent.includes('notes.png')")
    assert page.locator("#form-error").text_content().startswith("Not an image")
    page.click("#clear-files")

    # The page still works: a good photo goes through, and the error is gone.
    _choose(page, "good.jpg", photo_like_jpeg(320, 240))
    page.click("#submit")
    _wait_job_done(page)
    assert page.locator("#form-error").is_hidden()
    assert page.locator(".job-file .file-name").first.text_content() == "good.jpg"
    assert page.locator(".job-file .downloads a").count() >= 2
    assert page.page_errors == []

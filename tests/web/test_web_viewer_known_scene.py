"""The page against a stand-in jobs API whose scene is known (see web_known_scene_gateway.py).

Checks what random-weight output cannot show: the viewer turns SHARP's OpenCV frame upright and
unmirrored and starts at the photo's viewpoint with the photo's field of view; reset view returns
there after orbiting. Also: no request leaves the page's origin, file names are shown as text (never
parsed as HTML), the language toggle and the keyboard order.
"""

from __future__ import annotations

import pytest
from conftest import save_screenshot
from web_helpers import count_non_background, mean_colour, photo_like_jpeg

pytestmark = pytest.mark.timeout(180)

HOSTILE_NAME = "<img src=x onerror=window.__pwned=1>photo.jpg"


def _guard_origin(page, origin: str) -> list[str]:
    """Abort and record every request that is not to the test server (the page must be offline-safe)."""
    foreign: list[str] = []

    def handle(route):
        url = route.request.url
        if url.startswith(origin) or url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            foreign.append(url)
            route.abort()

    page.route("**/*", handle)
    return foreign


def _is(colour, *, red=None, green=None, blue=None) -> bool:
    r, g, b = colour
    checks = {"r": (red, r), "g": (green, g), "b": (blue, b)}
    return all(want is None or (have > 150 if want else have < 110) for want, have in checks.values())


def test_viewer_orientation_fov_reset_and_safety(page, known_scene_gateway, tmp_path):
    foreign = _guard_origin(page, known_scene_gateway.url)
    page.goto(known_scene_gateway.url + "/")
    page.wait_for_selector("body[data-ready=true]")

    # Keyboard: the first tab stops are the language toggle, then the file chooser (a real button).
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "lang-toggle"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "choose-files"

    page.set_input_files(
        "#file-input", files=[{"name": HOSTILE_NAME, "mimeType": "image/jpeg", "buffer": photo_like_jpeg()}]
    )
    assert page.locator("#file-list .file-name").text_content() == HOSTILE_NAME
    page.click("#submit")
    page.wait_for_selector("#viewer[data-state=rendered]", timeout=120_000)

    # The name is shown literally wherever it appears, and nothing was parsed out of it.
    assert page.locator(".job-file .file-name").first.text_content() == HOSTILE_NAME
    assert page.locator("#history .history-names").first.text_content() == HOSTILE_NAME
    assert page.evaluate("window.__pwned") is None
    assert page.locator("main img:not(#render-preview)").count() == 0  # the page's own still only

    canvas = page.locator("#viewer canvas")
    shot = canvas.screenshot()
    save_screenshot(shot, tmp_path, "known-scene-viewer-home.png")
    # Known scene seen from the photo's viewpoint: green square top-left, red top, blue bottom.
    assert _is(mean_colour(shot, (0.03, 0.05, 0.2, 0.2)), red=False, green=True, blue=False)
    assert _is(mean_colour(shot, (0.6, 0.05, 0.95, 0.4)), red=True, green=False, blue=False)
    assert _is(mean_colour(shot, (0.05, 0.6, 0.95, 0.95)), red=False, green=False, blue=True)
    # Field of view from the intrinsics: the plane fills the frame, edges included.
    hits, total = count_non_background(shot)
    assert hits > 0.97 * total, f"only {hits}/{total} pixels show the scene"

    # Orbit away (drag) and zoom out, then reset.
    box = canvas.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx, cy)
    page.mouse.down()
    page.mouse.move(cx + 220, cy + 60, steps=8)
    page.mouse.up()
    page.mouse.wheel(0, 600)
    page.wait_for_timeout(1500)
    moved = canvas.screenshot()
    save_screenshot(moved, tmp_path, "known-scene-viewer-orbited.png")
    moved_hits, _ = count_non_background(moved)
    assert moved_hits < 0.9 * total, "orbit/zoom did not change the view"

    page.click("#viewer-reset")
    page.wait_for_timeout(1500)
    back = canvas.screenshot()
    assert _is(mean_colour(back, (0.03, 0.05, 0.2, 0.2)), red=False, green=True, blue=False)
    back_hits, _ = count_non_background(back)
    assert back_hits > 0.97 * total

    # Downloads: one real link per format asked for, plus metadata.
    links = page.locator(".job-file .downloads a")
    formats = {links.nth(i).get_attribute("data-format") for i in range(links.count())}
    assert {"ply", "spz", "metadata"} <= formats

    # Chinese labels.
    page.click("#lang-toggle")
    assert page.locator("#submit").text_content() == "生成 3D"
    assert page.evaluate("document.documentElement.lang") == "zh-CN"
    save_screenshot(page.screenshot(full_page=True), tmp_path, "known-scene-page-zh.png")
    page.click("#lang-toggle")
    assert page.locator("#submit").text_content() == "Make 3D"

    assert foreign == [], f"the page tried to reach other origins: {foreign}"
    assert page.page_errors == []


def test_api_key_kept_in_session_storage_and_sent(page, tmp_path):
    """With auth on: no key -> a plain 'API key needed' message; with the key (session storage only)
    the job runs, its events arrive through the fetch-based stream and the preview loads."""
    from conftest import start_gateway

    from gateway.service.auth import hash_key

    key = "web-test-key-0123456789"
    server = start_gateway(
        tmp_path,
        "known-scene",
        auth_enabled=True,
        api_keys=[{"name": "web", "sha256": hash_key(key), "scopes": ["predict"]}],
    )
    try:
        page.goto(server.url + "/")
        page.wait_for_selector("body[data-ready=true]")
        page.set_input_files(
            "#file-input",
            files=[{"name": "a.jpg", "mimeType": "image/jpeg", "buffer": photo_like_jpeg(320, 240)}],
        )
        page.click("#submit")
        page.wait_for_selector("#form-error:not([hidden])")
        assert page.locator("#form-error").text_content().startswith("An API key is needed")

        page.click("#access summary")
        page.fill("#api-key", key)
        assert page.evaluate("sessionStorage.getItem('mlsharp.apiKey')") == key
        page.click("#submit")
        page.wait_for_selector("article.job[data-state=completed]", timeout=60_000)
        page.wait_for_selector("#viewer[data-state=rendered]", timeout=90_000)
        assert page.locator("#form-error").is_hidden()

        # The key is in this tab's session storage and nowhere in local storage.
        stored = page.evaluate("JSON.stringify(Object.entries(localStorage))")
        assert key not in stored
        page.reload()
        page.wait_for_selector("body[data-ready=true]")
        assert page.input_value("#api-key") == key
        assert page.page_errors == []
    finally:
        server.stop()


def test_drop_and_polling_when_the_event_stream_is_unavailable(page, known_scene_gateway):
    """Photos dropped on the page are taken; if the events endpoint cannot be reached the page
    falls back to polling GET /v1/jobs/{id}."""
    page.route("**/events", lambda route: route.abort())
    page.goto(known_scene_gateway.url + "/")
    page.wait_for_selector("body[data-ready=true]")
    data = list(photo_like_jpeg(320, 240))
    page.evaluate(
        """(bytes) => {
            const transfer = new DataTransfer();
            transfer.items.add(new File([new Uint8Array(bytes)], "dropped.jpg", { type: "image/jpeg" }));
            const zone = document.getElementById("dropzone");
            const init = { bubbles: true, cancelable: true, dataTransfer: transfer };
            for (const kind of ["dragenter", "dragover", "drop"]) {
                zone.dispatchEvent(new DragEvent(kind, init));
            }
        }""",
        data,
    )
    assert page.locator("#file-list .file-name").text_content() == "dropped.jpg"
    page.click("#submit")
    page.wait_for_function(
        "() => document.querySelector('article.job .job-live')?.textContent.includes('Checking every')"
    )
    page.wait_for_selector("article.job[data-state=completed]", timeout=60_000)
    assert page.locator(".job-file .downloads a[data-format=spz]").count() == 1

"""``python -m benchmarks.page_time``: the web page's time per photo, in a real browser.

What a person waits for: open the page, tick every format (ply, clean ply, spz, splat), choose a
photo, press the button, until the job shows "succeeded" (and, separately, until the 3D preview
has drawn). Each photo is distinct, so the cache never answers. Loopback only; needs Debian's
Chromium and the ``playwright`` package (both installed by scripts/setup.sh).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks.load.client import NotLoopbackError, require_loopback, unique_jpeg

FORMATS = ("ply", "ply-clean", "spz", "splat")
DONE = (
    "article.job:is([data-state=succeeded],[data-state=failed],[data-state=partial],"
    "[data-state=cancelled],[data-state=expired])"
)
CHROMIUM = Path(os.environ.get("MLSHARP_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.page_time", description=__doc__)
    p.add_argument("--url", default="http://127.0.0.1:8080", help="gateway base URL (loopback only)")
    p.add_argument("--photos", type=int, default=3, help="photos, one after another")
    p.add_argument("--timeout-s", type=float, default=900.0)
    p.add_argument("--json", type=Path, help="also write the summary as JSON here")
    return p


def time_photos(url: str, count: int, timeout_s: float) -> list[dict[str, float]]:
    """Seconds from the click to "succeeded" and to a drawn preview, per photo."""
    from playwright.sync_api import sync_playwright

    from mlsharp_tools.perf.inputs import generated_photos

    photo = generated_photos(((640, 480, 0),))[0]
    out = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            for index in range(count):
                page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
                page.set_default_timeout(timeout_s * 1e3)
                page.goto(url + "/")
                page.wait_for_selector("body[data-ready=true]")
                for fmt in FORMATS:
                    page.check(f"#format-{fmt}")
                data = unique_jpeg(photo, int(time.time() * 1e3) + index)  # never a cache hit
                page.set_input_files(
                    "#file-input", files=[{"name": f"p{index}.jpg", "mimeType": "image/jpeg", "buffer": data}]
                )
                start = time.perf_counter()
                page.click("#submit")
                page.wait_for_selector(DONE)
                done = time.perf_counter() - start
                state = page.locator("article.job").first.get_attribute("data-state")
                if state != "succeeded":
                    raise RuntimeError(f"the job ended {state}")
                page.wait_for_selector("#viewer[data-state=rendered]")
                out.append({"job_s": round(done, 3), "preview_s": round(time.perf_counter() - start, 3)})
                page.context.close()
        finally:
            browser.close()
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        require_loopback(args.url)
    except NotLoopbackError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    runs = time_photos(args.url, args.photos, args.timeout_s)
    report = {
        "url": args.url,
        "formats": list(FORMATS),
        "runs": runs,
        "median_job_s": statistics.median(r["job_s"] for r in runs),
        "median_preview_s": statistics.median(r["preview_s"] for r in runs),
    }
    print(
        f"{len(runs)} photos, all formats: median {report['median_job_s']} s to 'succeeded', "
        f"{report['median_preview_s']} s to the drawn preview; runs {runs}"
    )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Screenshots of the page `reslab serve` shows, in headless Chromium (Debian's /usr/bin/chromium).

    python scripts/page_screenshots.py WEIGHTS IMAGE --out docs/images

Starts the server on a free loopback port, then saves serve-empty.png (the page before an upload),
serve-result.png (IMAGE's top classes and the top-1 map), serve-second-class.png (the second class
clicked) and serve-error.png (a text file uploaded). Needs the serve extra and playwright.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

from reslab.serve.app import ServeConfig
from reslab.serve.bench import free_port, start_server, stop_server, wait_ready

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights")
    parser.add_argument("image")
    parser.add_argument("--out", default="docs/images")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp())
    port = free_port()
    proc = start_server(ServeConfig(weights=args.weights, workers=1), port, tmp / "server.log")
    try:
        wait_ready(port, proc, tmp / "server.log", timeout_s=300)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page(viewport={"width": 820, "height": 760})
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_function("document.getElementById('model').textContent.includes('classes')")
            page.locator("body").screenshot(path=str(out / "serve-empty.png"))
            page.set_input_files("#file", args.image)
            page.wait_for_function("document.getElementById('overlay').naturalWidth > 0")
            page.locator("body").screenshot(path=str(out / "serve-result.png"))
            second = page.locator("#results button").nth(1)
            name = second.locator(".label").text_content() or ""
            second.click()
            page.wait_for_function(f"document.getElementById('cam-caption').textContent.includes({name!r})")
            page.locator("body").screenshot(path=str(out / "serve-second-class.png"))
            (tmp / "notes.txt").write_text("not a picture\n")
            page.set_input_files("#file", str(tmp / "notes.txt"))
            page.locator("#error details").wait_for()
            page.locator("#error summary").click()  # the server's own words, opened
            page.locator("body").screenshot(path=str(out / "serve-error.png"))
            browser.close()
    finally:
        stop_server(proc)
    print(f"saved serve-empty.png, serve-result.png, serve-second-class.png, serve-error.png in {out}")


if __name__ == "__main__":
    main()

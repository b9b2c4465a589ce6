"""Screenshot of the `nerkit serve` page for the README: docs/serve.png.

    python docs/serve_screenshot.py [MODEL_DIR] [--out docs/serve.png]

Starts the server on a free 127.0.0.1 port, types a sentence in Debian's headless Chromium (apt-get install
chromium; pip install playwright; no browser download), presses the button and saves the page.
"""

from __future__ import annotations

import argparse
import socket
from pathlib import Path

from nerkit.serve.process import start_server, stop_server

REPO = Path(__file__).resolve().parents[1]
TEXT = ("EU rejects German call to boycott British lamb. Peter Blackburn reported from Brussels for "
        "Reuters, and the European Commission said Germany's Werner Zwingmann would meet officials in Bonn.")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", nargs="?", default=str(REPO / "runs" / "conll03-minilm" / "model"))
    ap.add_argument("--out", default=str(REPO / "docs" / "serve.png"))
    ap.add_argument("--text", default=TEXT)
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = start_server(args.model, port)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=ARGS)
            page = browser.new_page(viewport={"width": 980, "height": 720}, device_scale_factor=1)
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_selector("#legend .legend-item")
            page.fill("#text", args.text)
            page.click("#run")
            page.wait_for_selector("#result mark.entity")
            page.wait_for_function("document.querySelector('#status').textContent.includes('entit')")
            page.screenshot(path=args.out, full_page=True)
            print(f"{args.out}: {page.locator('#result mark.entity').count()} entities highlighted")
            browser.close()
    finally:
        stop_server(proc)


if __name__ == "__main__":
    main()

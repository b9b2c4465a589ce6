"""End to end: `nerkit serve` on a loopback port with the tiny model, driven by Debian's headless Chromium.

Needs the apt package `chromium` and the pip package `playwright` (its own browser download is never
used: the test launches /usr/bin/chromium). Skipped, with the reason, when either is missing.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import httpx
import pytest

from nerkit.serve.process import start_server, stop_server

pytestmark = pytest.mark.e2e

CHROMIUM = os.environ.get("NERKIT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]
SENTENCE = "John Smith works for Reuters in Paris ."


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"{CHROMIUM} not found: apt-get install chromium (or set NERKIT_CHROMIUM)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the python package playwright is not installed (pip install playwright)")
    with sync_playwright() as pw:
        # launch() starts Chromium on a new, empty temporary profile (its own --user-data-dir) each time
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def server(trained_model_dir):
    port = free_port()
    proc = start_server(trained_model_dir, port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_server(proc)


def test_page_highlights_entities(browser, server, tmp_path):
    expected = httpx.post(f"{server}/v1/entities", json={"text": SENTENCE}).json()["entities"]
    assert expected, "the tiny model finds entities in this sentence through the API"
    page = browser.new_page(viewport={"width": 1000, "height": 640})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url}"))
    page.goto(server + "/")
    page.wait_for_selector("#legend .legend-item")
    legend = page.locator("#legend .legend-item").all_inner_texts()
    assert sorted(x.strip() for x in legend) == ["LOC", "MISC", "ORG", "PER"]

    page.fill("#text", SENTENCE)
    page.click("#run")
    page.wait_for_selector("#result mark.entity")
    marks = page.locator("#result mark.entity")
    assert marks.count() == len(expected)
    for i, e in enumerate(expected):
        mark = marks.nth(i)
        assert mark.get_attribute("data-type") == e["type"]
        assert mark.locator(".label").inner_text().strip().upper() == e["type"]
        assert mark.inner_text().startswith(e["text"])
        bg = mark.evaluate("m => getComputedStyle(m).backgroundColor")
        assert bg not in ("", "rgba(0, 0, 0, 0)", "transparent"), bg  # coloured by type
    # the inline view reproduces the text, entity labels aside
    shown = page.evaluate("""() => { const r = document.querySelector('#result').cloneNode(true);
        r.querySelectorAll('.label').forEach(l => l.remove()); return r.textContent; }""")
    assert shown == SENTENCE
    rows = page.locator("#spans tbody tr")
    assert rows.count() == len(expected)
    assert rows.nth(0).locator(".span-text").inner_text() == expected[0]["text"]
    assert "entit" in page.inner_text("#status")
    assert not errors, errors
    shot = Path(os.environ.get("NERKIT_SCREENSHOT", tmp_path / "serve.png"))
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    page.close()


def test_page_shows_a_limit_error_and_recovers(browser, trained_model_dir):
    port = free_port()
    proc = start_server(trained_model_dir, port, "--max-chars", "30")
    try:
        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{port}/")
        page.fill("#text", "x" * 31)
        page.click("#run")
        page.wait_for_selector("#status.error")
        assert "max_chars" in page.inner_text("#status")
        page.fill("#text", "Mary Chen lives in Lima .")
        page.click("#run")
        page.wait_for_function("document.querySelector('#status').textContent.includes('entit')")
        assert page.locator("#result mark.entity").count() >= 1
        assert page.locator("#status.error").count() == 0
        page.close()
    finally:
        stop_server(proc)


def test_api_docs_render_offline(browser, server):
    """Swagger UI comes from the app (no CDN): it renders the operations with no failed request."""
    page = browser.new_page()
    failed: list[str] = []
    page.on("requestfailed", lambda r: failed.append(r.url))
    page.goto(server + "/docs")
    page.wait_for_selector('.opblock-summary-path[data-path="/v1/entities"]', timeout=20_000)
    assert page.locator(".opblock").count() >= 4
    assert not failed, failed
    assert all(u.startswith(server) for u in page.evaluate("performance.getEntriesByType('resource')"
                                                           ".map(e => e.name)"))
    page.close()


"""The web page in a real headless Chromium: type a message, click Classify, read the result.

Uses Debian's /usr/bin/chromium through Playwright (no browser download). A missing Chromium
is a failure, not a skip: CI installs it (apt-get install -y chromium). The screenshot is kept
at $GPTCLS_TEST_ARTIFACTS/web-page.png, or in pytest's tmp_path; its path is printed.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import uvicorn_server

from gptcls.classifier.classifier import Classifier
from gptcls.serving.server import create_app

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-extensions",
                 "--no-first-run", "--disable-sync"]


@pytest.fixture(scope="module")
def server_url(tiny_run) -> Iterator[str]:
    with uvicorn_server(create_app(tiny_run, device="cpu")) as url:
        yield url


def _artifact(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("GPTCLS_TEST_ARTIFACTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder / "web-page.png"


def test_page_classifies_typed_messages(server_url, tiny_run, tmp_path):
    assert CHROMIUM.is_file() or shutil.which("chromium"), (
        "Chromium is missing: install Debian's package with `apt-get install -y chromium` "
        "(the browser test never downloads a browser)")
    from playwright.sync_api import sync_playwright

    messages = ["WINNER!! You have won a 1000 cash prize, call 09061701461 now",
                "Are we still on for lunch tomorrow?"]
    expected = Classifier.load(tiny_run, device="cpu").predict(messages)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM if CHROMIUM.is_file()
                                                        else shutil.which("chromium")),
                                    headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 900, "height": 900})
            page.goto(server_url + "/")
            page.wait_for_selector("#metrics table")  # the model's metrics arrived
            page.fill("#messages", "\n".join(messages))
            page.click("#classify")
            page.wait_for_selector("#results .result >> nth=1")
            labels = page.locator("#results .result .label").all_inner_texts()
            widths = page.locator("#results .result .bar").evaluate_all(
                "bars => bars.map(b => parseFloat(b.style.width))")
            texts = page.locator("#results .result .text").all_inner_texts()
            metrics = page.inner_text("#metrics")
            shot = _artifact(tmp_path)
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    print(f"screenshot: {shot}")
    assert texts == messages
    assert labels == expected
    assert all(50.0 <= w <= 100.0 for w in widths)  # the winning label's probability bar
    assert "test accuracy" in metrics
    assert shot.stat().st_size > 10_000

"""The web page of a server started with an API key, in a real headless Chromium: it asks for
the key, then loads the model and classifies as without one (see test_browser.py)."""

from __future__ import annotations

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
KEY = "browser-key"


@pytest.fixture(scope="module")
def keyed_url(tiny_run) -> Iterator[str]:
    with uvicorn_server(create_app(tiny_run, device="cpu", api_key=KEY)) as url:
        yield url


def test_page_asks_for_the_key_then_classifies(keyed_url, tiny_run):
    chromium = CHROMIUM if CHROMIUM.is_file() else shutil.which("chromium")
    assert chromium, "Chromium is missing: apt-get install -y chromium"
    from playwright.sync_api import sync_playwright

    messages = ["WINNER!! You have won a 1000 cash prize, call 09061701461 now",
                "Are we still on for lunch tomorrow?"]
    expected = Classifier.load(tiny_run, device="cpu").predict(messages)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium), headless=True,
                                    args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(keyed_url + "/")
            page.wait_for_selector("#auth:not([hidden])")  # /v1/model answered 401
            error_before = page.inner_text("#error")
            page.fill("#api-key", "wrong")
            page.click("#use-key")
            page.wait_for_selector("#auth:not([hidden])")
            page.fill("#api-key", KEY)
            page.click("#use-key")
            page.wait_for_selector("#metrics table")  # the model's metrics arrived
            page.fill("#messages", "\n".join(messages))
            page.click("#classify")
            page.wait_for_selector("#results .result >> nth=1")
            labels = page.locator("#results .result .label").all_inner_texts()
            auth_hidden = page.locator("#auth").is_hidden()
        finally:
            browser.close()
    assert "API key" in error_before
    assert labels == expected and auth_hidden

"""Fixtures of the dashboard's browser test: the batchbeam binary, a scratch folder, the
screenshots folder and a headless Debian chromium (no browser download, a fresh profile)."""

import os
import pathlib
import tempfile

import pytest
from playwright.sync_api import sync_playwright

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def batchbeam():
    path = pathlib.Path(os.environ["BATCHBEAM_BIN"])
    assert path.is_file(), f"no batchbeam binary at {path}"
    return path


@pytest.fixture(scope="session")
def screenshots():
    path = pathlib.Path(os.environ["SCREENSHOTS"])
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture()
def scratch():
    with tempfile.TemporaryDirectory(prefix="batchbeam-browser-") as d:
        yield pathlib.Path(d)


@pytest.fixture(scope="session")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


class PageWatch:
    """What went wrong in a page: console errors, uncaught exceptions, failed requests and
    HTTP errors other than the expected ones."""

    def __init__(self, page, expected_statuses=()):
        self.problems = []
        self.expected = list(expected_statuses)
        page.on("console", self._console)
        page.on("pageerror", lambda e: self.problems.append(f"uncaught: {e}"))
        page.on("requestfailed", self._failed)
        page.on("response", self._response)

    def _console(self, msg):
        if msg.type != "error":
            return
        # Chromium logs every HTTP error answer as a console error; those are judged in
        # _response against the expected ones.
        if "Failed to load resource: the server responded with a status of" in msg.text:
            return
        self.problems.append(f"console error: {msg.text}")

    def _failed(self, request):
        self.problems.append(f"request failed: {request.method} {request.url}: {request.failure}")

    def _response(self, response):
        if response.status < 400:
            return
        for i, (status, path) in enumerate(self.expected):
            if response.status == status and path in response.url:
                del self.expected[i]
                return
        self.problems.append(f"HTTP {response.status}: {response.request.method} {response.url}")

    def check(self):
        assert not self.problems, "\n".join(self.problems)

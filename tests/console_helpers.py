"""Helpers for the console tests (issue 15): the console app in this process (an
``HTTPServerThread`` on a free port) or as ``dbos console`` (a real process, by way
of handover_helpers.Proc), and Chromium through Playwright, which FAILS (never
skips) saying what is missing."""

from __future__ import annotations

import logging
import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator, Optional

import pytest
from conftest import eventually
from handover_helpers import BIN, Proc, free_port

from dbos._api.console import Source, build_console
from dbos._api.http_thread import HTTPServerThread

CHROMIUM = "/usr/bin/chromium"
# As the machine notes start it: no sandbox as root, and no background connections
# (the closed network refuses them, many at a time).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
DOCS_IMAGES = Path(__file__).resolve().parent.parent / "docs" / "images"


class InProcessConsole:
    """``build_console`` served on 127.0.0.1 (or ``host``) at a free port, stopped by ``close()``."""

    def __init__(self, db_url: str, *, host: str = "127.0.0.1", token: Optional[str] = None,
                 redis_url: Optional[str] = None, dead_after: float = 3.0) -> None:
        self.source = Source(db_url, "dbos", redis_url, dead_after)
        self.app = build_console(self.source, host=host, token=token)
        self.server = HTTPServerThread(self.app, host, 0, "console (test)", logging.getLogger("dbos.test"))
        self.server.start()
        self.url = f"http://127.0.0.1:{self.server.port}"

    def close(self) -> None:
        self.server.stop()
        self.source.close()


def start_console_process(tmp: Path, db_url: str, *, host: str = "127.0.0.1", token: Optional[str] = None,
                          redis_url: Optional[str] = None, port: Optional[int] = None) -> tuple[Proc, str]:
    """``dbos console`` as a real process; returns it and its base URL once it answers."""
    port = port or free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DBOS")}
    if token is not None:
        env["DBOS_CONSOLE_TOKEN"] = token
    argv = [str(BIN / "dbos"), "console", "--db-url", db_url, "--host", host, "--port", str(port)]
    if redis_url:
        argv += ["--redis-url", redis_url]
    proc = Proc(f"console-{port}", argv, env, tmp / f"console-{port}.log")
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if not proc.alive():
            pytest.fail(f"dbos console exited with {proc.popen.returncode}:\n{proc.log()}", pytrace=False)
        try:
            urllib.request.urlopen(url + "/favicon.ico", timeout=2).close()
            return True
        except urllib.error.HTTPError:
            return True  # it answers (401 under a token)
        except OSError:
            return False

    eventually(up, timeout=60, interval=0.1, what="(dbos console answers)")
    return proc, url


def require_browser() -> Any:
    """Playwright's sync API, or a FAILURE naming what to install."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the console's browser tests need Playwright for Python: pip install -e '.[test]' "
                    "(or pip install playwright)", pytrace=False)
    if not (os.path.exists(CHROMIUM) and os.access(CHROMIUM, os.X_OK)) and shutil.which("chromium") is None:
        pytest.fail(f"the console's browser tests need Debian's Chromium at {CHROMIUM}: apt-get install -y chromium "
                    "(scripts/test installs it when run as root)", pytrace=False)
    return sync_playwright


def browser_session() -> Iterator[Any]:
    """One headless Chromium for a test module (a generator for a module fixture)."""
    sync_playwright = require_browser()
    exe = CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def expect() -> Any:
    """Playwright's ``expect`` (after ``require_browser``)."""
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect


def screenshot(locator: Any, tmp: Path, name: str) -> Path:
    """A PNG of ``locator`` in ``tmp``; with DBOS_CONSOLE_SCREENSHOTS=1, also docs/images/``name``
    (how the README's pictures are made)."""
    path = tmp / name
    locator.screenshot(path=str(path))
    if os.environ.get("DBOS_CONSOLE_SCREENSHOTS") == "1":
        DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS_IMAGES / name)
    return path

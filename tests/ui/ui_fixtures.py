"""Fixtures for the UI's tests (imported by its test modules: a conftest.py here would shadow
tests/conftest.py): the demo's store, the UI served by uvicorn on a thread, and headless Chromium
(Debian's package) driven by Playwright. Without the browser the browser tests skip, except under
CI ($CI set), where they fail: `.ci/run` installs it."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from ui_cli import unitcost_cli

__all__ = ["browser", "demo_copy", "demo_store", "live_ui", "page"]

CHROMIUM = os.environ.get("UNITCOST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture(scope="session")
def demo_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The store `unitcost demo` writes (built once; tests that write copy it first)."""
    path = tmp_path_factory.mktemp("ui-demo") / "unitcost-demo.db"
    unitcost_cli("demo", db=path)
    return path


@pytest.fixture
def demo_copy(demo_store: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "demo-copy.db"
    shutil.copyfile(demo_store, copy)
    return copy


class LiveServer:
    """The UI app under uvicorn on a thread, on a port the OS picked (bound here: no race)."""

    def __init__(self, db: Path, **options: Any) -> None:
        import uvicorn

        from unitcost.ui import create_app

        self.app = create_app(db, poll_interval=0.2, **options)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        host, port = self.sock.getsockname()
        self.url = f"http://{host}:{port}"
        self.server = uvicorn.Server(
            uvicorn.Config(self.app, log_level="warning", lifespan="off", timeout_graceful_shutdown=2)
        )
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self.app.state.stopping = True  # live-update streams end on their next tick
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()
        assert not self.thread.is_alive(), "uvicorn did not stop"


@pytest.fixture
def live_ui() -> Iterator[Callable[..., LiveServer]]:
    servers: list[LiveServer] = []

    def start(db: Path, **options: Any) -> LiveServer:
        server = LiveServer(db, **options)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("playwright is required under CI (pip install -e '.[dev]')")
        pytest.skip("playwright is not installed (pip install -e '.[dev]')")
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is required under CI (.ci/run installs Debian's chromium package)")
        pytest.skip(f"{CHROMIUM} is not installed (Debian: apt-get install chromium)")
    # One browser per test module, closed when the module ends: Playwright's sync API runs an asyncio
    # loop on this thread while it is open, so a browser kept to the end of the session made every
    # later test's asyncio.run() fail ("cannot be called from a running event loop") whenever pytest
    # ran other folders after tests/ui. Each module star-imports these fixtures, so each module's
    # browser is a fixture of its own; module scope closes one before the next one starts.
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    yield context.new_page()
    context.close()

"""Serving the UI with uvicorn: loopback by default, a token required on any other address."""

from __future__ import annotations

import socket
import threading
import webbrowser
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import uvicorn

from unitcost.exporters.receiver import is_loopback
from unitcost.store.backend import is_url, redact_url

from .app import create_app

__all__ = ["check_ui_bind", "serve"]


def check_ui_bind(host: str, token: str | None) -> None:
    """Refuse to show the store beyond this machine without a token. Raises ValueError."""
    if not is_loopback(host) and not token:
        raise ValueError(
            f"listening on {host} would show your store to anyone who can reach it: pass --token "
            "(or set UNITCOST_UI_TOKEN); open the URL printed at start, which carries it"
        )


def serve(
    db_path: str | Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    token: str | None = None,
    open_browser: bool = False,
    announce: Callable[[str], None] = print,
    prices: Sequence[str | Path] = (),
) -> None:
    """Serve until interrupted (Ctrl-C or SIGTERM)."""
    check_ui_bind(host, token)
    app = create_app(db_path, token=token, warm=True, prices=prices)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))  # bound here, so the URL printed has the real port (also for --port 0)
    bound_port = sock.getsockname()[1]
    shown_host = f"[{host}]" if family == socket.AF_INET6 else host
    url = f"http://{shown_host}:{bound_port}/" + (f"?token={token}" if token else "")
    shown = redact_url(str(db_path)) if is_url(db_path) else db_path
    announce(f"unitcost ui: {url} (reading {shown}; Ctrl-C stops)")
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=2))
    if open_browser:
        threading.Timer(0.5, lambda: webbrowser.open(url)).start()
    original_exit = server.handle_exit

    def handle_exit(sig: int, frame: Any) -> None:
        app.state.stopping = True  # live-update streams end on their next tick
        original_exit(sig, frame)

    server.handle_exit = handle_exit  # type: ignore[method-assign]
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()

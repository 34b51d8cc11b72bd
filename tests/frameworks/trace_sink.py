"""A local HTTP sink for a framework's own trace upload (the OpenAI Agents SDK posts its traces to
OpenAI, and retries a remote host when it cannot): tests point the upload here and read what came."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any


class TraceSink:
    """``with TraceSink() as sink``: ``sink.url`` takes POSTs; ``sink.items`` holds their JSON ``data``."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                sink.items.extend(json.loads(body).get("data", []))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}/v1/traces/ingest"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> TraceSink:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

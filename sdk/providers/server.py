"""Where a provider SDK client sends its requests (``server.address``, ``server.port``)."""

from __future__ import annotations

from typing import Any

__all__ = ["server_of"]

# The last base URL seen and its (host, port): one client makes call after call, so its URL object's
# host and port (parsed properties) are read once. Kept by identity, so a new URL is always read.
_last: tuple[Any, tuple[str | None, int | None]] = (None, (None, None))


def server_of(resource: Any) -> tuple[str | None, int | None]:
    """(host, port) of the client behind an SDK resource (``client.chat.completions``...)."""
    global _last
    try:
        url = resource._client.base_url
    except AttributeError:
        return None, None
    last_url, server = _last
    if url is not last_url:
        server = (url.host, url.port)
        _last = (url, server)
    return server

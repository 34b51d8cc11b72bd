"""Stream calls still open, so that shutting unitcost down records them instead of losing them.

A watched stream ends its call when it is exhausted, closed, left through ``with`` or collected
(`unitcost.record.llm`). A stream the program still holds when it exits (a global, a cache, a
stream read on a thread that never finished it) does none of these before unitcost's exporters
stop: its span would end after the store had shut down, and the task would show $0 without being
marked unpriced. So every watched stream is listed here while it is open, and `end_open_streams`
(called by `unitcost.shutdown()`, hence at interpreter exit, before the span processors flush) ends
each one as incomplete, with the tokens seen so far and the rest estimated, exactly as when a
program abandons a stream.

The list holds weak references only: it never keeps a stream (or its HTTP connection) alive.
The caller's thread adds and removes entries (one dict operation each); nothing here takes a lock,
so a child of ``fork`` inherits nothing it could hang on. A child of ``fork`` does inherit copies of
the parent's open streams: their calls are the parent's, so the child disowns them at once (it
never ends them, at shutdown or when it collects them), and the parent records each call once.
"""

from __future__ import annotations

import weakref
from typing import Any, Protocol

from ..common.errors import internal_error
from ..common.forks import after_fork_in_child

__all__ = ["OpenStream", "end_open_streams", "forget", "open_count", "track"]


class OpenStream(Protocol):
    """What is listed: a stream whose call is not ended yet."""

    def end_at_shutdown(self) -> Any:
        """End the call now, as incomplete, with what was seen (and the rest estimated). Returns the
        provider SDK's own span of the call, ended now, when unitcost's processors must be given it
        (`unitcost.pipeline.adopt`), else None."""

    def disown(self) -> None:
        """Never end the call in this process (a forked child's copy of its parent's stream)."""


# Keyed by id(): a stream proxy hashes as the object it wraps. A dead entry removes itself, and the
# removal checks that the entry is still the dead one (an id can be reused only after that).
_open: weakref.WeakValueDictionary[int, Any] = weakref.WeakValueDictionary()


def track(stream: OpenStream) -> None:
    """List ``stream`` until `forget` (its call ended) or until it is garbage-collected."""
    _open[id(stream)] = stream


def forget(stream: OpenStream) -> None:
    _open.pop(id(stream), None)


def open_count() -> int:
    return len(_open)


def _listed() -> list[Any]:
    while True:
        try:
            return list(_open.values())
        except RuntimeError:  # another thread opened or ended a stream during the copy: copy again
            continue


def end_open_streams() -> list[Any]:
    """End the call of every stream still open. Returns the spans unitcost's processors must be
    given for those calls to be stored: the provider SDK's own spans of the calls (anthropic 2.x
    traces itself), copied as if ended now, which the SDK itself ends only when the stream is read.

    Called before the span processors flush, so the ended calls reach the store and exporters. The
    stream objects themselves are left as they are: the program may still read them (their later
    chunks pass through unrecorded), since `unitcost.shutdown()` may come before the program ends.
    """
    provider_spans = []
    for stream in _listed():
        try:
            span = stream.end_at_shutdown()
        except Exception as exc:  # noqa: BLE001 - one stream's failure must not cost the others
            internal_error("ending an open stream at shutdown", exc)
            continue
        if span is not None:
            provider_spans.append(span)
    return provider_spans


def _disown_after_fork() -> None:
    streams = _listed()
    _open.clear()
    for stream in streams:
        try:
            stream.disown()
        except Exception as exc:  # noqa: BLE001
            internal_error("disowning a parent's stream after fork", exc)


after_fork_in_child(_disown_after_fork)

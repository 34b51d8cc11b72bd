"""``configure(flush_on_signals=True)``: write what was recorded before SIGTERM or SIGHUP ends the program.

unitcost installs no signal handler unless asked: a handler changes how the host program behaves,
and the program (or its framework: gunicorn, celery, uvicorn) may have its own. A normal exit, an
unhandled exception and Ctrl-C (SIGINT raises KeyboardInterrupt) already flush at interpreter exit;
SIGTERM and SIGHUP end the process without running ``atexit``, so the last half second of spans
would be lost.

When asked, the handler flushes on a helper thread for at most ``timeout`` seconds (the signal
interrupts the main thread wherever it is, possibly holding a lock the flush needs: waiting on it
there would deadlock), then does what was there before: calls the previous Python handler, or, for
the default action, restores it and sends the signal again, so the process ends as it would have.
A signal the program ignores (SIG_IGN) is left alone.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from typing import Any

from ..common.errors import ConfigurationError

__all__ = ["install", "uninstall"]

_SIGNALS = ("SIGTERM", "SIGHUP")
_previous: dict[int, Any] = {}  # signal -> the handler unitcost replaced
_flush: Callable[[], Any] | None = None
_timeout = 5.0


def install(flush: Callable[[], Any], timeout: float = 5.0) -> None:
    global _flush, _timeout
    if threading.current_thread() is not threading.main_thread():
        raise ConfigurationError(
            "flush_on_signals=True needs configure() to be called from the main thread (Python only lets "
            "the main thread install signal handlers)"
        )
    _flush, _timeout = flush, timeout
    for name in _SIGNALS:
        signum = getattr(signal, name, None)
        if signum is None or signum in _previous:
            continue
        previous = signal.getsignal(signum)
        if previous is signal.SIG_IGN:
            continue
        signal.signal(signum, _on_signal)
        _previous[signum] = previous


def uninstall() -> None:
    """Put back the handlers unitcost replaced (only where its own is still the one installed)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for signum, previous in list(_previous.items()):
        if signal.getsignal(signum) is _on_signal:
            signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
        del _previous[signum]


def _on_signal(signum: int, frame: Any) -> None:
    flush = _flush
    if flush is not None:
        helper = threading.Thread(target=flush, name="unitcost-flush-on-signal", daemon=True)
        helper.start()
        helper.join(_timeout)
    previous = _previous.get(signum, signal.SIG_DFL)
    if callable(previous):
        previous(signum, frame)
        return
    _previous.pop(signum, None)
    signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
    os.kill(os.getpid(), signum)

"""Living through ``os.fork()``: what a child process must re-make, and whether this is one.

A child of ``fork`` gets a copy of every lock in the state it had at that instant, including locks
held by threads that do not exist in the child (the store writer, mid-batch). Such a lock is never
released, and the child hangs the first time it needs it (at the latest at exit). So each object
that owns a lock re-makes it in the child, with `after_fork_in_child`.

A child of ``fork`` or of a ``multiprocessing`` pool usually ends without running ``atexit``
(``multiprocessing`` ends its workers with ``os._exit``, and ``Pool.terminate()`` with SIGTERM), so the
store writer writes each finished task before the task returns there (see
`unitcost.exporters.store.StoreSpanProcessor`); `in_child_process` says when.

Example::

    >>> class Counter:
    ...     def __init__(self):
    ...         self._lock = threading.Lock()
    ...         after_fork_in_child(self._reinit)
    ...     def _reinit(self):
    ...         self._lock = threading.Lock()
"""

from __future__ import annotations

import os
import sys
import weakref
from collections.abc import Callable
from typing import Any

__all__ = ["after_fork_in_child", "around_fork", "in_child_process"]

_forked = False


def _mark_forked() -> None:
    global _forked
    _forked = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_mark_forked)


def after_fork_in_child(callback: Callable[[], Any]) -> None:
    """Call ``callback`` in every child forked from now on, before the child runs anything else."""
    around_fork(after_in_child=callback)


def around_fork(
    before: Callable[[], Any] | None = None,
    after_in_parent: Callable[[], Any] | None = None,
    after_in_child: Callable[[], Any] | None = None,
) -> None:
    """``os.register_at_fork`` with bound methods held weakly (their object may go away; the hook
    then does nothing), as OpenTelemetry's batch processor does: a hook cannot be unregistered."""
    if not hasattr(os, "register_at_fork"):
        return
    given = {"before": before, "after_in_parent": after_in_parent, "after_in_child": after_in_child}
    hooks = {name: _weak(callback) for name, callback in given.items() if callback is not None}
    os.register_at_fork(**hooks)


def _weak(callback: Callable[[], Any]) -> Callable[[], Any]:
    if not hasattr(callback, "__self__"):
        return callback
    method = weakref.WeakMethod(callback)  # type: ignore[arg-type]

    def call() -> None:
        bound = method()
        if bound is not None:
            bound()

    return call


def in_child_process() -> bool:
    """True in a process made by ``os.fork()`` (any start method's worker included) or by
    ``multiprocessing`` (``spawn`` included): one that may end without running ``atexit``."""
    if _forked:
        return True
    process = sys.modules.get("multiprocessing.process")  # not imported: not a multiprocessing child
    if process is None:
        return False
    # (`_inheriting`: a spawn or forkserver worker importing the program's main module, before
    # multiprocessing says whose child it is; multiprocessing's own flag for that moment)
    return process.parent_process() is not None or bool(getattr(process.current_process(), "_inheriting", False))

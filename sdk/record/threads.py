"""Work handed to a ``concurrent.futures.ThreadPoolExecutor`` stays in the task that handed it over.

Context variables (unitcost's current task, OpenTelemetry's current span) follow asyncio tasks,
``asyncio.to_thread`` and ``contextvars.copy_context().run``, but not ``executor.submit``: a pool
thread runs each work item in the pool thread's own context, so an LLM call made there would belong
to no task. While unitcost is instrumented, ``ThreadPoolExecutor.submit`` (which ``map`` and
``loop.run_in_executor`` go through) is wrapped, as OpenTelemetry's threading instrumentation does it:
the submitter's task and span are set around the work item in the pool thread, then reset.

Only those two travel, and only when the submitter is inside a unitcost task; the pool thread's
other context variables are left as they are, so other libraries see what they saw before.
`uninstrument()` puts the original ``submit`` back.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from opentelemetry import context as otel_context

from .context import current_run

__all__ = ["patch"]

_original_submit: Any = None


def _in_context(run: Any, otel: Any, fn: Any) -> Any:
    def run_in_submitters_task(*args: Any, **kwargs: Any) -> Any:
        otel_token = otel_context.attach(otel)
        run_token = current_run.set(run)
        try:
            return fn(*args, **kwargs)
        finally:
            current_run.reset(run_token)
            otel_context.detach(otel_token)

    return run_in_submitters_task


def _submit(self: Any, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
    run = current_run.get()
    if run is not None:
        fn = _in_context(run, otel_context.get_current(), fn)
    return _original_submit(self, fn, *args, **kwargs)


def patch() -> None:
    """Wrap ``ThreadPoolExecutor.submit`` (idempotent)."""
    global _original_submit
    if _original_submit is None:
        _original_submit = ThreadPoolExecutor.__dict__["submit"]
        ThreadPoolExecutor.submit = _submit  # type: ignore[method-assign]


def unpatch() -> None:
    global _original_submit
    if _original_submit is not None:
        ThreadPoolExecutor.submit = _original_submit  # type: ignore[method-assign]
        _original_submit = None


"""Other GenAI instrumentations in the same process: one call, one record, in the right task.

pydantic-ai (``instrument=True``), Logfire, OpenLLMetry and the official openai-v2 instrumentation
each make a GenAI span (``chat gpt-4o``, ``openai.chat``...) for a request unitcost also records.
The store reads such spans as LLM calls (`unitcost.store.foreign_spans`), so it must know which of
them unitcost's own span already counts. `CoexistProcessor.on_start` sees every span start on the
caller's thread, inside the context the span starts in:

- A foreign LLM span whose parent is unitcost's LLM span (unitcost patched last: while an SDK method
  runs, its call is the current span, see `unitcost.record.llm.run_call`) is the same request.
- unitcost's LLM span whose parent is a foreign LLM span (unitcost patched first) covers its parent.
- The same for tools: an ``execute_tool`` span around (or inside) a ``@unitcost.tool`` span.

Such a foreign span gets ``unitcost.call.recorded_by`` (the id of unitcost's span for the request)
while it is live: every exporter still receives it, and the store, the enricher and ``unitcost
serve`` read it as no call of its own (`unitcost.store.foreign_spans`). A foreign span of a call
unitcost does not see (a provider it does not patch) stays a call of its own.

Every foreign span also gets the ``unitcost.task.id`` of the span it starts under (unitcost's task,
step, tool or call, or a foreign span that got one in turn), so a foreign ``invoke_agent`` span
between a task and its calls does not cut them off from the task.
"""

from __future__ import annotations

import threading
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import SpanProcessor

from ..common import attributes as A
from ..common.errors import internal_error
from ..exporters.store import attributes_of
from ..store.foreign_spans import foreign_span_type

__all__ = ["CoexistProcessor", "ensure_coexisting"]

# The anthropic SDK's own spans are adopted instead (unitcost.pipeline.adopt).
_ADOPTED_SCOPE_PREFIX = "com.anthropic.sdk.python"


# A span of one of these kinds directly inside another instrumentation's span of the same kind (or
# the other way round) records the same thing: an LLM request, or one run of a tool (a function
# both decorated with @unitcost.tool and run by a framework that traces its tools).
_SAME_REQUEST = ("llm", "tool")


def _attributes(span: Any) -> Any:
    return getattr(span, "attributes", None) or {}


def _is_foreign(kind: str, attrs: Any, span: Any) -> bool:
    """Is this another instrumentation's span of this kind ("llm" or "tool")?"""
    if A.SPAN_TYPE in attrs or foreign_span_type(attrs) != kind:
        return False
    scope = getattr(span, "instrumentation_scope", None)
    return scope is None or not scope.name.startswith(_ADOPTED_SCOPE_PREFIX)


def _span_id(span: Any) -> str:
    return format(span.get_span_context().span_id, "016x")


class CoexistProcessor(SpanProcessor):
    """Marks foreign LLM spans that duplicate unitcost's, and gives foreign spans their task."""

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        try:
            attrs = attributes_of(span)
            own = attrs.get(A.SPAN_TYPE)
            if own is not None and own not in _SAME_REQUEST:
                return  # unitcost's task, step or session: nothing to mark (the commonest start)
            parent = trace.get_current_span(parent_context)
            if not parent.is_recording():
                parent_attrs: Any = {}
            else:
                parent_attrs = _attributes(parent)
            if own in _SAME_REQUEST:
                if parent_attrs and _is_foreign(own, parent_attrs, parent):
                    parent.set_attribute(A.CALL_RECORDED_BY, _span_id(span))
                return
            if own is not None:
                return
            task_id = parent_attrs.get(A.TASK_ID) if parent_attrs else None
            if task_id is not None and A.TASK_ID not in attrs:
                span.set_attribute(A.TASK_ID, task_id)
            above = parent_attrs.get(A.SPAN_TYPE) if parent_attrs else None
            if above in _SAME_REQUEST and _is_foreign(str(above), attrs, span):
                span.set_attribute(A.CALL_RECORDED_BY, _span_id(parent))
        except Exception as exc:  # noqa: BLE001 - the other instrumentation must still get its span
            internal_error("another instrumentation's span", exc)


_installed: set[int] = set()
_lock = threading.Lock()


def ensure_coexisting(provider: Any) -> None:
    """Add a `CoexistProcessor` to this TracerProvider, once, ahead of the store's processor."""
    with _lock:
        if id(provider) in _installed:
            return
        provider.add_span_processor(CoexistProcessor())
        _installed.add(id(provider))

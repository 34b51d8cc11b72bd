"""The OpenAI Agents SDK (``openai-agents``, import name ``agents``): its runs as steps and tools.

The SDK traces every run through its tracing processors. `install` appends unitcost's (with
``agents.add_trace_processor``, so the processors the user has, the SDK's upload to OpenAI among
them, keep working as the user set them), and its start and end hooks, which the SDK calls in the
context of the work they bracket, open and close unitcost spans:

- an agent run (``AgentSpanData``) is a step named as the agent,
- a function tool call (``FunctionSpanData``) a tool named as the tool,
- a handoff (``HandoffSpanData``) a step ``handoff <from> -> <to>``, a guardrail
  (``GuardrailSpanData``) a step named as the guardrail, a custom span (``custom_span()``) a step.

The model calls themselves (``GenerationSpanData``, ``ResponseSpanData``) carry the same tokens
unitcost's openai adapter records from the openai client the SDK calls: they are not recorded
again. A processor cannot be taken out of the SDK, so `uninstall` turns it off instead. With the
SDK's tracing disabled (``set_tracing_disabled``, ``OPENAI_AGENTS_DISABLE_TRACING``) the SDK calls no
processor: the LLM calls are still recorded, in the task, without the steps.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from ..common.errors import internal_error
from .spans import FrameworkSpan

__all__ = ["MODULE", "UnitcostProcessor", "install", "uninstall"]

MODULE = "agents"
_NAME = "openai-agents"

_lock = threading.Lock()
_processor: UnitcostProcessor | None = None


def _step_of(data: Any) -> tuple[str, str] | None:
    """(kind, name) of the unitcost span for one Agents SDK span's data; None: not recorded."""
    span_type = getattr(data, "type", None)
    if span_type == "agent":
        return "step", str(data.name)
    if span_type == "function":
        return "tool", str(data.name)
    if span_type == "handoff":  # the agent handed to is known at the end (see `UnitcostProcessor.on_span_end`)
        return "step", _handoff_name(data)
    if span_type in ("guardrail", "custom"):
        return "step", str(data.name)
    return None


def _handoff_name(data: Any) -> str:
    return f"handoff {data.from_agent or '?'} -> {data.to_agent or '?'}"


class UnitcostProcessor:
    """An Agents SDK tracing processor (the six methods of ``agents.TracingProcessor``)."""

    def __init__(self) -> None:
        self.enabled = True
        self._open: dict[str, FrameworkSpan] = {}

    def on_trace_start(self, trace: Any) -> None:
        pass

    def on_trace_end(self, trace: Any) -> None:
        pass

    def on_span_start(self, span: Any) -> None:
        if not self.enabled:
            return
        try:
            found = _step_of(span.span_data)
            if found is not None:
                self._open[span.span_id] = FrameworkSpan(found[0], found[1], _NAME)
        except Exception as exc:  # noqa: BLE001 - the agent runs on without its step
            internal_error("openai-agents span start", exc)

    def on_span_end(self, span: Any) -> None:
        try:
            opened = self._open.pop(span.span_id, None)
            if opened is not None:
                error = getattr(span, "error", None)
                data = span.span_data
                opened.close(
                    (error.get("message") or "error") if isinstance(error, dict) else error,
                    rename=_handoff_name(data) if getattr(data, "type", None) == "handoff" else None,
                )
        except Exception as exc:  # noqa: BLE001
            internal_error("openai-agents span end", exc)

    def shutdown(self) -> None:
        pass

    def force_flush(self) -> None:
        pass


def install() -> None:
    """Add unitcost's processor to the Agents SDK (once) and turn it on."""
    global _processor
    agents = sys.modules.get(MODULE)
    add = getattr(agents, "add_trace_processor", None)
    if add is None:
        return  # another package named `agents`, or an SDK too old to have tracing processors
    with _lock:
        if _processor is None:
            base = getattr(agents, "TracingProcessor", object)
            # A subclass of the SDK's own abstract class, made here: unitcost does not import `agents`.
            processor_class = type("UnitcostProcessor", (UnitcostProcessor, base), {})
            processor = processor_class()
            try:
                add(processor)
            except Exception as exc:  # noqa: BLE001
                internal_error("openai-agents add_trace_processor", exc)
                return
            _processor = processor
        _processor.enabled = True


def uninstall() -> None:
    if _processor is not None:
        _processor.enabled = False

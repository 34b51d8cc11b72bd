"""LangChain and LangGraph: chains and graph nodes as steps, tools as tools, with no user code change.

`install` registers one callback handler for every run, through langchain-core's configure hook
(``register_configure_hook`` with a context variable whose default is the handler: every
``CallbackManager.configure`` then adds it, as it adds LangSmith's tracer). Its hooks open and close
unitcost spans:

- a graph node (a chain whose name is its ``langgraph_node``) and the outermost chain of a run (the
  graph itself, ``LangGraph``, or a plain chain) are steps named as LangChain names them; the chains
  inside a node (prompts, parsers, ``RunnableSequence``) are not,
- a tool run is a tool named as the tool.

The chat models' calls are recorded by unitcost's provider adapters (the openai and anthropic
clients that ``langchain-openai`` and ``langchain-anthropic`` call), not from ``on_llm_end``: one call,
one record. The handler runs inline (``run_inline``): LangChain's async callback manager would
otherwise run it in a copy of the context, where the step it makes current would not be seen by the
calls it contains. A hook cannot be taken out of langchain-core, so `uninstall` turns it off.
"""

from __future__ import annotations

import sys
import threading
from contextvars import ContextVar
from typing import Any

from ..common.errors import internal_error
from .spans import FrameworkSpan

__all__ = ["MODULE", "UnitcostCallbacks", "install", "uninstall"]

MODULE = "langchain_core"
_NAME = "langchain"

_lock = threading.Lock()
_handler: UnitcostCallbacks | None = None


def _chain_name(serialized: Any, kwargs: dict[str, Any]) -> str:
    name = kwargs.get("name")
    if not name and isinstance(serialized, dict):
        name = serialized.get("name") or (serialized.get("id") or [None])[-1]
    return str(name or "chain")


class UnitcostCallbacks:
    """The callback handler (mixed with langchain-core's ``BaseCallbackHandler`` at `install`)."""

    run_inline = True  # in the caller's context, so that the step it makes current is seen inside
    raise_error = False

    def __init__(self) -> None:
        self.enabled = True
        self._open: dict[Any, FrameworkSpan] = {}

    def _start(self, run_id: Any, kind: str, name: str) -> None:
        try:
            self._open[run_id] = FrameworkSpan(kind, name, _NAME)
        except Exception as exc:  # noqa: BLE001 - the chain runs on without its step
            internal_error("langchain run start", exc)

    def _end(self, run_id: Any, error: Any = None) -> None:
        opened = self._open.pop(run_id, None)
        if opened is not None:
            opened.close(error)

    def on_chain_start(self, serialized: Any, inputs: Any, *, run_id: Any, parent_run_id: Any = None,
                       tags: Any = None, metadata: Any = None, **kwargs: Any) -> None:
        if not self.enabled:
            return
        name = _chain_name(serialized, kwargs)
        node = (metadata or {}).get("langgraph_node")
        if parent_run_id is None or (node is not None and node == name):
            self._start(run_id, "step", name)

    def on_chain_end(self, outputs: Any, *, run_id: Any, parent_run_id: Any = None, **kwargs: Any) -> None:
        self._end(run_id)

    def on_chain_error(self, error: BaseException, *, run_id: Any, parent_run_id: Any = None, **kwargs: Any) -> None:
        # LangGraph ends a node with GraphInterrupt / ParentCommand to pause or route: not a failure.
        self._end(run_id, None if type(error).__name__ in ("GraphInterrupt", "ParentCommand") else error)

    def on_tool_start(self, serialized: Any, input_str: Any, *, run_id: Any, parent_run_id: Any = None,
                      tags: Any = None, metadata: Any = None, inputs: Any = None, **kwargs: Any) -> None:
        if not self.enabled:
            return
        name = (serialized or {}).get("name") if isinstance(serialized, dict) else None
        self._start(run_id, "tool", str(name or kwargs.get("name") or "tool"))

    def on_tool_end(self, output: Any, *, run_id: Any, parent_run_id: Any = None, **kwargs: Any) -> None:
        self._end(run_id)

    def on_tool_error(self, error: BaseException, *, run_id: Any, parent_run_id: Any = None, **kwargs: Any) -> None:
        self._end(run_id, error)


def install() -> None:
    """Register unitcost's handler for every LangChain run (once) and turn it on."""
    global _handler
    if MODULE not in sys.modules:
        return
    with _lock:
        if _handler is None:
            try:
                # langchain-core is imported already (this runs when it is): no import cost here.
                from langchain_core.callbacks import BaseCallbackHandler
                from langchain_core.tracers.context import register_configure_hook
            except ImportError as exc:  # a langchain-core too old for the hook
                internal_error("langchain configure hook", exc)
                return
            handler = type("UnitcostCallbacks", (UnitcostCallbacks, BaseCallbackHandler), {})()
            # The variable's default is the handler: active in every context, with no user code change.
            variable: ContextVar[Any] = ContextVar("unitcost_langchain_handler", default=handler)
            register_configure_hook(variable, True)
            _handler = handler
        _handler.enabled = True


def uninstall() -> None:
    if _handler is not None:
        _handler.enabled = False

"""Agent frameworks recorded without decorators: the OpenAI Agents SDK, LangChain/LangGraph, LiteLLM.

`unitcost.instrument()` hooks each one that is imported (now, or later through a post-import hook):
the framework's own tracing hooks turn its agent runs, graph nodes and tool calls into unitcost
steps and tools of the enclosing task, and LiteLLM's calls into LLM calls. unitcost never imports a
framework itself (some take seconds to import).
"""

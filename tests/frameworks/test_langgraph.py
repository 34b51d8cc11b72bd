"""A real LangGraph react agent (``create_react_agent`` over langchain-openai's ``ChatOpenAI``) with a
tool against a fake OpenAI server: every LLM call stored once, with exact tokens and cost, in the
task; the graph and its nodes are steps and the tool call a tool step, with no unitcost decorator
and no callback passed (and one tool step when the tool is decorated too)."""

from __future__ import annotations

import asyncio
import json
import warnings
from typing import Any

import pytest
from conftest import chat_body, genai_cost, mock_http_client, openai_http, sse_response, store_rows, usage_block
from frameworks.chat_stream import as_chunks
from frameworks.real_parts import require

import unitcost

MODEL = "gpt-4o-mini"
TOOL_CALL = {"id": "call_Wq3Xb2", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}


def handler(request: Any) -> Any:
    """The first request gets a tool call (120 in, 64 of them cached / 30 out, 10 of them reasoning);
    once the tool's result is in the conversation, the answer (200 in, 128 cached / 12 out). A
    streamed request gets the same reply as chunks."""
    body = json.loads(request.content)
    if any(m.get("role") == "tool" for m in body["messages"]):
        reply = chat_body(model=MODEL, content="Sunny in Paris.", usage=usage_block(200, 12, cached=128))
    else:
        reply = chat_body(model=MODEL, content="", usage=usage_block(120, 30, cached=64, reasoning=10))
        reply["choices"][0]["message"].update(content=None, tool_calls=[TOOL_CALL])
        reply["choices"][0]["finish_reason"] = "tool_calls"
    if body.get("stream"):
        return sse_response(as_chunks(reply, bool((body.get("stream_options") or {}).get("include_usage"))))
    return openai_http.Response(200, json=reply)


def make_agent(decorate_tool: bool, streaming: bool = False) -> Any:
    require("langgraph")
    require("langchain_openai")
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI
    from langgraph.prebuilt import create_react_agent

    def get_weather(city: str) -> str:
        """The weather in a city."""
        return f"Sunny in {city}"

    llm = ChatOpenAI(model=MODEL, api_key="sk-test", http_client=mock_http_client("openai", handler),
                     http_async_client=mock_http_client("openai", handler, is_async=True), streaming=streaming)
    with warnings.catch_warnings():  # create_react_agent's successor is in `langchain`, not installed here
        warnings.simplefilter("ignore")
        function = unitcost.tool("get_weather")(get_weather) if decorate_tool else get_weather
        return create_react_agent(llm, [tool(function)])


def assert_recorded(store_db: Any, run: Any) -> None:
    unitcost.flush()
    calls = store_rows(store_db, "SELECT * FROM calls ORDER BY started_ns")
    assert [c["run_id"] for c in calls] == [run.id, run.id]  # each call once, in the task
    inputs = [(c["input_tokens"] + c["cache_read_tokens"], c["cache_read_tokens"]) for c in calls]
    assert inputs == [(120, 64), (200, 128)]
    assert [(c["output_tokens"] + c["reasoning_tokens"], c["reasoning_tokens"]) for c in calls] == [(30, 10), (12, 0)]
    expected = genai_cost(MODEL, prompt=120, completion=30, cached=64, reasoning=10) + genai_cost(
        MODEL, prompt=200, completion=12, cached=128)
    assert sum(c["cost_pico"] for c in calls) == int(expected * 10**12)

    steps = store_rows(store_db, "SELECT * FROM steps ORDER BY started_ns")
    assert [(s["type"], s["name"], s["run_id"]) for s in steps] == [
        ("step", "LangGraph", run.id),
        ("step", "agent", run.id),
        ("step", "tools", run.id),
        ("tool", "get_weather", run.id),
        ("step", "agent", run.id),
    ]
    by_span = {s["span_id"]: s for s in steps}
    assert [by_span[c["parent_span_id"]]["name"] for c in calls] == ["agent", "agent"]  # each call in its node


@pytest.mark.covers("LangGraph (langchain-openai)", "create_react_agent with a tool", "sync", "plain")
@pytest.mark.parametrize("decorate_tool", [False, True], ids=["plain-tool", "unitcost-tool"])
def test_react_agent_with_a_tool(make_store, decorate_tool):
    store_db = make_store()
    agent = make_agent(decorate_tool)
    with unitcost.task("weather_question") as run:
        out = agent.invoke({"messages": [("user", "What is the weather in Paris?")]})
    assert out["messages"][-1].content == "Sunny in Paris."
    assert_recorded(store_db, run)


@pytest.mark.covers("LangGraph (langchain-openai)", "create_react_agent with a tool", "async", "plain")
@pytest.mark.covers("LangGraph (langchain-openai)", "create_react_agent with a tool", "async", "stream")
@pytest.mark.parametrize("streaming", [False, True], ids=["plain", "streaming-model"])
def test_react_agent_async(make_store, streaming):
    store_db = make_store()
    agent = make_agent(decorate_tool=False, streaming=streaming)  # streaming: unitcost asks for the usage

    async def main() -> Any:
        with unitcost.task("weather_question") as run:
            out = await agent.ainvoke({"messages": [("user", "What is the weather in Paris?")]})
        return run, out

    run, out = asyncio.run(main())
    assert out["messages"][-1].content == "Sunny in Paris."
    assert_recorded(store_db, run)
    assert [c["streamed"] for c in store_rows(store_db, "SELECT streamed FROM calls")] == [int(streaming)] * 2


@pytest.mark.covers("LangGraph (langchain-openai)", "create_react_agent with a tool", "sync", "stream")
def test_react_agent_streaming_model_sync(make_store):
    store_db = make_store()
    agent = make_agent(decorate_tool=False, streaming=True)
    with unitcost.task("weather_question") as run:
        out = agent.invoke({"messages": [("user", "What is the weather in Paris?")]})
    assert out["messages"][-1].content == "Sunny in Paris."
    assert_recorded(store_db, run)


def test_switched_off_the_calls_are_still_recorded_without_steps(make_store):
    store_db = make_store()
    unitcost.instrument(langchain=False)
    agent = make_agent(decorate_tool=False)
    with unitcost.task("weather_question") as run:
        agent.invoke({"messages": [("user", "What is the weather in Paris?")]})
    unitcost.flush()
    assert [c["run_id"] for c in store_rows(store_db, "SELECT * FROM calls")] == [run.id, run.id]
    assert store_rows(store_db, "SELECT * FROM steps") == []

"""A real pydantic-ai agent with a tool and its own OpenTelemetry instrumentation (``instrument=True``)
against a fake OpenAI server: every LLM call stored once, with exact tokens and cost, in the task;
the agent run a step and the tool call a tool step, without a unitcost decorator (and one tool step
with one)."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest
from conftest import chat_body, genai_cost, mock_http_client, openai_http, store_rows, usage_block
from frameworks.real_parts import require

import unitcost

MODEL = "gpt-4o-mini"
TOOL_CALL = {
    "id": "call_Wq3Xb2", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
}


def handler(request: Any) -> Any:
    """The first request gets a tool call (120 in, 64 of them cached / 30 out, 10 of them reasoning);
    once the tool's result is in the conversation, the answer (200 in, 128 cached / 12 out)."""
    body = json.loads(request.content)
    if any(m.get("role") == "tool" for m in body["messages"]):
        return openai_http.Response(200, json=chat_body(model=MODEL, content="Sunny in Paris.",
                                                        usage=usage_block(200, 12, cached=128)))
    reply = chat_body(model=MODEL, content="", usage=usage_block(120, 30, cached=64, reasoning=10))
    reply["choices"][0]["message"].update(content=None, tool_calls=[TOOL_CALL])
    reply["choices"][0]["finish_reason"] = "tool_calls"
    return openai_http.Response(200, json=reply)


def make_agent(decorate_tool: bool) -> Any:
    require("pydantic_ai")
    from pydantic_ai import Agent
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    client = openai.AsyncOpenAI(api_key="sk-test", http_client=mock_http_client("openai", handler, is_async=True))
    Agent.instrument_all(True)  # pydantic-ai 2.x's switch for its OpenTelemetry spans (instrument=True in 1.x)
    agent = Agent(OpenAIChatModel(MODEL, provider=OpenAIProvider(openai_client=client)), name="weather_agent")

    def get_weather(city: str) -> str:
        """The weather in a city."""
        return f"Sunny in {city}"

    agent.tool_plain(unitcost.tool("get_weather")(get_weather) if decorate_tool else get_weather)
    return agent


@pytest.mark.covers("pydantic-ai (+ its own spans)", "Agent.run_sync with a tool", "sync", "plain")
@pytest.mark.parametrize("decorate_tool", [False, True], ids=["plain-tool", "unitcost-tool"])
@pytest.mark.parametrize("instrumented", [True, False], ids=["instrument", "configure-only"])
def test_pydantic_ai_agent_with_a_tool(make_store, decorate_tool, instrumented):
    store_db = make_store()
    if not instrumented:
        unitcost.uninstrument()  # the calls are known from pydantic-ai's own spans only
    agent = make_agent(decorate_tool)
    try:
        with unitcost.task("weather_question") as run:
            result = agent.run_sync("What is the weather in Paris?")
    finally:
        type(agent).instrument_all(False)
    assert result.output == "Sunny in Paris."

    calls = store_rows(store_db, "SELECT * FROM calls ORDER BY started_ns")
    assert [c["run_id"] for c in calls] == [run.id, run.id]  # each call once, in the task
    inputs = [c["input_tokens"] + c["cache_read_tokens"] for c in calls]
    outputs = [c["output_tokens"] + c["reasoning_tokens"] for c in calls]
    assert (inputs, outputs) == ([120, 200], [30, 12])
    if instrumented:  # pydantic-ai's spans carry no cache or reasoning split: unitcost's do
        assert [c["cache_read_tokens"] for c in calls] == [64, 128]
        expected = genai_cost(MODEL, prompt=120, completion=30, cached=64, reasoning=10) + genai_cost(
            MODEL, prompt=200, completion=12, cached=128)
        assert sum(c["cost_pico"] for c in calls) == int(expected * 10**12)
    else:
        assert all(c["cost_pico"] is not None for c in calls)
    tools = store_rows(store_db, "SELECT * FROM steps WHERE type = 'tool'")
    assert [(t["name"], t["run_id"]) for t in tools] == [("get_weather", run.id)]
    # The agent's own span (invoke_agent) is a step of the task, named as pydantic-ai names the agent.
    steps = store_rows(store_db, "SELECT * FROM steps WHERE type = 'step'")
    assert [(s["name"], s["run_id"]) for s in steps] == [("weather_agent", run.id)]

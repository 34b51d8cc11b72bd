"""A real OpenAI Agents SDK run (a triage agent handing off to a weather agent with a function tool)
against a fake OpenAI server: every LLM call stored once, with exact tokens and cost, in the task;
the agent runs and the handoff are steps and the tool call a tool step, with no unitcost decorator
(and one tool step when the tool is decorated too). The SDK's own trace upload, pointed at a local
sink, still gets the whole trace."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import openai
import pytest
from conftest import chat_body, genai_cost, mock_http_client, openai_http, sse_response, store_rows, usage_block
from frameworks.chat_stream import as_chunks
from frameworks.real_parts import require
from frameworks.trace_sink import TraceSink

import unitcost

MODEL = "gpt-4o-mini"
HANDOFF_CALL = {"id": "call_h4nd0ff", "type": "function",
                "function": {"name": "transfer_to_weather_agent", "arguments": "{}"}}
WEATHER_CALL = {"id": "call_w3ath3r", "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
# (input, cached, output, reasoning) of each reply, in the order the run asks for them.
USAGE = {"handoff": (90, 0, 14, 0), "tool": (120, 64, 30, 10), "answer": (200, 128, 12, 0)}


def tool_call_reply(call: dict[str, Any], usage: tuple[int, int, int, int]) -> dict[str, Any]:
    prompt, cached, completion, reasoning = usage
    usage = usage_block(prompt, completion, cached=cached, reasoning=reasoning)
    reply = chat_body(model=MODEL, content="", usage=usage)
    reply["choices"][0]["message"].update(content=None, tool_calls=[call])
    reply["choices"][0]["finish_reason"] = "tool_calls"
    return reply


def reply_for(body: dict[str, Any]) -> dict[str, Any]:
    """The triage agent (no get_weather tool) hands off; the weather agent calls get_weather, then,
    with the tool's result in the conversation, answers."""
    tools = {t["function"]["name"] for t in body.get("tools", [])}
    answered = {m.get("tool_call_id") for m in body["messages"] if m.get("role") == "tool"}
    if "get_weather" not in tools:
        return tool_call_reply(HANDOFF_CALL, USAGE["handoff"])
    if WEATHER_CALL["id"] not in answered:
        return tool_call_reply(WEATHER_CALL, USAGE["tool"])
    prompt, cached, completion, _ = USAGE["answer"]
    return chat_body(model=MODEL, content="Sunny in Paris.", usage=usage_block(prompt, completion, cached=cached))


def handler(request: Any) -> Any:
    body = json.loads(request.content)
    reply = reply_for(body)
    if not body.get("stream"):
        return openai_http.Response(200, json=reply)
    chunks = as_chunks(reply, bool((body.get("stream_options") or {}).get("include_usage")))
    return sse_response(chunks)


def expected_cost() -> int:
    total = sum(genai_cost(MODEL, prompt=p, completion=o, cached=c, reasoning=r) for p, c, o, r in USAGE.values())
    return int(total * 10**12)


def make_agents(decorate_tool: bool, include_usage: bool = False) -> Any:
    require("agents")
    from agents import (
        Agent,
        GuardrailFunctionOutput,
        ModelSettings,
        OpenAIChatCompletionsModel,
        function_tool,
        input_guardrail,
    )

    # A fresh client per event loop (one reused across asyncio.run() calls fails: "Event loop is closed").
    client = openai.AsyncOpenAI(api_key="sk-test", http_client=mock_http_client("openai", handler, is_async=True))
    model = OpenAIChatCompletionsModel(model=MODEL, openai_client=client)

    def get_weather(city: str) -> str:
        """The weather in a city."""
        return f"Sunny in {city}"

    @input_guardrail(run_in_parallel=False)  # before the first model call: a fixed order of steps
    def on_topic(context: Any, agent: Any, question: Any) -> Any:
        return GuardrailFunctionOutput(output_info=None, tripwire_triggered=False)

    settings = ModelSettings(include_usage=True) if include_usage else ModelSettings()
    tool = function_tool(unitcost.tool("get_weather")(get_weather) if decorate_tool else get_weather)
    weather = Agent(name="weather_agent", instructions="Answer with the weather.", tools=[tool], model=model,
                    model_settings=settings)
    return Agent(name="triage", instructions="Hand weather questions over.", handoffs=[weather], model=model,
                 input_guardrails=[on_topic], model_settings=settings)


@pytest.fixture
def trace_sink() -> Any:
    """The SDK's own upload, as the user left it (on, to its default exporter), pointed at a local sink."""
    require("agents")
    from agents import set_tracing_export_api_key
    from agents.tracing import flush_traces
    from agents.tracing.processors import default_exporter

    exporter = default_exporter()
    endpoint = exporter.endpoint
    with TraceSink() as sink:
        exporter.endpoint = sink.url
        set_tracing_export_api_key("sk-test")
        try:
            yield sink
        finally:
            flush_traces()  # everything queued goes to the sink, none to OpenAI once the endpoint is back
            exporter.endpoint = endpoint


@pytest.mark.covers("OpenAI Agents SDK", "Runner.run / run_streamed: handoff + tool", "async", "plain")
@pytest.mark.parametrize("decorate_tool", [False, True], ids=["plain-tool", "unitcost-tool"])
def test_agent_run_with_a_handoff_and_a_tool(make_store, trace_sink, decorate_tool):
    store_db = make_store()
    triage = make_agents(decorate_tool)
    from agents import Runner
    from agents.tracing import flush_traces

    async def main() -> Any:
        with unitcost.task("weather_question") as run:
            result = await Runner.run(triage, "What is the weather in Paris?")
        return run, result

    run, result = asyncio.run(main())
    assert result.final_output == "Sunny in Paris."
    unitcost.flush()

    calls = store_rows(store_db, "SELECT * FROM calls ORDER BY started_ns")
    assert [c["run_id"] for c in calls] == [run.id] * 3  # each call once, in the task
    assert [(c["input_tokens"] + c["cache_read_tokens"], c["cache_read_tokens"]) for c in calls] == [
        (p, c) for p, c, _, _ in USAGE.values()]
    assert [(c["output_tokens"] + c["reasoning_tokens"], c["reasoning_tokens"]) for c in calls] == [
        (o, r) for _, _, o, r in USAGE.values()]
    assert sum(c["cost_pico"] for c in calls) == expected_cost()

    steps = store_rows(store_db, "SELECT * FROM steps ORDER BY started_ns")
    assert [(s["type"], s["name"], s["run_id"]) for s in steps] == [
        ("step", "triage", run.id),
        ("step", "on_topic", run.id),
        ("step", "handoff triage -> weather_agent", run.id),
        ("step", "weather_agent", run.id),
        ("tool", "get_weather", run.id),
    ]
    # The calls nest under the agent that made them, the tool under the weather agent.
    by_span = {s["span_id"]: s for s in steps}
    assert [by_span[c["parent_span_id"]]["name"] for c in calls] == ["triage", "weather_agent", "weather_agent"]

    # The SDK's own upload still has the whole trace: unitcost's processor was added beside it.
    flush_traces()
    uploaded = [item["span_data"]["type"] for item in trace_sink.items if item.get("object") == "trace.span"]
    assert uploaded.count("generation") == 3 and uploaded.count("function") == 1 and "handoff" in uploaded


def test_switched_off_the_calls_are_still_recorded_without_steps(make_store, trace_sink):
    store_db = make_store()
    unitcost.instrument(agents=False)
    triage = make_agents(decorate_tool=False)
    from agents import Runner

    with unitcost.task("weather_question") as run:
        result = Runner.run_sync(triage, "What is the weather in Paris?")
    assert result.final_output == "Sunny in Paris."
    unitcost.flush()
    calls = store_rows(store_db, "SELECT * FROM calls")
    assert [c["run_id"] for c in calls] == [run.id] * 3
    assert sum(c["cost_pico"] for c in calls) == expected_cost()
    assert store_rows(store_db, "SELECT * FROM steps") == []


@pytest.mark.covers("OpenAI Agents SDK", "Runner.run / run_streamed: handoff + tool", "async", "stream")
@pytest.mark.parametrize("include_usage", [True, False], ids=["sdk-asks-usage", "unitcost-asks-usage"])
def test_streamed_run(make_store, trace_sink, include_usage):
    # The SDK asks for the stream's usage only with include_usage; otherwise unitcost asks for it
    # (and hides the usage chunk from the SDK): exact tokens either way.
    store_db = make_store()
    triage = make_agents(decorate_tool=False, include_usage=include_usage)
    from agents import Runner

    async def main() -> Any:
        with unitcost.task("weather_question") as run:
            result = Runner.run_streamed(triage, "What is the weather in Paris?")
            async for _event in result.stream_events():
                pass
        return run, result

    run, result = asyncio.run(main())
    assert result.final_output == "Sunny in Paris."
    unitcost.flush()
    calls = store_rows(store_db, "SELECT * FROM calls ORDER BY started_ns")
    assert [(c["run_id"], c["streamed"], c["estimated"]) for c in calls] == [(run.id, 1, 0)] * 3
    assert sum(c["cost_pico"] for c in calls) == expected_cost()
    steps = store_rows(store_db, "SELECT type, name FROM steps ORDER BY started_ns")
    assert [(s["type"], s["name"]) for s in steps] == [
        ("step", "triage"), ("step", "on_topic"), ("step", "handoff triage -> weather_agent"),
        ("step", "weather_agent"), ("tool", "get_weather"),
    ]

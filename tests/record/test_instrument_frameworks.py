"""instrument()'s framework switches and the spans a framework's hooks open, without the frameworks
installed (tests/frameworks/ drives the real ones): a stand-in module with the framework's hook API
shows when unitcost hooks it (now, on a later import, never when switched off) and that a step
opened by one callback and closed by another holds the calls made inside it."""

from __future__ import annotations

import contextvars
import importlib
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from conftest import store_rows

import unitcost
from unitcost.frameworks.spans import FrameworkSpan


class StandInAgents:
    """The part of the OpenAI Agents SDK's module unitcost uses."""

    class TracingProcessor:
        pass

    def __init__(self) -> None:
        self.processors: list[Any] = []

    def add_trace_processor(self, processor: Any) -> None:
        self.processors.append(processor)


@pytest.fixture
def agents_module(monkeypatch: pytest.MonkeyPatch) -> StandInAgents:
    import unitcost.frameworks.openai_agents as hook

    module = StandInAgents()
    monkeypatch.setitem(sys.modules, "agents", module)
    monkeypatch.setattr(hook, "_processor", None)  # the process-wide processor of an earlier test
    return module


def test_hooked_once_when_imported_and_switched_off_by_argument(make_store, agents_module):
    make_store()  # instrument(): the stand-in is imported already, so it is hooked now
    unitcost.instrument()  # twice is once
    assert len(agents_module.processors) == 1
    processor = agents_module.processors[0]
    assert isinstance(processor, StandInAgents.TracingProcessor) and processor.enabled
    unitcost.instrument(agents=False)
    assert not processor.enabled  # a processor cannot be taken out of the SDK: it is turned off
    unitcost.instrument()
    assert processor.enabled and len(agents_module.processors) == 1


def test_switched_off_by_the_environment(make_store, agents_module, monkeypatch):
    monkeypatch.setenv("UNITCOST_INSTRUMENT_OFF", "litellm, agents")
    make_store()
    assert agents_module.processors == []


def test_hooked_when_imported_later(make_store, tmp_path: Path, monkeypatch):
    import unitcost.frameworks.openai_agents as hook

    monkeypatch.setattr(hook, "_processor", None)
    package = tmp_path / "later" / "agents"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(textwrap.dedent("""
        processors = []
        class TracingProcessor:
            pass
        def add_trace_processor(processor):
            processors.append(processor)
    """))
    monkeypatch.syspath_prepend(str(package.parent))
    monkeypatch.delitem(sys.modules, "agents", raising=False)
    make_store()  # instrument() before the import: a post-import hook
    try:
        module = importlib.import_module("agents")
        assert len(module.processors) == 1 and module.processors[0].enabled
    finally:
        sys.modules.pop("agents", None)


def test_a_framework_step_holds_the_calls_made_inside_it(make_store):
    store_db = make_store()
    with unitcost.task("question") as run:
        agent = FrameworkSpan("step", "triage", "test")
        tool = FrameworkSpan("tool", "get_weather", "test")
        tool.close()
        unitcost.record_usage("openai", "gpt-4o-mini", input_tokens=10, output_tokens=2)
        agent.close(rename="triage agent")
        unitcost.record_usage("openai", "gpt-4o-mini", input_tokens=5, output_tokens=1)
    unitcost.flush()
    steps = {s["name"]: s for s in store_rows(store_db, "SELECT * FROM steps")}
    assert {name: (s["type"], s["run_id"]) for name, s in steps.items()} == {
        "triage agent": ("step", run.id), "get_weather": ("tool", run.id)}
    assert steps["get_weather"]["parent_span_id"] == steps["triage agent"]["span_id"]
    calls = store_rows(store_db, "SELECT parent_span_id, run_id FROM calls ORDER BY input_tokens DESC")
    # the first call inside the step; the second, after the step closed, in the task again
    assert [(c["parent_span_id"], c["run_id"]) for c in calls] == [(steps["triage agent"]["span_id"], run.id),
                                                                   (run.id, run.id)]


def test_a_step_closed_in_another_context_leaves_that_context_alone(make_store):
    # make_store fails the test if OpenTelemetry logged an error (its "Failed to detach context").
    store_db = make_store()
    with unitcost.task("question") as run:
        holder: list[FrameworkSpan] = []
        contextvars.copy_context().run(lambda: holder.append(FrameworkSpan("step", "node", "test")))
        holder[0].close()  # here, not in the copy it was opened in
        unitcost.record_usage("openai", "gpt-4o-mini", input_tokens=5, output_tokens=1)
    unitcost.flush()
    [call] = store_rows(store_db, "SELECT parent_span_id FROM calls")
    assert call["parent_span_id"] == run.id
    assert [s["name"] for s in store_rows(store_db, "SELECT name FROM steps")] == ["node"]


def test_litellm_usage_in_unitcost_buckets():
    from unitcost.frameworks.litellm import usage_of

    # Anthropic through LiteLLM: prompt_tokens already holds the cache reads and writes (LiteLLM adds
    # them), the writes are reported apart, the 1-hour ones in the prompt details.
    anthropic = {"usage": {
        "prompt_tokens": 2_100, "completion_tokens": 300, "total_tokens": 2_400, "cache_creation_input_tokens": 1_500,
        "cache_read_input_tokens": 400,
        "prompt_tokens_details": {"cached_tokens": 400, "cache_creation_tokens": 1_500,
                                  "cache_creation_token_details": {"ephemeral_5m_input_tokens": 1_000,
                                                                   "ephemeral_1h_input_tokens": 500}},
        "completion_tokens_details": {"reasoning_tokens": 120},
    }}
    usage = usage_of(anthropic, "completion")
    assert usage is not None
    assert (usage.input_tokens, usage.cache_read_tokens, usage.cache_write_tokens, usage.cache_write_1h_tokens) == (
        2_100, 400, 1_500, 500)
    assert (usage.output_tokens, usage.reasoning_tokens) == (300, 120)
    # A Responses usage left as the API sent it.
    responses = {"usage": {"input_tokens": 300, "output_tokens": 40, "input_tokens_details": {"cached_tokens": 128},
                           "output_tokens_details": {"reasoning_tokens": 16}}}
    usage = usage_of(responses, "responses")
    assert usage is not None
    found = (usage.input_tokens, usage.cache_read_tokens, usage.output_tokens, usage.reasoning_tokens)
    assert found == (300, 128, 40, 16)
    assert usage_of({"usage": None}, "completion") is None

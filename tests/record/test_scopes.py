"""`unitcost.task`, `step` and `tool`: decorators and context managers around one span each, on
every kind of callable, with results, exceptions and the current task passing through unchanged."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import json
from types import SimpleNamespace

import pytest
from conftest import PROMPT, ChatServer, report_json, store_rows

import unitcost

TICKET = SimpleNamespace(id="T-1042", customer="acme")


def runs(db):
    return store_rows(db, "runs")


def drive(fn, *args, **kwargs):
    """Run any kind of callable to the end: a list of what a generator yields, else its result."""
    if inspect.isasyncgenfunction(fn):

        async def collect():
            return [item async for item in fn(*args, **kwargs)]

        return asyncio.run(collect())
    if inspect.iscoroutinefunction(fn):
        return asyncio.run(fn(*args, **kwargs))
    if inspect.isgeneratorfunction(fn):
        return list(fn(*args, **kwargs))
    return fn(*args, **kwargs)


# --- task as a decorator on every kind of callable ---------------------------------------------------
# Each returns (or yields) the id of the run it saw itself in, so the test can compare it with the store.

task_on_ticket = unitcost.task(
    "support_ticket", key=lambda ticket: ticket.id, attributes=lambda ticket: {"customer": ticket.customer}
)


@task_on_ticket
def handle_sync(ticket):
    return unitcost.current_task().id


@task_on_ticket
async def handle_async(ticket):
    await asyncio.sleep(0)
    return unitcost.current_task().id


@task_on_ticket
def handle_gen(ticket):
    yield unitcost.current_task().id


@task_on_ticket
async def handle_agen(ticket):
    await asyncio.sleep(0)
    yield unitcost.current_task().id


# On methods the callables receive `self` too: they get exactly the function's arguments.
method_task = unitcost.task(
    "support_ticket", key=lambda self, ticket: ticket.id,
    attributes=lambda self, ticket: {"customer": ticket.customer, "agent": self.name},
)


class Agent:
    name = "triage-v2"

    @method_task
    def handle_sync(self, ticket):
        return unitcost.current_task().id

    @method_task
    async def handle_async(self, ticket):
        return unitcost.current_task().id

    @method_task
    def handle_gen(self, ticket):
        yield unitcost.current_task().id

    @method_task
    async def handle_agen(self, ticket):
        yield unitcost.current_task().id


FUNCTIONS = [handle_sync, handle_async, handle_gen, handle_agen]
METHODS = [Agent().handle_sync, Agent().handle_async, Agent().handle_gen, Agent().handle_agen]


@pytest.mark.parametrize("fn", FUNCTIONS, ids=lambda f: f.__name__)
def test_task_decorator_records_one_run_with_key_and_attributes(store_db, fn):
    result = drive(fn, TICKET)
    seen = result[0] if isinstance(result, list) else result

    (run,) = runs(store_db)
    assert run["run_id"] == seen  # the id the function saw is the id in the store
    assert (run["kind"], run["key"], run["service"]) == ("support_ticket", "T-1042", "tests")
    assert json.loads(run["attributes"]) == {"customer": "acme"}
    assert run["error_type"] is None and run["parent_run_id"] is None
    assert unitcost.current_task() is None  # nothing left behind


@pytest.mark.parametrize("fn", METHODS, ids=lambda f: f.__name__)
def test_task_decorator_on_methods_passes_self_to_key_and_attributes(store_db, fn):
    drive(fn, TICKET)
    (run,) = runs(store_db)
    assert run["key"] == "T-1042"
    assert json.loads(run["attributes"]) == {"customer": "acme", "agent": "triage-v2"}


def test_decorated_functions_keep_their_name_and_kind():
    assert handle_sync.__name__ == "handle_sync"
    assert inspect.iscoroutinefunction(handle_async)
    assert inspect.isgeneratorfunction(handle_gen)
    assert inspect.isasyncgenfunction(handle_agen)


def test_key_and_attributes_work_when_the_function_is_called_with_keywords(store_db):
    # The task docstring's own example, called as handle(ticket=...): the key callable is given the
    # function's arguments, so a keyword call must reach it as well as a positional one.
    @unitcost.task("support_ticket", key=lambda t: t.id, attributes=lambda t: {"customer": t.customer})
    def handle(ticket):
        return "done"

    assert handle(ticket=TICKET) == "done"
    (run,) = runs(store_db)
    assert run["key"] == "T-1042"


# --- task as a context manager ------------------------------------------------------------------------


def test_with_task_gives_the_run_that_is_current_and_stored(store_db):
    with unitcost.task("support_ticket", key=1042, attributes={"customer": "acme", "priority": 2}) as run:
        assert unitcost.current_task() is run
        assert (run.kind, run.key, run.attributes) == ("support_ticket", "1042", {"customer": "acme", "priority": 2})
        run_id = unitcost.current_task().id
    assert unitcost.current_task() is None

    (row,) = runs(store_db)
    assert row["run_id"] == run.id == run_id
    assert json.loads(row["attributes"]) == {"customer": "acme", "priority": 2}


def test_async_with_task(store_db):
    async def main():
        async with unitcost.task("support_ticket", key="T-9") as run:
            await asyncio.sleep(0)
            assert unitcost.current_task() is run
        return run

    run = asyncio.run(main())
    (row,) = runs(store_db)
    assert (row["run_id"], row["key"]) == (run.id, "T-9")


def test_concurrent_asyncio_tasks_each_see_their_own_run(store_db):
    async def one(key):
        async with unitcost.task("support_ticket", key=key) as run:
            await asyncio.sleep(0.01)
            assert unitcost.current_task() is run
            return run.id

    async def main():
        return await asyncio.gather(one("A"), one("B"), one("C"))

    ids = asyncio.run(main())
    assert sorted((r["run_id"], r["key"]) for r in runs(store_db)) == sorted(zip(ids, "ABC", strict=True))


def test_one_task_object_used_by_concurrent_asyncio_tasks(store_db):
    # A scope object kept at module level and entered by several requests at once: each `async with`
    # must end its own span, whatever order they finish in.
    shared = unitcost.task("support_ticket")

    async def one(delay):
        async with shared as run:
            await asyncio.sleep(delay)
        return run.id

    async def main():
        return await asyncio.gather(one(0.01), one(0.05))

    ids = asyncio.run(main())
    assert sorted(r["run_id"] for r in runs(store_db)) == sorted(ids)


# --- exceptions ----------------------------------------------------------------------------------------


class TicketLost(Exception):
    pass


def test_exception_passes_through_as_the_same_object_and_fails_the_run(store_db):
    error = TicketLost("ticket T-1 vanished")

    @unitcost.task("support_ticket", key="T-1")
    def handle():
        raise error

    with pytest.raises(TicketLost) as raised:
        handle()
    assert raised.value is error
    assert raised.traceback[-1].name == "handle"  # the user's own frame is where it was raised

    (run,) = runs(store_db)
    assert run["error_type"] == "TicketLost"
    (outcome,) = store_rows(store_db, "outcomes")
    assert (outcome["run_id"], outcome["label"], outcome["success"], outcome["source"]) == (
        run["run_id"], "error", 0, "inline",
    )
    (row,) = report_json(store_db)
    assert (row["failed"], row["succeeded"], row["success_rate"]) == (1, 0, 0.0)


@pytest.mark.parametrize("kind", ["async", "gen", "agen", "with"])
def test_exception_passes_through_every_form(store_db, kind):
    error = TicketLost(kind)

    @unitcost.task("t")
    async def coro():
        raise error

    @unitcost.task("t")
    def gen():
        yield 1
        raise error

    @unitcost.task("t")
    async def agen():
        yield 1
        raise error

    def with_block():
        with unitcost.task("t"):
            raise error

    fn = {"async": coro, "gen": gen, "agen": agen, "with": with_block}[kind]
    with pytest.raises(TicketLost) as raised:
        drive(fn)
    assert raised.value is error
    (run,) = runs(store_db)
    assert run["error_type"] == "TicketLost"


def test_an_inline_outcome_survives_a_later_exception(store_db):
    with pytest.raises(TicketLost), unitcost.task("support_ticket"):
        unitcost.outcome("escalated")
        raise TicketLost()
    (outcome,) = store_rows(store_db, "outcomes")
    assert outcome["label"] == "escalated"


# --- step and tool -------------------------------------------------------------------------------------


def make_scoped(scope):
    """The four kinds of callable, each wrapped in `scope` (a fresh step or tool)."""

    @scope
    def sync():
        return "sync"

    @scope
    async def coro():
        return "async"

    @scope
    def gen():
        yield "gen"

    @scope
    async def agen():
        yield "agen"

    return [sync, coro, gen, agen]


@pytest.mark.parametrize("index", range(4), ids=["sync", "async", "gen", "agen"])
@pytest.mark.parametrize(
    ("scope", "type_", "name", "cost_pico"),
    [
        (lambda: unitcost.step("plan"), "step", "plan", None),
        (lambda: unitcost.tool("search_kb", cost=0.002), "tool", "search_kb", 2_000_000_000),
        (lambda: unitcost.tool("lookup_order", cost="0.0001"), "tool", "lookup_order", 100_000_000),
    ],
)
def test_step_and_tool_decorators_record_under_the_task(store_db, scope, type_, name, cost_pico, index):
    fn = make_scoped(scope())[index]
    with unitcost.task("support_ticket") as run:
        result = drive(fn)
    assert result in ("sync", "async", ["gen"], ["agen"])

    (step,) = store_rows(store_db, "steps")
    assert (step["type"], step["name"], step["run_id"], step["parent_span_id"]) == (type_, name, run.id, run.id)
    assert step["cost_pico"] == cost_pico
    assert step["error_type"] is None


def test_step_and_tool_as_context_managers(store_db):
    with unitcost.task("support_ticket") as run:
        with unitcost.step("retrieve"), unitcost.tool("search_kb", cost=0.002):
            pass
        with pytest.raises(TicketLost), unitcost.tool("crm_update"):
            raise TicketLost()

    steps = {s["name"]: s for s in store_rows(store_db, "steps")}
    assert steps["search_kb"]["parent_span_id"] == steps["retrieve"]["span_id"]
    assert {s["run_id"] for s in steps.values()} == {run.id}
    assert steps["search_kb"]["cost_pico"] == 2_000_000_000
    assert steps["crm_update"]["error_type"] == "TicketLost"
    (row,) = report_json(store_db)
    assert (row["tool_calls"], row["steps"], row["cost_usd"]) == (2, 3, 0.002)


def test_llm_call_in_a_step_belongs_to_the_task_and_hangs_under_the_step(store_db, openai_client):
    client = openai_client(ChatServer())
    with unitcost.task("support_ticket") as run, unitcost.step("draft"):
        client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT)

    (call,) = store_rows(store_db, "calls")
    (step,) = store_rows(store_db, "steps")
    assert call["run_id"] == run.id
    assert call["parent_span_id"] == step["span_id"]


def test_nested_task_in_a_tool_in_a_task(store_db, openai_client):
    client = openai_client(ChatServer())
    with unitcost.task("support_ticket", key="T-1") as outer:
        with unitcost.tool("ask_billing_agent", cost=0.002):
            with unitcost.task("billing_question", key="B-7") as inner:
                assert unitcost.current_task() is inner and inner.parent is outer
                client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT)
            assert unitcost.current_task() is outer
        client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT)

    by_kind = {r["kind"]: r for r in runs(store_db)}
    (tool,) = store_rows(store_db, "steps")
    assert by_kind["billing_question"]["run_id"] == inner.id
    assert by_kind["billing_question"]["parent_run_id"] == outer.id
    assert by_kind["billing_question"]["parent_span_id"] == tool["span_id"]
    assert by_kind["support_ticket"]["parent_run_id"] is None
    assert tool["run_id"] == outer.id
    assert tool["cost_pico"] == 2_000_000_000
    calls = store_rows(store_db, "SELECT run_id FROM calls ORDER BY started_ns")
    assert [c["run_id"] for c in calls] == [inner.id, outer.id]  # each call is its own task's cost


# --- generators and the context they run in ------------------------------------------------------------


def test_a_generator_task_does_not_capture_the_consumers_calls(store_db, openai_client):
    # The consumer's code between two items is not part of the producer's task: an LLM call it makes
    # there is the consumer's cost, not the producer's.
    client = openai_client(ChatServer())

    @unitcost.task("retrieve_documents")
    def documents():
        yield "doc-1"
        yield "doc-2"

    with unitcost.task("support_ticket") as consumer:
        for _ in documents():
            client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT)

    assert [c["run_id"] for c in store_rows(store_db, "calls")] == [consumer.id, consumer.id]


def test_a_generator_task_resumed_in_other_contexts_is_recorded(store_db):
    # Starlette's StreamingResponse (and anyio.to_thread) run each next() of a sync generator in a
    # fresh copy of the context. The run must still be recorded, and next() must not raise.
    @unitcost.task("stream_reply", key="T-5")
    def reply():
        yield "Hello"
        yield "world"

    gen = reply()
    items = [contextvars.copy_context().run(next, gen) for _ in range(2)]
    with pytest.raises(StopIteration):
        contextvars.copy_context().run(next, gen)

    assert items == ["Hello", "world"]
    (run,) = runs(store_db)
    assert run["key"] == "T-5"


def test_a_generator_task_closed_early_is_not_an_error(store_db):
    @unitcost.task("retrieve_documents")
    def documents():
        yield "doc-1"
        yield "doc-2"

    gen = documents()
    assert next(gen) == "doc-1"
    gen.close()
    (run,) = runs(store_db)
    assert run["error_type"] is None
    assert store_rows(store_db, "outcomes") == []


def test_scopes_need_a_name():
    with pytest.raises(ValueError, match="non-empty name"):
        unitcost.task("")
    with pytest.raises(ValueError, match="non-empty name"):
        unitcost.tool(None)  # type: ignore[arg-type]

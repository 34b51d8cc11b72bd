"""`unitcost.instrument(client)`: one client's calls only; with the global switch too, each call once;
both reversible. And the OpenTelemetry entry point that ``opentelemetry-instrument`` loads."""

from __future__ import annotations

import asyncio
import tomllib
from importlib.metadata import EntryPoint
from pathlib import Path

from conftest import PROMPT, ChatServer, store_rows
from openai.resources.chat.completions.completions import Completions
from providers.openai_fixtures import OpenAIServer

import unitcost
from unitcost.record.instrument import is_instrumented

ROOT = Path(__file__).resolve().parents[2]


def calls(db):
    return store_rows(db, "SELECT operation, model FROM calls ORDER BY started_ns")


def test_only_the_instrumented_clients_calls_are_recorded(store_db, openai_client):
    unitcost.uninstrument()  # the fixture turned the global switch on
    watched, other = openai_client(OpenAIServer()), openai_client(OpenAIServer())
    unitcost.instrument(watched)

    watched.chat.completions.create(model="gpt-4o-mini", messages=PROMPT)
    watched.responses.create(model="gpt-5-mini", input="Where is my order?")  # every resource of the client
    other.chat.completions.create(model="gpt-4o-mini", messages=PROMPT)
    other.embeddings.create(model="text-embedding-3-small", input="order")

    assert calls(store_db) == [
        {"operation": "chat", "model": "gpt-4o-mini"},
        {"operation": "chat", "model": "gpt-5-mini"},
    ]


def test_an_async_client_alone(store_db, openai_client):
    unitcost.uninstrument()
    client = openai_client(ChatServer(), is_async=True)
    unitcost.instrument(client)
    asyncio.run(client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT))
    assert len(calls(store_db)) == 1


def test_client_and_global_switch_together_record_each_call_once(store_db, openai_client):
    client = openai_client(ChatServer())
    unitcost.instrument(client)  # the global switch is on as well
    unitcost.instrument(client)
    client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT)
    assert len(calls(store_db)) == 1

    unitcost.uninstrument(client)  # the global switch still records it
    client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT)
    assert len(calls(store_db)) == 2


def test_uninstrument_turns_everything_off_and_restores_the_sdk(store_db, openai_client):
    client = openai_client(ChatServer())
    original = Completions.__dict__["create"].__wrapped__
    unitcost.instrument(client)
    unitcost.uninstrument()

    assert Completions.__dict__["create"] is original
    assert not is_instrumented()
    client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT)
    assert calls(store_db) == []


def test_uninstrumenting_the_last_client_restores_the_sdk(store_db, openai_client):
    unitcost.uninstrument()
    client = openai_client(ChatServer())
    unitcost.instrument(client)
    assert is_instrumented()
    unitcost.uninstrument(client)
    assert not is_instrumented()


# --- opentelemetry-instrument ------------------------------------------------------------------------------


def test_the_entry_point_opentelemetry_instrument_loads(store_db, openai_client):
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    value = pyproject["project"]["entry-points"]["opentelemetry_instrumentor"]["unitcost"]
    assert value == "unitcost.otel:UnitcostInstrumentor"
    unitcost.uninstrument()

    # What opentelemetry-instrument's default distro does with each entry point of the group.
    entry_point = EntryPoint(name="unitcost", value=value, group="opentelemetry_instrumentor")
    instrumentor = entry_point.load()()
    instrumentor.instrument(skip_dep_check=True)
    assert instrumentor.is_instrumented_by_opentelemetry
    assert instrumentor.instrumentation_dependencies() == ()
    assert entry_point.load()() is instrumentor  # one instance per process, like BaseInstrumentor

    openai_client(ChatServer()).chat.completions.create(model="gpt-4o-mini", messages=PROMPT)
    assert len(calls(store_db)) == 1
    instrumentor.uninstrument()
    assert not is_instrumented()

"""OpenAI Responses end to end: create, stream and parse, sync and async, through the real openai
client over an in-memory transport, to the rows in the store.

gpt-5-mini per million tokens: $0.25 input, $0.025 cached input, $2.00 output (reasoning included);
OpenAI publishes no cache-write rate, so cache writes cost the input rate. The usage every test
here gets back: 2000 input tokens of which 1200 cached and 300 written to the cache (200 with 30-minute
retention, 100 with 12-hour), 900 output tokens of which 600 reasoning:

    (500 * 0.25 + 1200 * 0.025 + 300 * 0.25 + 900 * 2.00) / 1e6 = $0.00203 = 2,030,000,000 pico-dollars
"""

from __future__ import annotations

import asyncio
import gc

import openai
import pytest
from conftest import PROMPT, openai_http, store_rows
from openai.types.responses import ParsedResponse, Response
from providers.openai_fixtures import (
    GPT5_MINI,
    RESPONSE_ID,
    STRUCTURED_ANSWER,
    OpenAIServer,
    genai_price,
    responses_usage,
)
from pydantic import BaseModel

import unitcost
from unitcost.common.money import to_pico

HAND_COMPUTED_PICO = 2_030_000_000
REASONING_PICO = 600 * 2_000_000  # $2.00 per million = 2,000,000 pico a token
USAGE = dict(input_tokens=2000, cache_read_tokens=1200, cache_write_tokens=300, output_tokens=900,
             output_reasoning_tokens=600)
INPUT = [{"role": "user", "content": PROMPT[1]["content"]}]
INSTRUCTIONS = PROMPT[0]["content"]


class TicketStatus(BaseModel):
    ticket: str
    status: str


def call_row(db):
    (row,) = store_rows(db, "calls")
    return row


def assert_full_usage(row, *, cost_pico=HAND_COMPUTED_PICO):
    assert (row["provider"], row["operation"], row["model"], row["response_model"]) == (
        "openai", "chat", "gpt-5-mini", GPT5_MINI,
    )
    assert (row["input_tokens"], row["cache_read_tokens"], row["cache_write_tokens"]) == (500, 1200, 300)
    assert (row["cache_write_30m_tokens"], row["cache_write_12h_tokens"]) == (200, 100)  # parts, recorded
    assert row["cache_write_1h_tokens"] == 0
    assert (row["output_tokens"], row["reasoning_tokens"]) == (300, 600)
    assert row["cost_pico"] == cost_pico
    assert row["price_source"] == "genai-prices"
    assert (row["estimated"], row["incomplete"], row["error_type"]) == (0, 0, None)


def test_hand_computed_price_agrees_with_genai_prices():
    assert to_pico(genai_price("openai", GPT5_MINI, **USAGE)) == HAND_COMPUTED_PICO


@pytest.mark.covers("openai", "responses.create", "sync", "plain")
def test_create(store_db, openai_client):
    client = openai_client(OpenAIServer())
    with unitcost.task("support_ticket", key="T-1042") as run:
        response = client.responses.create(model="gpt-5-mini", input=INPUT, instructions=INSTRUCTIONS)

    assert type(response) is Response and response.output_text == "Your order #1042 ships today."
    row = call_row(store_db)
    assert row["run_id"] == run.id
    assert_full_usage(row)
    assert row["reasoning_cost_pico"] == REASONING_PICO
    assert row["streamed"] == 0


@pytest.mark.covers("openai", "responses.create", "async", "plain")
def test_create_async(store_db, openai_client):
    client = openai_client(OpenAIServer(), is_async=True)
    response = asyncio.run(client.responses.create(model="gpt-5-mini", input="Where is my order #1042?"))

    assert response.id == RESPONSE_ID
    assert_full_usage(call_row(store_db))


@pytest.mark.covers("openai", "responses.create", "sync", "stream")
def test_create_stream(store_db, openai_client):
    client = openai_client(OpenAIServer())
    stream = client.responses.create(model="gpt-5-mini", input=INPUT, stream=True)
    events = list(stream)

    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "Your order #1042 ships today."
    row = call_row(store_db)
    assert_full_usage(row)
    assert row["streamed"] == 1


@pytest.mark.covers("openai", "responses.create", "async", "stream")
def test_create_stream_async(store_db, openai_client):
    client = openai_client(OpenAIServer(), is_async=True)

    async def main():
        stream = await client.responses.create(model="gpt-5-mini", input=INPUT, stream=True)
        return [event.type async for event in stream]

    types = asyncio.run(main())
    assert types[-1] == "response.completed"
    assert_full_usage(call_row(store_db))


@pytest.mark.covers("openai", "responses.stream", "sync", "stream")
def test_stream_helper_records_one_call(store_db, openai_client):
    # responses.stream() calls responses.create(stream=True): one call, not two.
    client = openai_client(OpenAIServer())
    with client.responses.stream(model="gpt-5-mini", input=INPUT) as stream:
        for _ in stream:
            pass
        final = stream.get_final_response()

    assert final.output_text == "Your order #1042 ships today."
    assert_full_usage(call_row(store_db))


@pytest.mark.covers("openai", "responses.stream", "async", "stream")
def test_stream_helper_async(store_db, openai_client):
    client = openai_client(OpenAIServer(), is_async=True)

    async def main():
        async with client.responses.stream(model="gpt-5-mini", input=INPUT) as stream:
            async for _ in stream:
                pass
            return await stream.get_final_response()

    assert asyncio.run(main()).id == RESPONSE_ID
    assert_full_usage(call_row(store_db))


@pytest.mark.covers("openai", "responses.parse", "sync", "plain")
def test_parse(store_db, openai_client):
    client = openai_client(OpenAIServer(response_text=STRUCTURED_ANSWER))
    parsed = client.responses.parse(model="gpt-5-mini", input=INPUT, text_format=TicketStatus)

    assert isinstance(parsed, ParsedResponse)
    assert parsed.output_parsed == TicketStatus(ticket="T-1042", status="shipped")
    assert_full_usage(call_row(store_db))


@pytest.mark.covers("openai", "responses.parse", "async", "plain")
def test_parse_async(store_db, openai_client):
    client = openai_client(OpenAIServer(response_text=STRUCTURED_ANSWER), is_async=True)
    parsed = asyncio.run(client.responses.parse(model="gpt-5-mini", input=INPUT, text_format=TicketStatus))

    assert parsed.output_parsed.status == "shipped"
    assert_full_usage(call_row(store_db))


# --- price modifiers the response reports ------------------------------------------------------------


@pytest.mark.parametrize(("tier", "hand_pico"), [("flex", 1_015_000_000), ("priority", 3_654_000_000)])
def test_service_tier_the_response_reports_selects_its_prices(store_db, openai_client, tier, hand_pico):
    # gpt-5-mini flex: $0.125 / $0.0125 / $1.00; priority: $0.45 / $0.045 / $3.60 per million.
    client = openai_client(OpenAIServer(response_fields={"service_tier": tier}))
    # In the body, not as the argument: Responses.create has no service_tier argument before openai 1.75.
    client.responses.create(model="gpt-5-mini", input=INPUT, extra_body={"service_tier": tier})

    row = call_row(store_db)
    assert row["service_tier"] == tier
    expected = genai_price("openai", GPT5_MINI, context={"service_tier": tier}, **USAGE)
    assert row["cost_pico"] == hand_pico == to_pico(expected)


# --- abandoned and failed streams --------------------------------------------------------------------


def test_stream_broken_off_is_recorded_once_incomplete_and_estimated(store_db, openai_client):
    client = openai_client(OpenAIServer())
    with unitcost.task("support_ticket"):
        stream = client.responses.create(model="gpt-5-mini", input=INPUT, instructions=INSTRUCTIONS, stream=True)
        for event in stream:
            if event.type == "response.output_text.delta":
                break  # before response.completed: no usage seen
        stream.close()
    gc.collect()

    row = call_row(store_db)
    assert (row["incomplete"], row["estimated"]) == (1, 1)
    assert row["input_tokens"] > 0 and row["cost_pico"] > 0  # estimated, never recorded as free


def test_stream_helper_left_early_ends_the_call_when_the_helper_closes(store_db, openai_client):
    # ResponseStream.close() closes the HTTP response, not the stream: that must end the call too.
    client = openai_client(OpenAIServer())
    with client.responses.stream(model="gpt-5-mini", input=INPUT) as stream:
        for event in stream:
            if event.type == "response.output_text.delta":
                break
        kept = stream  # the caller still holds the stream: no garbage collection to rely on
    (row,) = store_rows(store_db, "calls")
    assert (row["incomplete"], row["estimated"]) == (1, 1)
    assert kept is stream


def test_async_stream_abandoned_by_an_exception_in_the_loop_body(store_db, openai_client):
    client = openai_client(OpenAIServer(), is_async=True)
    mine = RuntimeError("the caller's own bug")

    async def main():
        stream = await client.responses.create(model="gpt-5-mini", input=INPUT, stream=True)
        async with stream:
            async for _ in stream:
                raise mine

    with pytest.raises(RuntimeError) as raised:
        asyncio.run(main())
    assert raised.value is mine  # the caller's exception, unchanged
    row = call_row(store_db)
    assert (row["incomplete"], row["estimated"], row["error_type"]) == (1, 1, None)


def test_failed_response_is_an_error_priced_from_its_usage(store_db, openai_client):
    usage = responses_usage(2000, 40)
    server = OpenAIServer(
        final="response.failed", response_usage=usage,
        response_fields={"error": {"code": "server_error", "message": "The model failed."}},
    )
    client = openai_client(server)
    list(client.responses.create(model="gpt-5-mini", input=INPUT, stream=True))

    row = call_row(store_db)
    assert row["error_type"] == "server_error"
    assert (row["input_tokens"], row["output_tokens"]) == (2000, 40)
    assert row["cost_pico"] == (2000 * 250_000 + 40 * 2_000_000)


def test_http_error_whose_body_carries_usage_is_priced_from_it(store_db, openai_client):
    def handler(request):
        body = {"error": {"message": "Output blocked.", "type": "invalid_request_error", "code": "content_filter"},
                "usage": responses_usage(1000, 0)}
        return openai_http.Response(400, json=body)

    client = openai_client(handler, max_retries=0)
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model="gpt-5-mini", input=INPUT)

    row = call_row(store_db)
    assert row["error_type"] == "BadRequestError"
    assert row["input_tokens"] == 1000
    assert row["cost_pico"] == 1000 * 250_000

"""The Bedrock adapter end to end: a real boto3 ``bedrock-runtime`` client over real HTTP to a local
server answering as bedrock-runtime.<region>.amazonaws.com does (JSON bodies, and AWS event-stream
frames for the streams, encoded here byte by byte), through unitcost's lifecycle and store exporter,
to the rows in the store. Prices are worked out by hand from genai-prices' Bedrock rates.
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
from decimal import Decimal
from typing import Any
from urllib.parse import unquote

import pytest
from conftest import import_or_fail, store_rows
from genai_prices import calc_price, extract_usage
from providers.local_server import LocalServer

import unitcost
from unitcost.common.money import to_pico

boto3 = import_or_fail("boto3")
from botocore.config import Config  # noqa: E402 - after the import check
from botocore.exceptions import ClientError, EventStreamError  # noqa: E402
from botocore.response import StreamingBody  # noqa: E402
from botocore.stub import Stubber  # noqa: E402

pytestmark = pytest.mark.usefixtures("store_db")

# A cross-region inference profile: priced at Bedrock's regional rates for Claude Sonnet 4.6:
# $3.30/M input, $0.33/M cache read, $4.125/M 5-minute cache write, $6.60/M 1-hour write, $16.50/M output.
SONNET = "us.anthropic.claude-sonnet-4-6-v1:0"
LLAMA = "meta.llama3-3-70b-instruct-v1:0"  # $0.72/M input and output
NOVA = "amazon.nova-pro-v1:0"  # $0.80/M input, $3.20/M output
USAGE = {"inputTokens": 1500, "outputTokens": 42, "totalTokens": 3590,
         "cacheReadInputTokens": 1024, "cacheWriteInputTokens": 1024,
         "cacheDetails": [{"ttl": "5m", "inputTokens": 1024}]}
# By hand: 1500 * $3.30 + 1024 * $0.33 + 1024 * $4.125 + 42 * $16.50, per million = $0.01020492.
HAND_COMPUTED_PICO = 10_204_920_000
MESSAGES = [{"role": "user", "content": [{"text": "Where is my order #1042? It was due on Monday."}]}]
ANSWER = "Your order ships today."
REQUEST_ID = "5b9f1c1e-7d2a-4c55-9a57-2f0e3c7b9d10"


# --- AWS event-stream frames (application/vnd.amazon.eventstream) -----------------------------------


def _header(name: str, value: str) -> bytes:
    n, v = name.encode(), value.encode()
    return struct.pack("B", len(n)) + n + b"\x07" + struct.pack(">H", len(v)) + v


def frame(event_type: str, payload: Any, *, exception: bool = False) -> bytes:
    """One event-stream message: prelude (lengths + CRC32), string headers, JSON payload, CRC32."""
    kind = _header(":exception-type" if exception else ":event-type", event_type)
    headers = kind + _header(":content-type", "application/json")
    headers += _header(":message-type", "exception" if exception else "event")
    data = json.dumps(payload).encode()
    prelude = struct.pack(">II", 12 + len(headers) + len(data) + 4, len(headers))
    prelude += struct.pack(">I", binascii.crc32(prelude) & 0xFFFFFFFF)
    message = prelude + headers + data
    return message + struct.pack(">I", binascii.crc32(message) & 0xFFFFFFFF)


def converse_events(*, usage: dict[str, Any] = USAGE, error_after: int | None = None) -> list[bytes]:
    events = [
        frame("messageStart", {"role": "assistant"}),
        frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Your order "}}),
        frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "ships today."}}),
        frame("contentBlockStop", {"contentBlockIndex": 0}),
        frame("messageStop", {"stopReason": "end_turn"}),
        frame("metadata", {"usage": usage, "metrics": {"latencyMs": 842}}),
    ]
    if error_after is not None:
        error = {"message": "The model stream failed.", "originalStatusCode": 500}
        events = events[:error_after] + [frame("modelStreamErrorException", error, exception=True)]
    return events


def chunk(payload: dict[str, Any]) -> bytes:
    return frame("chunk", {"bytes": base64.b64encode(json.dumps(payload).encode()).decode()})


ANTHROPIC_USAGE = {"input_tokens": 1500, "output_tokens": 42, "cache_read_input_tokens": 1024,
                   "cache_creation_input_tokens": 1024}
METRICS = {"inputTokenCount": 1500, "outputTokenCount": 42, "invocationLatency": 901, "firstByteLatency": 312}


def anthropic_chunks() -> list[bytes]:
    """Anthropic Messages events as Bedrock streams them; the last one carries Bedrock's metrics."""
    start_usage = {**ANTHROPIC_USAGE, "output_tokens": 1}
    return [
        chunk({"type": "message_start", "message": {
            "id": "msg_bdrk_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-6", "content": [],
            "usage": start_usage,
        }}),
        chunk({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        chunk({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": ANSWER}}),
        chunk({"type": "content_block_stop", "index": 0}),
        chunk({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 42}}),
        chunk({"type": "message_stop", "amazon-bedrock-invocationMetrics": METRICS}),
    ]


def llama_chunks() -> list[bytes]:
    return [
        chunk({"generation": "Your order ", "prompt_token_count": 250, "generation_token_count": 3,
               "stop_reason": None}),
        chunk({"generation": "ships today.", "prompt_token_count": None, "generation_token_count": 60,
               "stop_reason": "stop", "amazon-bedrock-invocationMetrics":
               {"inputTokenCount": 250, "outputTokenCount": 60, "invocationLatency": 640, "firstByteLatency": 210}}),
    ]


class BedrockServer:
    """Answers bedrock-runtime's Converse, ConverseStream, InvokeModel and
    InvokeModelWithResponseStream by the model id in the path."""

    EVENTS = {"Content-Type": "application/vnd.amazon.eventstream", "x-amzn-RequestId": REQUEST_ID}

    def __init__(self, *, converse_stream: list[bytes] | None = None) -> None:
        self.converse_stream = converse_stream if converse_stream is not None else converse_events()

    def __call__(self, method: str, path: str, request: Any) -> tuple[int, dict[str, str], Any]:
        _, _, model, operation = path.split("/", 3)
        model = unquote(model)
        json_headers = {"Content-Type": "application/json", "x-amzn-RequestId": REQUEST_ID}
        if operation == "converse":
            return 200, json_headers, {
                "output": {"message": {"role": "assistant", "content": [{"text": ANSWER}]}},
                "stopReason": "end_turn", "usage": USAGE, "metrics": {"latencyMs": 842},
            }
        if operation == "converse-stream":
            return 200, self.EVENTS, self.converse_stream
        if operation == "invoke-with-response-stream":
            return 200, self.EVENTS, anthropic_chunks() if "anthropic" in model else llama_chunks()
        if operation == "invoke":
            return self.invoke(model)
        return 404, json_headers, {"message": f"no route {path}"}

    def invoke(self, model: str) -> tuple[int, dict[str, str], Any]:
        headers = {"Content-Type": "application/json", "x-amzn-RequestId": REQUEST_ID}
        if "anthropic" in model:
            body: dict[str, Any] = {
                "id": "msg_bdrk_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-6",
                "content": [{"type": "text", "text": ANSWER}], "stop_reason": "end_turn", "usage": ANTHROPIC_USAGE,
            }
            counts = (1500, 42)
        elif model.startswith("meta."):
            body = {"generation": ANSWER, "prompt_token_count": 250, "generation_token_count": 60,
                    "stop_reason": "stop"}
            counts = (250, 60)
        else:  # Amazon Nova
            body = {"output": {"message": {"role": "assistant", "content": [{"text": ANSWER}]}},
                    "stopReason": "end_turn",
                    "usage": {"inputTokens": 800, "outputTokens": 120, "totalTokens": 920,
                              "cacheReadInputTokenCount": 0, "cacheWriteInputTokenCount": 0}}
            counts = (800, 120)
        headers["X-Amzn-Bedrock-Input-Token-Count"] = str(counts[0])
        headers["X-Amzn-Bedrock-Output-Token-Count"] = str(counts[1])
        return 200, headers, body


def validation_error(method: str, path: str, request: Any) -> tuple[int, dict[str, str], Any]:
    headers = {"Content-Type": "application/json", "x-amzn-ErrorType": "ValidationException:http://internal.amazon.com/",
               "x-amzn-RequestId": REQUEST_ID}
    return 400, headers, {"message": "The provided model identifier is invalid."}


@pytest.fixture
def bedrock():
    """``bedrock(handler=BedrockServer())`` -> a real boto3 bedrock-runtime client for a local server."""
    servers: list[LocalServer] = []

    def make(handler: Any = None) -> Any:
        server = LocalServer(handler or BedrockServer()).__enter__()
        servers.append(server)
        return boto3.client(
            "bedrock-runtime", region_name="us-east-1", endpoint_url=server.url,
            aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            config=Config(retries={"max_attempts": 1}),
        )

    yield make
    for server in servers:
        server.__exit__(None, None, None)


def rows(db):
    return store_rows(db, "calls")


def assert_sonnet_usage(row, *, streamed=False):
    assert (row["provider"], row["operation"], row["model"]) == ("aws.bedrock", "chat", SONNET)
    assert row["input_tokens"] == 1500  # Bedrock's inputTokens: already without the cache buckets
    assert row["cache_read_tokens"] == 1024
    assert (row["cache_write_tokens"], row["cache_write_1h_tokens"]) == (1024, 0)
    assert (row["output_tokens"], row["reasoning_tokens"]) == (42, 0)
    assert row["cost_pico"] == HAND_COMPUTED_PICO
    assert row["price_source"] == "genai-prices"
    assert (row["estimated"], row["streamed"], row["incomplete"], row["error_type"]) == (0, int(streamed), 0, None)


def test_hand_computed_price_agrees_with_genai_prices():
    # genai-prices' own Bedrock usage extractor and price, from the Converse response's usage.
    extracted = extract_usage({"model": SONNET, "usage": USAGE}, provider_id="aws")
    assert calc_price(extracted.usage, SONNET, provider_id="aws").total_price == Decimal("0.01020492")
    assert to_pico(Decimal("0.01020492")) == HAND_COMPUTED_PICO


@pytest.mark.covers("boto3 bedrock-runtime", "converse", "sync", "plain")
def test_converse(store_db, bedrock):
    client = bedrock()
    with unitcost.task("support_ticket", key="T-1042") as run:
        response = client.converse(modelId=SONNET, messages=MESSAGES)

    assert response["output"]["message"]["content"][0]["text"] == ANSWER  # the caller's result, untouched
    assert response["usage"] == {k: v for k, v in USAGE.items()}
    (row,) = rows(store_db)
    assert row["run_id"] == run.id
    assert_sonnet_usage(row)


def test_one_hour_cache_writes_are_priced_apart(store_db, bedrock):
    usage = {**USAGE, "cacheDetails": [{"ttl": "1h", "inputTokens": 1024}]}

    def server(method, path, request):
        status, headers, body = BedrockServer()(method, path, request)
        return status, headers, {**body, "usage": usage}

    bedrock(server).converse(modelId=SONNET, messages=MESSAGES)
    (row,) = rows(store_db)
    assert (row["cache_write_tokens"], row["cache_write_1h_tokens"]) == (0, 1024)
    assert row["cost_pico"] == 4_950_000_000 + 337_920_000 + 1024 * 6_600_000 + 693_000_000


def test_a_global_profile_is_priced_at_global_rates(store_db, bedrock):
    bedrock().converse(modelId="global.anthropic.claude-sonnet-4-6-v1:0", messages=MESSAGES)
    (row,) = rows(store_db)
    # $3, $0.30, $3.75, $15 per million: 1500 * 3 + 1024 * 0.30 + 1024 * 3.75 + 42 * 15
    assert row["cost_pico"] == 4_500_000_000 + 307_200_000 + 3_840_000_000 + 630_000_000


def test_converse_through_botocore_stubber(store_db):
    client = boto3.client("bedrock-runtime", region_name="us-east-1", aws_access_key_id="AKIDEXAMPLE",
                          aws_secret_access_key="secret")
    with Stubber(client) as stub:
        stub.add_response("converse", {
            "output": {"message": {"role": "assistant", "content": [{"text": ANSWER}]}},
            "stopReason": "end_turn", "usage": USAGE, "metrics": {"latencyMs": 842},
        })
        client.converse(modelId=SONNET, messages=MESSAGES)
    (row,) = rows(store_db)
    assert_sonnet_usage(row)
    assert row["streamed"] == 0


@pytest.mark.covers("boto3 bedrock-runtime", "converse_stream", "sync", "stream")
def test_converse_stream(store_db, bedrock):
    client = bedrock()
    with unitcost.task("support_ticket") as run:
        response = client.converse_stream(modelId=SONNET, messages=MESSAGES)
        events = list(response["stream"])

    assert [next(iter(e)) for e in events] == [
        "messageStart", "contentBlockDelta", "contentBlockDelta", "contentBlockStop", "messageStop", "metadata",
    ]  # every event, as sent
    (row,) = rows(store_db)
    assert row["run_id"] == run.id
    assert_sonnet_usage(row, streamed=True)


def test_abandoned_converse_stream_is_estimated_and_incomplete(store_db, bedrock):
    response = bedrock().converse_stream(modelId=SONNET, messages=MESSAGES)
    for event in response["stream"]:
        if "contentBlockDelta" in event:
            break
    response["stream"].close()

    (row,) = rows(store_db)
    assert (row["incomplete"], row["estimated"], row["streamed"]) == (1, 1, 1)
    # The usage comes only in the last event: the request's 47 characters and the 11 seen, at four
    # characters a token, plus four tokens for the one message.
    assert (row["input_tokens"], row["output_tokens"]) == (12 + 4, 3)
    assert row["cost_pico"] == 16 * 3_300_000 + 3 * 16_500_000


def test_error_event_in_a_stream_passes_through(store_db, bedrock):
    response = bedrock(BedrockServer(converse_stream=converse_events(error_after=3))).converse_stream(
        modelId=SONNET, messages=MESSAGES
    )
    seen = []
    with pytest.raises(EventStreamError) as raised:
        for event in response["stream"]:
            seen.append(next(iter(event)))
    assert seen == ["messageStart", "contentBlockDelta", "contentBlockDelta"]
    assert raised.value.response["Error"]["Code"] == "modelStreamErrorException"
    (row,) = rows(store_db)
    assert row["error_type"] == "EventStreamError" and row["incomplete"] == 1 and row["estimated"] == 1


def test_error_passes_through_unchanged_and_is_recorded(store_db, bedrock):
    client = bedrock(validation_error)
    with pytest.raises(ClientError) as raised, unitcost.task("support_ticket") as run:
        client.converse(modelId=SONNET, messages=MESSAGES)

    assert type(raised.value) is client.exceptions.ValidationException  # botocore's own class, unchanged
    assert raised.value.response["Error"]["Code"] == "ValidationException"
    (row,) = rows(store_db)
    assert row["run_id"] == run.id
    assert row["error_type"] == "ValidationException"
    assert (row["input_tokens"], row["output_tokens"], row["cost_pico"]) == (0, 0, 0)


def invoke(client: Any, model: str) -> Any:
    request = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 512,
               "messages": [{"role": "user", "content": MESSAGES[0]["content"][0]["text"]}]}
    return client.invoke_model(modelId=model, body=json.dumps(request))


@pytest.mark.covers("boto3 bedrock-runtime", "invoke_model", "sync", "plain")
def test_invoke_model_anthropic(store_db, bedrock):
    response = invoke(bedrock(), SONNET)
    assert isinstance(response["body"], StreamingBody)
    assert json.loads(response["body"].read())["content"][0]["text"] == ANSWER  # the same bytes
    (row,) = rows(store_db)
    assert_sonnet_usage(row)


@pytest.mark.parametrize(("model", "tokens", "cost"), [
    (LLAMA, (250, 60), (250 + 60) * 720_000),
    (NOVA, (800, 120), 800 * 800_000 + 120 * 3_200_000),
])
def test_invoke_model_meta_and_amazon(store_db, bedrock, model, tokens, cost):
    response = invoke(bedrock(), model)
    assert ANSWER in response["body"].read().decode()
    (row,) = rows(store_db)
    assert (row["model"], row["input_tokens"], row["output_tokens"], row["cost_pico"]) == (model, *tokens, cost)


def test_invoke_model_of_an_unknown_body_reads_the_token_headers(store_db, bedrock):
    def server(method, path, request):
        status, headers, _ = BedrockServer().invoke(LLAMA)
        return status, headers, {"completion": ANSWER}  # a body unitcost does not know

    invoke(bedrock(server), LLAMA)
    (row,) = rows(store_db)
    assert (row["input_tokens"], row["output_tokens"]) == (250, 60)


@pytest.mark.covers("boto3 bedrock-runtime", "invoke_model_with_response_stream", "sync", "stream")
def test_invoke_model_with_response_stream_anthropic(store_db, bedrock):
    response = bedrock().invoke_model_with_response_stream(modelId=SONNET, body=json.dumps({"max_tokens": 512}))
    kinds = [json.loads(e["chunk"]["bytes"])["type"] for e in response["body"]]
    assert kinds == ["message_start", "content_block_start", "content_block_delta", "content_block_stop",
                     "message_delta", "message_stop"]
    (row,) = rows(store_db)
    assert_sonnet_usage(row, streamed=True)


def test_invoke_model_with_response_stream_llama(store_db, bedrock):
    response = bedrock().invoke_model_with_response_stream(modelId=LLAMA, body=json.dumps({"prompt": "hi"}))
    text = "".join(json.loads(e["chunk"]["bytes"])["generation"] for e in response["body"])
    assert text == ANSWER
    (row,) = rows(store_db)
    assert (row["input_tokens"], row["output_tokens"], row["incomplete"]) == (250, 60, 0)
    assert row["cost_pico"] == 310 * 720_000


def test_other_aws_services_are_not_recorded(store_db):
    s3 = boto3.client("s3", region_name="us-east-1", aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret")
    with Stubber(s3) as stub:
        stub.add_response("list_buckets", {"Buckets": [], "Owner": {"ID": "1"}})
        assert s3.list_buckets()["Buckets"] == []
    assert rows(store_db) == []


def test_invoke_model_body_reads_as_before_in_pieces(store_db, bedrock):
    response = invoke(bedrock(), NOVA)
    body = response["body"]
    first = body.read(10)
    rest = b"".join(body.iter_chunks(chunk_size=7))
    assert json.loads(first + rest)["usage"]["inputTokens"] == 800
    assert body.read() == b""


def test_instrument_one_client_records_that_client_only(store_db, bedrock):
    unitcost.uninstrument()  # the fixture turned the global switch on
    watched, other = bedrock(), bedrock()
    unitcost.instrument(watched)
    try:
        watched.converse(modelId=SONNET, messages=MESSAGES)
        other.converse(modelId=SONNET, messages=MESSAGES)
    finally:
        unitcost.uninstrument()
    (row,) = rows(store_db)
    assert_sonnet_usage(row)


def test_content_is_captured_only_when_asked(make_store, bedrock):
    db = make_store(capture_content=True)
    client = bedrock()
    client.converse(modelId=SONNET, messages=MESSAGES, system=[{"text": "You are Acme's support assistant."}])
    invoke(client, SONNET)
    captured = store_rows(db, "SELECT k.input_messages, k.output_messages FROM calls c JOIN call_content k "
                              "USING (span_id) ORDER BY c.started_ns")
    assert len(captured) == 2
    converse, invoked = ([json.loads(r["input_messages"]), json.loads(r["output_messages"])] for r in captured)
    question = {"role": "user", "parts": [{"type": "text", "content": MESSAGES[0]["content"][0]["text"]}]}
    assert converse[0] == [
        {"role": "system", "parts": [{"type": "text", "content": "You are Acme's support assistant."}]}, question,
    ]
    assert invoked[0] == [question]
    for _, output in (converse, invoked):
        assert output[0]["parts"] == [{"type": "text", "content": ANSWER}]

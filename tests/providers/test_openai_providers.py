"""OpenAI-compatible servers behind the ``openai`` client: the provider named from the host, priced from
genai-prices where it knows that provider, else from the price file (per token or per second), else
unpriced; and `unitcost.record_usage` for clients unitcost does not patch."""

from __future__ import annotations

from decimal import Decimal

import openai
import pytest
from conftest import GPT4O_MINI, PROMPT, ChatServer, mock_http_client, store_rows, usage_block
from providers.openai_fixtures import genai_price

import unitcost
from unitcost.common.money import to_pico
from unitcost.pricing.book import GENAI_PRICES_PROVIDERS, genai_prices_provider
from unitcost.providers.openai import provider_for_host

USAGE = usage_block(1000, 500, cached=200, reasoning=100)


def call_row(db):
    (row,) = store_rows(db, "calls")
    return row


@pytest.mark.parametrize(
    ("host", "port", "provider"),
    [
        ("api.openai.com", 443, "openai"),
        ("acme-prod.openai.azure.com", 443, "azure.ai.openai"),
        ("acme.cognitiveservices.azure.com", 443, "azure.ai.openai"),
        ("api.groq.com", 443, "groq"),
        ("api.together.xyz", 443, "together"),
        ("openrouter.ai", 443, "openrouter"),
        ("api.x.ai", 443, "x_ai"),
        ("api.mistral.ai", 443, "mistral_ai"),
        ("generativelanguage.googleapis.com", 443, "gcp.gemini"),
        ("localhost", 11434, "ollama"),
        ("gpu-box.internal", 11434, "ollama"),
        ("gpu-box.internal", 8000, "openai"),  # vLLM, or any host unitcost does not know
        ("127.0.0.1", 51234, "openai"),
        (None, None, "openai"),
    ],
)
def test_provider_is_named_from_the_host(host, port, provider):
    assert provider_for_host(host, port) == provider


def test_provider_names_map_to_genai_prices_ids_in_one_place():
    assert genai_prices_provider("azure.ai.openai") == "azure"
    assert genai_prices_provider("x_ai") == "x-ai"
    assert genai_prices_provider("gcp.gemini") == "google"
    assert genai_prices_provider("groq") == "groq"  # the same in both vocabularies
    assert genai_prices_provider("ollama") == "ollama"  # genai-prices does not know it: unpriced
    assert set(GENAI_PRICES_PROVIDERS.values()) <= {"azure", "x-ai", "mistral", "google", "aws", "ibm"}


def test_azure_deployment_is_priced_by_the_model_that_answered(store_db):
    server = ChatServer(usage=USAGE)
    seen = []

    def handler(request):
        seen.append(request.url)
        return server(request)

    client = openai.AzureOpenAI(
        api_key="azure-test", api_version="2024-10-21", azure_endpoint="https://acme-prod.openai.azure.com",
        http_client=mock_http_client("openai", handler),
    )
    client.chat.completions.create(model="support-4o", messages=PROMPT)  # a deployment name
    client.close()

    assert seen[0].path == "/openai/deployments/support-4o/chat/completions"
    row = call_row(store_db)
    assert (row["provider"], row["model"], row["response_model"]) == ("azure.ai.openai", "support-4o", GPT4O_MINI)
    assert row["cost_pico"] == 435_000_000 == to_pico(
        genai_price("azure", GPT4O_MINI, input_tokens=1000, cache_read_tokens=200, output_tokens=500)
    )


def test_groq_is_priced_from_genai_prices_groq_list(store_db, openai_client):
    # llama-3.3-70b-versatile on Groq: $0.59 input, $0.79 output per million.
    model = "llama-3.3-70b-versatile"
    client = openai_client(ChatServer(model=model, usage=usage_block(1000, 500)), base_url="https://api.groq.com/openai/v1")
    client.chat.completions.create(model=model, messages=PROMPT)
    row = call_row(store_db)
    assert row["provider"] == "groq"
    assert row["cost_pico"] == 985_000_000 == to_pico(genai_price("groq", model, input_tokens=1000, output_tokens=500))


def test_a_self_hosted_model_is_unpriced_without_a_price(store_db, openai_client):
    client = openai_client(ChatServer(model="llama3.1:8b", usage=usage_block(300, 40)), base_url="http://localhost:11434/v1")
    client.chat.completions.create(model="llama3.1:8b", messages=PROMPT)
    row = call_row(store_db)
    assert (row["provider"], row["input_tokens"], row["cost_pico"]) == ("ollama", 300, None)


def test_a_self_hosted_model_priced_per_second(make_store, openai_client, tmp_path):
    (tmp_path / "unitcost.toml").write_text(
        '[[price]]\nmodel = "llama3.1*"\nprovider = "ollama"\nhourly_usd = 2.40\nconcurrency = 4\n'
    )
    db = make_store()
    client = openai_client(ChatServer(model="llama3.1:8b", usage=usage_block(300, 40)), base_url="http://localhost:11434/v1")
    client.chat.completions.create(model="llama3.1:8b", messages=PROMPT)

    row = call_row(db)
    seconds = Decimal(row["ended_ns"] - row["started_ns"]) / Decimal(1_000_000_000)
    assert row["price_source"] == "override"
    # The rate per second first, as the price file makes it: the other order can round a half pico apart.
    assert row["cost_pico"] == to_pico(Decimal("2.40") / 3600 / 4 * seconds)
    assert row["cost_pico"] > 0


def test_price_file_hourly_price_is_exact_for_a_known_duration(make_store, tmp_path):
    # $2.40 an hour shared by 4 concurrent calls, for 1.5 s: 1.5 * 2.40 / 3600 / 4 = $0.00025.
    (tmp_path / "unitcost.toml").write_text('[[price]]\nmodel = "qwen*"\nhourly_usd = 2.40\nconcurrency = 4\n')
    db = make_store()
    unitcost.record_usage("vllm", "qwen2.5-7b-instruct", input_tokens=900, output_tokens=100, duration_s=1.5)
    row = call_row(db)
    assert row["ended_ns"] - row["started_ns"] == 1_500_000_000
    assert row["cost_pico"] == 250_000_000


@pytest.mark.parametrize(
    "content",
    [
        '[[price]]\nmodel = "x"\nconcurrency = 4\ninput_mtok = 1.0\n',
        '[[price]]\nmodel = "x"\nhourly_usd = 1\nconcurrency = 0\n',
    ],
)
def test_concurrency_needs_an_hourly_price_and_must_be_positive(tmp_path, content):
    path = tmp_path / "prices.toml"
    path.write_text(content)
    with pytest.raises(unitcost.ConfigurationError, match="concurrency"):
        unitcost.configure(service_name="tests", db=tmp_path / "x.db", price_file=path)


# --- record_usage ------------------------------------------------------------------------------------------


def test_record_usage_is_a_call_of_the_current_task_priced_like_any_other(store_db):
    # gemini-2.5-flash: $0.30 input, $0.03 cached input, $2.50 output per million:
    # 600 * 0.30 + 400 * 0.03 + 300 * 2.50 = 942 per million.
    with unitcost.task("support_ticket", key="T-9") as run:
        unitcost.record_usage(
            "gcp.gemini", "gemini-2.5-flash", input_tokens=1000, cache_read_tokens=400, output_tokens=300,
            reasoning_tokens=100, duration_s=2.5,
        )
    row = call_row(store_db)
    assert (row["run_id"], row["provider"], row["model"], row["operation"]) == (
        run.id, "gcp.gemini", "gemini-2.5-flash", "chat",
    )
    assert (row["input_tokens"], row["cache_read_tokens"], row["output_tokens"], row["reasoning_tokens"]) == (
        600, 400, 200, 100,
    )
    assert row["ended_ns"] - row["started_ns"] == 2_500_000_000
    assert row["cost_pico"] == 942_000_000 == to_pico(
        genai_price("google", "gemini-2.5-flash", input_tokens=1000, cache_read_tokens=400, output_tokens=300,
                    output_reasoning_tokens=100)
    )
    assert row["estimated"] == 0


def test_record_usage_batch_and_estimated(store_db):
    # gpt-4o-mini in the Batch API: half price on input and output ($0.075 / $0.30), cached input $0.075.
    unitcost.record_usage(
        "openai", "gpt-4o-mini", input_tokens=1000, cache_read_tokens=200, output_tokens=500, batch=True,
        estimated=True,
    )
    row = call_row(store_db)
    assert row["cost_pico"] == 225_000_000 == to_pico(
        genai_price("openai", "gpt-4o-mini", context={"processing": "batch"}, input_tokens=1000,
                    cache_read_tokens=200, output_tokens=500)
    )
    assert row["estimated"] == 1


def test_record_usage_of_an_unknown_provider_is_unpriced(store_db):
    unitcost.record_usage("acme-cloud", "acme-llm", input_tokens=10, output_tokens=5)
    assert call_row(store_db)["cost_pico"] is None


def test_record_usage_with_bad_counts_keeps_an_unpriced_call_and_never_raises(store_db, monkeypatch):
    # A bad count no longer costs the call (issue "Production process models and faults", item 7): the
    # call is kept, unpriced, and the bad field named in a warning (tests/guarantees/test_guarantees_faults.py).
    monkeypatch.setenv("UNITCOST_STRICT", "0")
    unitcost.record_usage("openai", "gpt-4o-mini", input_tokens="many")  # type: ignore[arg-type]
    rows = store_rows(store_db, "calls")
    assert len(rows) == 1 and rows[0]["cost_pico"] is None

"""Energy and emissions per call, task and success: each number recomputed from ecologits' own
function for the same inputs (provider, model, output tokens, latency), and a self-hosted model's
own figure computed by hand.

    task  kind    call                                                  outcome
    E1    ticket  openai gpt-4o-mini, 500 out, 2.0 s                    resolved
                  anthropic claude-sonnet-4-5, 500 out (300 reasoning), 2.0 s
    E2    ticket  openai my-finetune (ecologits does not know it)        resolved
    E3    ticket  ollama llama3.1:8b, 500 out, 1.0 s: [[energy]] 0.0005 kWh per 1k output tokens in FRA:
                  500 / 1000 * 0.0005 = 0.00025 kWh; 0.00025 * FRA's mix (ecologits' data) kgCO2eq
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from ecologits.electricity_mix_repository import electricity_mixes
from ecologits.tracers.utils import llm_impacts
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanContext, TraceFlags

from unitcost.cli.main import cli
from unitcost.exporters.store import StoreSpanExporter
from unitcost.pricing.book import PriceBook

T0 = 1_764_028_800 * 10**9
S = 10**9
PRICES = '[[energy]]\nmodel = "llama3.1*"\nprovider = "ollama"\nkwh_per_1k_output_tokens = 0.0005\nzone = "FRA"\n'


def _span(span_id: int, attributes: dict, start: int, end: int) -> ReadableSpan:
    return ReadableSpan(
        name="span", context=SpanContext(9, span_id, False, TraceFlags(1)), attributes=attributes,
        start_time=start, end_time=end,
    )


def _call(span_id: int, run: int, provider: str, model: str, out: int, seconds: float, reasoning: int = 0):
    start = T0 + span_id * S
    return _span(span_id, {
        "unitcost.span.type": "llm", "gen_ai.operation.name": "chat", "gen_ai.provider.name": provider,
        "gen_ai.request.model": model, "unitcost.task.id": f"{run:016x}", "gen_ai.usage.input_tokens": 1000,
        "gen_ai.usage.output_tokens": out, "gen_ai.usage.reasoning.output_tokens": reasoning,
    }, start, start + int(seconds * S))


def _task(run: int, key: str):
    return _span(run, {"unitcost.span.type": "task", "unitcost.task.kind": "ticket", "unitcost.task.key": key,
                       "unitcost.outcome.label": "resolved", "unitcost.outcome.success": True}, T0, T0 + 60 * S)


def _nano(v: float) -> int:
    return int(round(v * 1e9))


def _range(value) -> tuple[int, int]:
    low, high = getattr(value, "min", value), getattr(value, "max", value)
    return _nano(low), _nano(high)


@pytest.fixture
def store(tmp_path):
    (tmp_path / "p.toml").write_text(PRICES)
    book = PriceBook.from_price_file(tmp_path / "p.toml")
    book.energy.turn_on()
    book.load()
    db = tmp_path / "energy.db"
    exporter = StoreSpanExporter(db, book)
    exporter.export([
        _call(0x11, 0xE1, "openai", "gpt-4o-mini", 500, 2.0),
        _call(0x12, 0xE1, "anthropic", "claude-sonnet-4-5", 500, 2.0, reasoning=300),
        _call(0x21, 0xE2, "openai", "my-finetune", 500, 2.0),
        _call(0x31, 0xE3, "ollama", "llama3.1:8b", 500, 1.0),
        _task(0xE1, "E1"), _task(0xE2, "E2"), _task(0xE3, "E3"),
    ])
    exporter.shutdown()
    return db


def _expected():
    mini = llm_impacts("openai", "gpt-4o-mini", 500, 2.0)  # the provider's datacenter zone: ecologits' default
    sonnet = llm_impacts("anthropic", "claude-sonnet-4-5", 500, 2.0)
    energy = [_range(mini.energy.value), _range(sonnet.energy.value), (250_000, 250_000)]  # 0.00025 kWh in µWh
    fra = _nano(0.00025 * electricity_mixes.find_electricity_mix("FRA").gwp)
    gwp = [_range(mini.gwp.value), _range(sonnet.gwp.value), (fra, fra)]
    return energy, gwp


def test_each_call_stores_ecologits_range_or_nothing(store):
    import sqlite3

    with sqlite3.connect(store) as conn:
        rows = {m: r for m, *r in conn.execute(
            "SELECT model, energy_uwh_min, energy_uwh_max, gwp_ug_min, gwp_ug_max, energy_source FROM calls"
        )}
    energy, gwp = _expected()
    assert rows["gpt-4o-mini"][:4] == [*energy[0], *gwp[0]] and rows["gpt-4o-mini"][4].startswith("ecologits 0.11")
    assert rows["claude-sonnet-4-5"][:4] == [*energy[1], *gwp[1]]
    assert rows["llama3.1:8b"] == [250_000, 250_000, gwp[2][0], gwp[2][0], "unitcost.toml"]
    assert rows["my-finetune"] == [None, None, None, None, None]  # unestimated: never 0


def test_report_json_energy_fields_by_hand(store):
    result = CliRunner().invoke(cli, ["report", "--db", str(store), "--format", "json"], catch_exceptions=False)
    (row,) = json.loads(result.output)
    energy, gwp = _expected()
    e_min, e_max = sum(e[0] for e in energy), sum(e[1] for e in energy)  # µWh
    g_min, g_max = sum(g[0] for g in gwp), sum(g[1] for g in gwp)  # µg
    assert row["energy_kwh_min"] == e_min / 1e9 and row["energy_kwh_max"] == e_max / 1e9
    assert row["energy_kwh"] == (e_min + e_max) / 2e9
    assert (row["gwp_kgco2eq_min"], row["gwp_kgco2eq_max"], row["gwp_kgco2eq"]) == (
        g_min / 1e9, g_max / 1e9, (g_min + g_max) / 2e9
    )
    assert row["energy_kwh_per_success"] == (e_min + e_max) / 2e9 / 3
    assert row["unestimated_energy_calls"] == 1
    by_model = {r["group"]["model"]: r for r in json.loads(CliRunner().invoke(
        cli, ["report", "--db", str(store), "--format", "json", "--by", "model"]).output)}
    assert by_model["my-finetune"]["energy_kwh"] == 0 and by_model["my-finetune"]["unestimated_energy_calls"] == 1
    assert by_model["llama3.1:8b"]["energy_kwh"] == 0.00025
    table = CliRunner().invoke(cli, ["report", "--db", str(store), "--wide"]).output  # energy: a low-priority column
    assert f"{(e_min + e_max) / 2e9 * 1000:.3g} Wh+" in table  # + : one call unestimated


def test_a_bad_energy_entry_is_refused(tmp_path):
    from unitcost.common.errors import ConfigurationError

    path = tmp_path / "p.toml"
    path.write_text('[[energy]]\nmodel = "x"\nkwh_per_1k_output_tokens = -1\n')
    with pytest.raises(ConfigurationError, match="kwh_per_1k_output_tokens"):
        PriceBook.from_price_file(path)


@pytest.mark.parametrize(
    ("setting", "env", "estimated"),
    [
        ({}, None, True),  # the default: on, since ecologits is installed
        ({}, "0", False),  # UNITCOST_ENERGY=0 turns the default off
        ({"energy": False}, None, False),
        ({"energy": True}, "0", True),  # an explicit argument wins over the environment
    ],
)
def test_configure_estimates_energy_when_ecologits_is_installed(tmp_path, monkeypatch, setting, env, estimated):
    import unitcost

    monkeypatch.setenv("UNITCOST_STRICT", "1")
    if env is None:
        monkeypatch.delenv("UNITCOST_ENERGY", raising=False)
    else:
        monkeypatch.setenv("UNITCOST_ENERGY", env)
    db = tmp_path / "energy.db"
    unitcost.configure(service_name="energy", db=db, **setting)
    try:
        unitcost.record_usage("openai", "gpt-4o-mini", input_tokens=100, output_tokens=500, duration_s=2.0)
        unitcost.flush()
    finally:
        unitcost.shutdown()
    (row,) = json.loads(CliRunner().invoke(cli, ["report", "--db", str(db), "--format", "json"]).output)
    if not estimated:
        assert row["unestimated_energy_calls"] == 1 and row["energy_kwh"] == 0
    else:
        expected = llm_impacts("openai", "gpt-4o-mini", 500, 2.0).energy.value
        assert row["unestimated_energy_calls"] == 0
        assert row["energy_kwh_min"] == round(expected.min * 1e9) / 1e9

"""Runtime billing: the price file's `[[runtime]]` entries price task and session time, computed by hand.

Price file (below):
    [[runtime]] kind "support_ticket": $0.08 a session-hour, billed per started second
    [[runtime]] session "browser": $0.0001 a second, billed per started minute, at least $0.01
    [[runtime]] provider "ollama", model "llama3*": $3.60 an hour of the call's own time
    [[price]]   provider "ollama", model "llama3.1:8b": hourly_usd 7.20 (exact name: more specific, wins)

Workload (times exact, spans written by the store writer itself):
    run A  support_ticket  90.5 s wall    -> 91 s * 0.08 / 3600                = 0.002022222222
           session browser  75 s          -> 120 s * 0.0001 = 0.012
           llama3.1:8b call 2 s            -> 2 * 7.20 / 3600                   = 0.004
           llama3.2:3b call 1 s            -> 1 * 3.60 / 3600                   = 0.001
    run B  chat (no kind rule) 30 s       -> nothing for its wall time
           session browser   5 s          -> 60 s * 0.0001 = 0.006, below the minimum -> 0.01
"""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from click.testing import CliRunner
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanContext, TraceFlags

import unitcost
from unitcost.cli.main import cli
from unitcost.common.errors import ConfigurationError
from unitcost.exporters.store import StoreSpanExporter
from unitcost.pricing.book import PriceBook
from unitcost.pricing.runtime import TimePrice
from unitcost.store.schema import open_store

PRICES = """
[[runtime]]
kind = "support_ticket"
session_hour_usd = 0.08
rounding = "second"

[[runtime]]
session = "browser"
per_second_usd = 0.0001
rounding = "minute"
minimum_usd = 0.01

[[runtime]]
provider = "ollama"
model = "llama3*"
session_hour_usd = 3.60

[[price]]
model = "llama3.1:8b"
provider = "ollama"
hourly_usd = 7.20
"""

T0 = 1_764_028_800 * 10**9  # 2025-11-25 UTC
S = 10**9
RUN_A, RUN_B = 0xA1, 0xB1
RUNTIME_A = Decimal("0.002022222222")  # 91 s at $0.08/h, to the pico-dollar
SESSION_A, SESSION_B = Decimal("0.012"), Decimal("0.01")
CALLS_A = Decimal("0.004") + Decimal("0.001")


def _span(span_id: int, attributes: dict, start: int, end: int, parent: int | None = None) -> ReadableSpan:
    return ReadableSpan(
        name=str(attributes.get("unitcost.span.type")), context=SpanContext(7, span_id, False, TraceFlags(1)),
        parent=None if parent is None else SpanContext(7, parent, False, TraceFlags(1)),
        attributes=attributes, start_time=start, end_time=end,
    )


def _task(run: int, kind: str, start: int, end: int) -> ReadableSpan:
    return _span(run, {"unitcost.span.type": "task", "unitcost.task.kind": kind, "unitcost.task.id": f"{run:016x}",
                       "unitcost.task.key": kind + "-1"}, start, end)


def _session(span_id: int, run: int, kind: str, start: int, end: int) -> ReadableSpan:
    return _span(span_id, {"unitcost.span.type": "session", "unitcost.step.name": "browser",
                           "unitcost.task.kind": kind, "unitcost.task.id": f"{run:016x}"}, start, end, run)


def _call(span_id: int, run: int, model: str, start: int, end: int) -> ReadableSpan:
    return _span(span_id, {
        "unitcost.span.type": "llm", "gen_ai.operation.name": "chat", "gen_ai.provider.name": "ollama",
        "gen_ai.request.model": model, "unitcost.task.id": f"{run:016x}", "gen_ai.usage.input_tokens": 300,
        "gen_ai.usage.output_tokens": 40,
    }, start, end, run)


@pytest.fixture
def store(tmp_path):
    prices = tmp_path / "unitcost.toml"
    prices.write_text(PRICES)
    db = tmp_path / "runtime.db"
    exporter = StoreSpanExporter(db, PriceBook.from_price_file(prices))
    exporter.export([
        _session(0x11, RUN_A, "support_ticket", T0 + 5 * S, T0 + 80 * S),
        _call(0x12, RUN_A, "llama3.1:8b", T0 + 81 * S, T0 + 83 * S),
        _call(0x13, RUN_A, "llama3.2:3b", T0 + 84 * S, T0 + 85 * S),
        _task(RUN_A, "support_ticket", T0, T0 + 90 * S + S // 2),
        _session(0x21, RUN_B, "chat", T0 + 100 * S, T0 + 105 * S),
        _task(RUN_B, "chat", T0 + 100 * S, T0 + 130 * S),
    ])
    exporter.shutdown()
    return db


def usd(value: Decimal) -> float:
    return float(value.quantize(Decimal("1e-9")))  # JSON money: rounded to 9 places


def _json(db, *args: str) -> list[dict]:
    result = CliRunner().invoke(cli, [*args, "--db", str(db), "--format", "json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_the_writer_prices_run_session_and_call_time_each_by_its_most_specific_rule(store):
    db = open_store(store)
    runs = dict(db.execute("SELECT kind, runtime_cost_pico FROM runs").fetchall())
    assert runs == {"support_ticket": 2_022_222_222, "chat": None}  # no kind rule for chat: not $0, none
    sessions = [r[0] for r in db.execute("SELECT cost_pico FROM steps WHERE type = 'session' ORDER BY started_ns")]
    assert sessions == [12_000_000_000, 10_000_000_000]
    calls = dict(db.execute("SELECT model, cost_pico FROM calls").fetchall())
    # The exact [[price]] entry beats the [[runtime]] glob for llama3.1:8b; llama3.2:3b has only the glob.
    assert calls == {"llama3.1:8b": 4_000_000_000, "llama3.2:3b": 1_000_000_000}


def test_runtime_cost_is_its_own_part_and_in_every_total(store):
    rows = {r["group"]["kind"]: r for r in _json(store, "report")}
    a, b = rows["support_ticket"], rows["chat"]
    assert a["runtime_cost_usd"] == usd(RUNTIME_A + SESSION_A)
    assert a["llm_cost_usd"] == usd(CALLS_A) and a["tool_cost_usd"] == 0
    assert a["cost_usd"] == usd(RUNTIME_A + SESSION_A + CALLS_A)
    assert a["cost_per_task_p50_usd"] == a["cost_usd"]
    assert b["runtime_cost_usd"] == usd(SESSION_B) and b["cost_usd"] == usd(SESSION_B)
    tasks = {t["kind"]: t for t in _json(store, "tasks")}
    assert tasks["support_ticket"]["cost_usd"] == float(RUNTIME_A + SESSION_A + CALLS_A)  # (not rounded there)


def test_grouped_by_model_runtime_belongs_to_no_model(store):
    rows = {r["group"]["model"]: r for r in _json(store, "report", "--by", "model")}
    assert rows["llama3.1:8b"]["cost_usd"] == 0.004 and rows["llama3.1:8b"]["runtime_cost_usd"] == 0


def test_show_puts_the_runtime_charge_on_the_task_and_its_session(store):
    result = CliRunner().invoke(cli, ["show", f"{RUN_A:016x}", "--db", str(store)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[1].startswith("task support_ticket  $0.0190  ")  # 0.019022: the subtree, runtime included
    assert any("session browser  $0.0120  75.00s" in line for line in lines), result.output


def test_time_price_rounding_and_minimum():
    per_minute = TimePrice(Decimal("0.0001"), Decimal("0.01"), "minute")
    assert per_minute.billed_seconds(Decimal("60")) == 60 and per_minute.billed_seconds(Decimal("60.001")) == 120
    assert per_minute.cost(Decimal("0")) == Decimal("0.01")  # the minimum, even for no time
    assert TimePrice(Decimal("0.5"), rounding="second").cost(Decimal("1.2")) == Decimal("1.0")
    assert TimePrice(Decimal("0.5")).cost(Decimal("1.2")) == Decimal("0.60")


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ('kind = "t"\nsession_hour_usd = 1\nper_second_usd = 1', "one of them"),
        ('kind = "t"', "one of them"),
        ('session_hour_usd = 1', "kind/session, or provider/model"),
        ('kind = "t"\nmodel = "m"\nsession_hour_usd = 1', "kind/session, or provider/model"),
        ('kind = "t"\nsession_hour_usd = -1', "negative"),
        ('kind = "t"\nsession_hour_usd = 1\nrounding = "hour"', "rounding"),
    ],
)
def test_a_bad_runtime_entry_is_a_configuration_error(tmp_path, entry, message):
    path = tmp_path / "prices.toml"
    path.write_text("[[runtime]]\n" + entry + "\n")
    with pytest.raises(ConfigurationError, match=message):
        PriceBook.from_price_file(path)


def test_session_blocks_and_task_time_through_the_public_api(tmp_path, monkeypatch):
    # Each block lasts far less than a minute: billed as one started minute each.
    # task: 60 s * 0.08 / 3600 = 0.001333333333; session: 60 s * 0.0001 = 0.006, minimum 0.01.
    prices = tmp_path / "unitcost.toml"
    prices.write_text(PRICES.replace('rounding = "second"', 'rounding = "minute"'))
    monkeypatch.setenv("UNITCOST_STRICT", "1")
    db = tmp_path / "api.db"
    unitcost.configure(service_name="runtime", db=db, price_file=prices)
    try:
        with unitcost.task("support_ticket", key="T-1", attributes={"customer": "acme"}), unitcost.session("browser"):
            pass
        unitcost.flush()
    finally:
        unitcost.shutdown()
    (row,) = _json(db, "report")
    assert row["runtime_cost_usd"] == usd(Decimal("0.001333333333") + Decimal("0.01"))
    assert row["cost_usd"] == row["runtime_cost_usd"] and row["tool_calls"] == 0 and row["steps"] == 0

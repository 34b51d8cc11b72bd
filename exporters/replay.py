"""Stored tasks as OpenTelemetry spans again, for ``unitcost export``.

Each run, LLM call, tool call and step comes back as the span it was stored from, with the same trace
and span ids (so replaying twice to the same backend gives the same spans, not copies), the GenAI
attributes, the cost the store computed, each task's subtree totals and its inline outcome as a
``gen_ai.evaluation.result`` event: the same attributes as live export (`unitcost.exporters.enrich`).
Outcomes recorded later are small ``unitcost.outcome`` spans under their task's span; their span
id is the one they were recorded with, or one derived from the stored outcome.

The window applies to the task's start, as in reports; calls and tool calls made outside any task
are included by their own start when no ``kind`` is asked for.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from decimal import Decimal
from typing import Any

from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from ..common import attributes as A
from ..common.money import from_pico
from ..store.backend import StoreBackend
from ..store.run_totals import SUMS
from ..version import __version__
from .enrich import ROLLUP_SUMS, TOTAL_FIELDS, TOTALS, outcome_event, totals_attributes, usd

__all__ = ["CSV_COLUMNS", "count_spans", "csv_row", "stored_spans"]

_SCOPE = InstrumentationScope("unitcost", __version__)
_FLAGS = TraceFlags(TraceFlags.SAMPLED)
_NO_TASK_SERVICE = "unknown_service"


def _where(
    since: int | None, until: int | None, kind: str | None, column: str = "started_ns"
) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if since is not None:
        clauses.append(f"{column} >= ?")
        params.append(since)
    if until is not None:
        clauses.append(f"{column} < ?")
        params.append(until)
    if kind is not None:
        clauses.append("kind = ?")
        params.append(kind)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def count_spans(db: StoreBackend, since: int | None = None, until: int | None = None,
                kind: str | None = None) -> int:
    """How many runs (and, without ``kind``, calls and steps outside any task) the window holds: the
    units `stored_spans` advances through, for a progress bar."""
    where, params = _where(since, until, kind)
    total = db.execute(f"SELECT COUNT(*) FROM runs{where}", params).fetchone()[0]
    if kind is None:
        where, params = _where(since, until, None)
        joiner = " AND " if where else " WHERE "
        for table in ("calls", "steps"):
            total += db.execute(f"SELECT COUNT(*) FROM {table}{where}{joiner}run_id IS NULL", params).fetchone()[0]
    return int(total)


def _rows(db: StoreBackend, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    cursor = db.execute(sql, list(params))
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def stored_spans(
    db: StoreBackend,
    since: int | None = None,
    until: int | None = None,
    kind: str | None = None,
    batch: int = 500,
) -> Iterator[tuple[int, list[ReadableSpan]]]:
    """Yields (units done, spans) batches: runs in order of start with everything under them, then
    calls and steps outside any task."""
    where, params = _where(since, until, kind)
    last: tuple[int, str] | None = None
    while True:
        page_where, page_params = where, list(params)
        if last is not None:
            page_where += (" AND " if page_where else " WHERE ") + "(started_ns, run_id) > (?, ?)"
            page_params += list(last)
        runs = _rows(db, f"SELECT * FROM runs{page_where} ORDER BY started_ns, run_id LIMIT {batch}", page_params)
        if not runs:
            break
        last = (runs[-1]["started_ns"], runs[-1]["run_id"])
        yield len(runs), _run_spans(db, runs)
    if kind is None:
        yield from _outside_tasks(db, since, until, batch)


def _run_spans(db: StoreBackend, runs: list[dict[str, Any]]) -> list[ReadableSpan]:
    ids = [r["run_id"] for r in runs]
    marks = ",".join("?" * len(ids))
    by_id = {r["run_id"]: r for r in runs}
    totals = _subtree_totals(db, ids, marks)
    inline = {o["run_id"]: o for o in _rows(
        db, f"SELECT * FROM outcomes WHERE source = 'inline' AND run_id IN ({marks}) ORDER BY recorded_ns, id", ids
    )}
    spans: list[ReadableSpan] = []
    for run in runs:
        spans.append(_task_span(run, totals.get(run["run_id"]), inline.get(run["run_id"])))
    for call in _rows(db, f"SELECT * FROM calls WHERE run_id IN ({marks}) ORDER BY started_ns", ids):
        spans.append(_call_span(call, by_id[call["run_id"]]))
    for step in _rows(db, f"SELECT * FROM steps WHERE run_id IN ({marks}) ORDER BY started_ns", ids):
        spans.append(_step_span(step, by_id[step["run_id"]]))
    spans.extend(_late_outcomes(db, runs, ids, marks))
    return spans


def _outside_tasks(
    db: StoreBackend, since: int | None, until: int | None, batch: int
) -> Iterator[tuple[int, list[ReadableSpan]]]:
    where, params = _where(since, until, None)
    joiner = " AND " if where else " WHERE "
    for table, make in (("calls", _call_span), ("steps", _step_span)):
        cursor = db.execute(f"SELECT * FROM {table}{where}{joiner}run_id IS NULL ORDER BY started_ns", params)
        names = [d[0] for d in cursor.description]
        while rows := cursor.fetchmany(batch):
            yield len(rows), [make(dict(zip(names, row, strict=True)), None) for row in rows]


_TOOL_COST, _TOOL_CALLS, _STEPS = (TOTALS.index(n) for n in ("tool_cost_pico", "tool_calls", "step_blocks"))


def _subtree_totals(db: StoreBackend, ids: list[str], marks: str) -> dict[str, list[int]]:
    """Per run: the totals of its calls, tools and steps, nested runs included (as live export)."""
    subtree = (
        f"WITH RECURSIVE sub(root, run_id) AS (SELECT run_id, run_id FROM runs WHERE run_id IN ({marks}) "
        "UNION SELECT sub.root, r.run_id FROM runs r JOIN sub ON r.parent_run_id = sub.run_id) "
    )
    totals: dict[str, list[int]] = {}
    # The calls' part of the roll-up: the per-run sums (run_sums) of the subtree's runs.
    columns = {s.name: s.column for s in SUMS}
    picked = ", ".join(f"SUM(t.{columns[name]})" for name in ROLLUP_SUMS)
    db.ensure_fresh()
    for row in db.execute(
        subtree + f"SELECT sub.root, {picked} FROM sub JOIN run_sums t ON t.run_id = sub.run_id GROUP BY sub.root", ids
    ):
        totals.setdefault(row[0], [0] * TOTAL_FIELDS)[: len(ROLLUP_SUMS)] = [v or 0 for v in row[1:]]
    for row in db.execute(
        subtree + "SELECT sub.root, SUM(COALESCE(s.cost_pico, 0)), SUM(s.type = 'tool'), SUM(s.type = 'step') "
        "FROM sub JOIN steps s ON s.run_id = sub.run_id GROUP BY sub.root",
        ids,
    ):
        t = totals.setdefault(row[0], [0] * TOTAL_FIELDS)
        t[_TOOL_COST], t[_TOOL_CALLS], t[_STEPS] = row[1] or 0, row[2] or 0, row[3] or 0
    return totals


def _late_outcomes(
    db: StoreBackend, runs: list[dict[str, Any]], ids: list[str], marks: str
) -> list[ReadableSpan]:
    """Outcomes recorded after their task, each under one run: the run it names, else the latest run
    of its key (as reports join them)."""
    by_id = {r["run_id"]: r for r in runs}
    keys = sorted({r["key"] for r in runs if r["key"] is not None})
    key_marks = ",".join("?" * len(keys)) or "NULL"
    rows = _rows(
        db,
        f"SELECT * FROM outcomes WHERE source != 'inline' AND (run_id IN ({marks}) "
        f"OR (run_id IS NULL AND key IN ({key_marks}))) ORDER BY recorded_ns, id",
        [*ids, *keys],
    )
    latest: dict[tuple[Any, Any], str | None] = {}
    spans: list[ReadableSpan] = []
    for outcome in rows:
        target = outcome["run_id"]
        if target is None:
            ident = (outcome["kind"], outcome["key"])
            if ident not in latest:
                kind_clause = "kind = ? AND " if outcome["kind"] is not None else ""
                found = db.execute(
                    f"SELECT run_id FROM runs WHERE {kind_clause}key = ? ORDER BY started_ns DESC, run_id DESC LIMIT 1",
                    [v for v in ident if v is not None],
                ).fetchone()
                latest[ident] = found[0] if found else None
            target = latest[ident]
        run = by_id.get(target) if target is not None else None
        if run is not None:
            spans.append(_outcome_span(outcome, run))
    return spans


# --- spans from rows -----------------------------------------------------------------------------


def _resource(service: str | None) -> Resource:
    return Resource({SERVICE_NAME: service or _NO_TASK_SERVICE})


def _context(trace_id: str, span_id: str) -> SpanContext:
    return SpanContext(int(trace_id, 16), int(span_id, 16), is_remote=False, trace_flags=_FLAGS)


def _status(error_type: str | None) -> Status:
    return Status(StatusCode.ERROR, error_type) if error_type else Status(StatusCode.UNSET)


def _usd_text(pico: int | None) -> str | None:
    value = from_pico(pico)
    return None if value is None else format(value.normalize() if value else Decimal(0), "f")


def _span(name: str, row: dict[str, Any], span_id: str, attrs: dict[str, Any], kind: SpanKind,
          service: str | None, events: Sequence[Any] = ()) -> ReadableSpan:
    parent = row.get("parent_span_id")
    return ReadableSpan(
        name=name,
        context=_context(row["trace_id"], span_id),
        parent=_context(row["trace_id"], parent) if parent else None,
        resource=_resource(service),
        attributes={k: v for k, v in attrs.items() if v is not None},
        events=list(events),
        kind=kind,
        status=_status(row.get("error_type")),
        start_time=row["started_ns"],
        end_time=row["ended_ns"],
        instrumentation_scope=_SCOPE,
    )


def _task_span(run: dict[str, Any], totals: list[int] | None, outcome: dict[str, Any] | None) -> ReadableSpan:
    attrs: dict[str, Any] = {
        A.SPAN_TYPE: "task", A.OPERATION: A.OP_INVOKE_AGENT, A.AGENT_NAME: run["kind"], A.TASK_KIND: run["kind"],
        A.TASK_KEY: run["key"], A.TASK_ID: run["run_id"], A.TASK_PARENT_ID: run.get("parent_run_id"),
        A.ERROR_TYPE: run.get("error_type"),
    }
    for name, value in json.loads(run.get("attributes") or "{}").items():
        attrs[A.TASK_ATTR_PREFIX + name] = value if isinstance(value, (str, bool, int, float)) else str(value)
    events = []
    if outcome is not None:
        attrs.update({
            A.OUTCOME_LABEL: outcome["label"], A.OUTCOME_SUCCESS: bool(outcome["success"]),
            A.OUTCOME_VALUE: _usd_text(outcome["value_pico"]), A.OUTCOME_TIME: outcome["recorded_ns"],
        })
        events.append(outcome_event(attrs, run["ended_ns"]))
    attrs.update(totals_attributes(totals or [0] * TOTAL_FIELDS))
    name = f"invoke_agent {run['kind']}"
    return _span(name, run, run["run_id"], attrs, SpanKind.INTERNAL, run.get("service"), events)


def _call_span(call: dict[str, Any], run: dict[str, Any] | None) -> ReadableSpan:
    cache_write = (call["cache_write_tokens"] or 0) + (call["cache_write_1h_tokens"] or 0)
    attrs: dict[str, Any] = {
        A.SPAN_TYPE: "llm", A.OPERATION: call["operation"], A.PROVIDER: call["provider"],
        A.REQUEST_MODEL: call["model"], A.RESPONSE_MODEL: call.get("response_model"), A.TASK_ID: call["run_id"],
        A.INPUT_TOKENS: (call["input_tokens"] or 0) + (call["cache_read_tokens"] or 0) + cache_write,
        A.OUTPUT_TOKENS: (call["output_tokens"] or 0) + (call["reasoning_tokens"] or 0),
        A.CACHE_READ_TOKENS: call["cache_read_tokens"] or None, A.CACHE_WRITE_TOKENS: cache_write or None,
        A.CACHE_WRITE_1H_TOKENS: call["cache_write_1h_tokens"] or None,
        A.REASONING_TOKENS: call["reasoning_tokens"] or None,
        A.USAGE_ESTIMATED: True if call.get("estimated") else None,
        A.REQUEST_STREAM: True if call.get("streamed") else None,
        A.CALL_INCOMPLETE: True if call.get("incomplete") else None,
        A.CALL_RETRIES: call.get("retries") or None,
        A.WEB_SEARCH_REQUESTS: call.get("web_search_requests") or None,
        A.ERROR_TYPE: call.get("error_type"),
    }
    if call["cost_pico"] is None:
        attrs[A.COST_UNPRICED] = True
    else:
        attrs[A.COST_USD] = usd(call["cost_pico"])
        attrs[A.PRICE_SOURCE] = call.get("price_source")
        if call.get("reasoning_cost_pico"):
            attrs[A.COST_REASONING_USD] = usd(call["reasoning_cost_pico"])
    return _span(
        f"{call['operation']} {call['model']}", call, call["span_id"], attrs, SpanKind.CLIENT,
        run.get("service") if run else None,
    )


def _step_span(step: dict[str, Any], run: dict[str, Any] | None) -> ReadableSpan:
    service = run.get("service") if run else None
    if step["type"] == "tool":
        attrs: dict[str, Any] = {
            A.SPAN_TYPE: "tool", A.OPERATION: A.OP_EXECUTE_TOOL, A.TOOL_NAME: step["name"], A.TASK_ID: step["run_id"],
            A.TOOL_COST: _usd_text(step["cost_pico"]), A.ERROR_TYPE: step.get("error_type"),
        }
        if step["cost_pico"] is not None:
            attrs[A.COST_USD] = usd(step["cost_pico"])
        return _span(f"execute_tool {step['name']}", step, step["span_id"], attrs, SpanKind.INTERNAL, service)
    attrs = {A.SPAN_TYPE: "step", A.STEP_NAME: step["name"], A.TASK_ID: step["run_id"],
             A.ERROR_TYPE: step.get("error_type")}
    return _span(step["name"], step, step["span_id"], attrs, SpanKind.INTERNAL, service)


def _outcome_span(outcome: dict[str, Any], run: dict[str, Any]) -> ReadableSpan:
    origin = outcome.get("origin")
    if not (isinstance(origin, str) and len(origin) == 16):
        # An outcome from the command line or an import has no span of its own: derive a stable id.
        seed = f"unitcost.outcome:{outcome['id']}:{outcome['recorded_ns']}:{outcome['label']}".encode()
        origin = hashlib.blake2b(seed, digest_size=8).hexdigest()
    attrs: dict[str, Any] = {
        A.SPAN_TYPE: "outcome", A.OUTCOME_LABEL: outcome["label"], A.OUTCOME_SUCCESS: bool(outcome["success"]),
        A.OUTCOME_VALUE: _usd_text(outcome["value_pico"]), A.OUTCOME_TIME: outcome["recorded_ns"],
        A.OUTCOME_TASK_ID: outcome.get("run_id"), A.OUTCOME_KIND: outcome.get("kind"),
        A.OUTCOME_KEY: outcome.get("key"), A.TASK_ID: run["run_id"],
    }
    row = {"trace_id": run["trace_id"], "parent_span_id": run["run_id"], "started_ns": outcome["recorded_ns"],
           "ended_ns": outcome["recorded_ns"]}
    return _span("unitcost.outcome", row, origin, attrs, SpanKind.INTERNAL, run.get("service"),
                 [outcome_event(attrs, outcome["recorded_ns"])])


# --- CSV: one row per span ------------------------------------------------------------------------

CSV_COLUMNS = (
    "trace_id", "span_id", "parent_span_id", "type", "name", "task_id", "task_kind", "task_key", "service",
    "start_time_unix_nano", "end_time_unix_nano", "provider", "model", "response_model", "input_tokens",
    "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens", "cost_usd", "unpriced",
    "llm_calls", "tool_calls", "outcome", "outcome_success", "error_type",
)


def csv_row(span: ReadableSpan) -> dict[str, Any]:
    """A span as one CSV row (CSV_COLUMNS). ``cost_usd`` is the span's own cost; on a task, its
    subtree's total. Tokens are in the OpenTelemetry meaning (input includes the cache parts)."""
    attrs = span.attributes or {}
    kind = attrs.get(A.SPAN_TYPE)
    is_task = kind == "task"
    return {
        "trace_id": format(span.context.trace_id, "032x"),
        "span_id": format(span.context.span_id, "016x"),
        "parent_span_id": format(span.parent.span_id, "016x") if span.parent else "",
        "type": kind,
        "name": span.name,
        "task_id": attrs.get(A.TASK_ID),
        "task_kind": attrs.get(A.TASK_KIND),
        "task_key": attrs.get(A.TASK_KEY),
        "service": span.resource.attributes.get(SERVICE_NAME) if span.resource else None,
        "start_time_unix_nano": span.start_time,
        "end_time_unix_nano": span.end_time,
        "provider": attrs.get(A.PROVIDER),
        "model": attrs.get(A.REQUEST_MODEL),
        "response_model": attrs.get(A.RESPONSE_MODEL),
        "input_tokens": attrs.get(A.INPUT_TOKENS),
        "output_tokens": attrs.get(A.OUTPUT_TOKENS),
        "cache_read_tokens": attrs.get(A.CACHE_READ_TOKENS),
        "cache_write_tokens": attrs.get(A.CACHE_WRITE_TOKENS),
        "reasoning_tokens": attrs.get(A.REASONING_TOKENS),
        "cost_usd": attrs.get(A.TASK_COST_USD if is_task else A.COST_USD),
        "unpriced": attrs.get(A.TASK_UNPRICED_CALLS) if is_task else int(bool(attrs.get(A.COST_UNPRICED))),
        "llm_calls": attrs.get(A.TASK_LLM_CALLS),
        "tool_calls": attrs.get(A.TASK_TOOL_CALLS),
        "outcome": attrs.get(A.OUTCOME_LABEL),
        "outcome_success": None if attrs.get(A.OUTCOME_LABEL) is None else int(bool(attrs.get(A.OUTCOME_SUCCESS))),
        "error_type": attrs.get(A.ERROR_TYPE),
    }

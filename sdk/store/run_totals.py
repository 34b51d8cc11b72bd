"""Per-run call totals, kept beside the calls so reports need not sum a million rows.

`run_totals` holds, for each run and model, the sums reports need: tokens by bucket, cost, counts,
and the context re-send estimate (the part of each call's input that the previous call of the same
run already had as input or produced as output, priced at the call's rates). It is a cache of the
`calls` table: the exporter refreshes the runs each batch touched by summing their calls again, so
it stays exact whatever order calls arrive in, and whether a call is written once or replayed.
"""

from __future__ import annotations

import itertools
import json
import operator
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..common.money import to_pico
from .bulk import insert_rows

__all__ = [
    "STALE_RUNS_SQL",
    "CALL_FIELDS", "COLUMNS", "SUMS", "Sum", "add_up", "backfill", "call_sums", "create_run_sums", "create_table",
    "ensure_fresh", "refresh", "resend_cost", "resend_rates", "resent_tokens", "sum_again",
]


@dataclass(frozen=True, slots=True)
class Sum:
    """One per-run sum of a run's calls.

    ``name``: the report's word for it (the report engines' sums, the exported roll-ups); ``column``:
    its column in ``run_totals`` and ``run_sums``; ``py`` and ``sql``: its value for one call, in
    Python and in SQL, over the call's `CALL_FIELDS` and ``resent``, ``resent_uncached``,
    ``resend_cost_pico`` and ``resend_savings_pico`` (the re-send estimate of `resent_tokens` and
    `resend_cost`).
    """

    name: str
    column: str
    py: str
    sql: str


# THE list of per-run sums: the writer keeps them (`add_up`), both report engines read them
# (unitcost.report.engine, unitcost.report.sql) and the exported task roll-ups are made of them
# (unitcost.exporters.enrich, unitcost.exporters.replay). A new metric is one entry here, plus the
# store migration that adds its column to run_totals and run_sums (unitcost.store.schema).
SUMS = (
    Sum("llm_calls", "calls", "1", "1"),
    Sum("input_uncached", "input_tokens", "input_tokens", "input_tokens"),
    Sum("cache_read", "cache_read_tokens", "cache_read_tokens", "cache_read_tokens"),
    Sum("cache_write", "cache_write_tokens", "cache_write_tokens", "cache_write_tokens"),
    Sum("cache_write_1h", "cache_write_1h_tokens", "cache_write_1h_tokens", "cache_write_1h_tokens"),
    Sum("output_visible", "output_tokens", "output_tokens", "output_tokens"),
    Sum("reasoning", "reasoning_tokens", "reasoning_tokens", "reasoning_tokens"),
    Sum("cost_pico", "cost_pico", "cost_pico or 0", "COALESCE(cost_pico, 0)"),
    Sum("reasoning_cost_pico", "reasoning_cost_pico", "reasoning_cost_pico or 0", "COALESCE(reasoning_cost_pico, 0)"),
    Sum("unpriced_calls", "unpriced_calls", "int(cost_pico is None)", "CASE WHEN cost_pico IS NULL THEN 1 ELSE 0 END"),
    Sum("estimated_calls", "estimated_calls", "estimated", "estimated"),
    Sum("resent", "resent_tokens", "resent", "resent"),
    Sum("resent_uncached", "resent_uncached_tokens", "resent_uncached", "resent_uncached"),
    Sum("sdk_retries", "retries", "retries or 0", "COALESCE(retries, 0)"),
    Sum("resend_cost_pico", "resend_cost_pico", "resend_cost_pico", "resend_cost_pico"),
    Sum("resend_savings_pico", "resend_savings_pico", "resend_savings_pico", "resend_savings_pico"),
    # Energy and emissions (µWh, µg CO2eq; ranges) of the calls with an estimate (m014_call_energy),
    # and the calls without one (unitcost.pricing.energy): never counted as 0.
    Sum("energy_uwh_min", "energy_uwh_min", "energy_uwh_min or 0", "COALESCE(energy_uwh_min, 0)"),
    Sum("energy_uwh_max", "energy_uwh_max", "energy_uwh_max or 0", "COALESCE(energy_uwh_max, 0)"),
    Sum("gwp_ug_min", "gwp_ug_min", "gwp_ug_min or 0", "COALESCE(gwp_ug_min, 0)"),
    Sum("gwp_ug_max", "gwp_ug_max", "gwp_ug_max or 0", "COALESCE(gwp_ug_max, 0)"),
    Sum(
        "unestimated_energy_calls", "unestimated_energy_calls", "int(energy_uwh_min is None)",
        "CASE WHEN energy_uwh_min IS NULL THEN 1 ELSE 0 END",
    ),
)
COLUMNS = ("run_id", "provider", "model", *(s.column for s in SUMS))
# The same sums over all of a run's models: what a report not grouped by model reads.
_RUN_COLUMNS = ("run_id", *COLUMNS[3:])
_MTOK = 1_000_000


def resend_rates(prices: Any, provider: str, model: str, cache: dict[Any, Any]) -> Any:
    """(input rate, cache-read rate) in USD per million tokens, base tier, or None when unpriced."""
    key = (provider, model)
    if key not in cache:
        cache[key] = None
        try:
            # Here: the price book loads pydantic, which a report that does not re-price never needs (start-up time).
            from ..pricing.book import tier_rate

            rates = prices.rates(provider, model, datetime.now(tz=UTC)) if prices is not None else None
            inp = rates.per_bucket.get("uncached_input") if rates is not None and rates.per_bucket else None
            if inp is not None and rates is not None:
                cached = rates.per_bucket.get("cache_read")
                cache[key] = (tier_rate(inp, 0), tier_rate(cached if cached is not None else inp, 0))
        except Exception:  # noqa: BLE001 - an estimate that cannot be priced is left at zero
            cache[key] = None
    return cache[key]


# The columns of `calls` that the totals are made of, in the order `add_up` reads them.
CALL_FIELDS = (
    "run_id", "provider", "model", "input_tokens", "cache_read_tokens", "cache_write_tokens",
    "cache_write_1h_tokens", "output_tokens", "reasoning_tokens", "cost_pico", "reasoning_cost_pico", "estimated",
    "retries", "energy_uwh_min", "energy_uwh_max", "gwp_ug_min", "gwp_ug_max",
)
_DERIVED = ("resent", "resent_uncached", "resend_cost_pico", "resend_savings_pico")
# One call's value of every sum, in SUMS's order: made once from the entries' ``py`` (one tuple
# built in one call, as fast as the sixteen hand-written additions it replaces).
_of_call: Any = eval(  # noqa: S307 - the expressions are SUMS's, written above, never input
    f"lambda {', '.join(CALL_FIELDS + _DERIVED)}: ({', '.join(s.py for s in SUMS)},)"
)


def resent_tokens(previous: int, input_total: int) -> int:
    """THE context re-send rule (an estimate, no message content needed): the part of a call's
    input that the previous call of the same run (``previous``: its input plus its output, 0 for
    a run's first call or a call outside any run) already had as input or produced as output."""
    return min(input_total, previous)


def resend_cost(
    prices: Any, provider: str, model: str, resent: int, uncached: int, cache: dict[Any, Any]
) -> tuple[int, int]:
    """(cost, savings) of a re-send, in pico-dollars: its ``uncached`` part at the input rate and the
    rest at the cache-read rate; and what caching the uncached part would save. (0, 0) when unpriced."""
    if not resent:
        return 0, 0
    rates = resend_rates(prices, provider, model, cache)
    if rates is None:
        return 0, 0
    input_rate, cached_rate = rates
    return (
        to_pico((uncached * input_rate + (resent - uncached) * cached_rate) / _MTOK),
        to_pico(uncached * (input_rate - cached_rate) / _MTOK),
    )


def refresh(
    conn: sqlite3.Connection, run_ids: Iterable[str], prices: Any,
    written: Iterable[tuple[Any, ...]] | None = None,
) -> None:
    """Recompute `run_totals` for these runs from their calls (inside the caller's transaction).

    ``written`` (the exporter's): the calls this transaction has just written, as (span_id,
    started_ns, *CALL_FIELDS) tuples. A run without totals yet is then summed from these instead of
    reading its calls back: for a run whose calls all arrive in one batch (most runs) that saves a
    query and a row of Python per call. A run that has totals is summed again from the store, so
    calls arriving late or out of order are still counted in their place.
    """
    ids = sorted({r for r in run_ids if r is not None})
    if not ids:
        return
    rate_cache: dict[Any, Any] = {}
    fresh_calls: dict[str, dict[Any, tuple[Any, ...]]] = {}
    if written is not None:
        for span_id, started, *fields in written:
            fresh_calls.setdefault(fields[0], {})[span_id] = (started, *fields)  # a span written twice counts once
    # One statement each, whatever the number of runs: the ids go in as one JSON array, and what is
    # read back comes as one JSON value (each row read is a GIL hand-off: see unitcost.store.bulk).
    again = ids
    new: list[str] = []
    if fresh_calls:
        known = set(json.loads(conn.execute(_KNOWN_RUNS, (json.dumps(ids),)).fetchone()[0]))
        new = [r for r in ids if r not in known and r in fresh_calls]
        if new:
            again = [r for r in ids if r in known or r not in fresh_calls]
    rows: list[Iterable[Any]] = []
    if again:
        listed = json.dumps(again)
        conn.execute(_DELETE_TOTALS, (listed,))
        conn.execute(_DELETE_SUMS, (listed,))
        rows.append(json.loads(conn.execute(_STORED_CALLS, (listed,)).fetchone()[0]))
    if new:
        rows.append(call[1:] for run_id in new for call in _in_start_order(fresh_calls[run_id]))
    sums = add_up(itertools.chain(*rows), prices, rate_cache)
    insert_rows(conn, "run_totals", COLUMNS, [(*key, *acc) for key, acc in sums.items()])
    per_run: dict[str, list[Any]] = {}
    for (run_id, _, _), acc in sums.items():
        total = per_run.get(run_id)
        per_run[run_id] = list(acc) if total is None else [a + b for a, b in zip(total, acc, strict=True)]
    insert_rows(conn, "run_sums", _RUN_COLUMNS, [(run_id, *acc) for run_id, acc in per_run.items()])


_IDS = "(SELECT value FROM json_each(?))"
_KNOWN_RUNS = f"SELECT json_group_array(run_id) FROM run_sums WHERE run_id IN {_IDS}"
_DELETE_TOTALS = f"DELETE FROM run_totals WHERE run_id IN {_IDS}"
_DELETE_SUMS = f"DELETE FROM run_sums WHERE run_id IN {_IDS}"
# A run's calls in start order (json_group_array keeps the order of the rows it is given).
_STORED_CALLS = (
    f"SELECT json_group_array(json_array({', '.join(CALL_FIELDS)})) FROM "
    f"(SELECT {', '.join(CALL_FIELDS)} FROM calls WHERE run_id IN {_IDS} ORDER BY run_id, started_ns, span_id)"
)


def _in_start_order(calls: dict[Any, tuple[Any, ...]]) -> Iterable[tuple[Any, ...]]:
    """A run's calls (started_ns first in each) in start order, the span id breaking ties (as the
    stored calls are read: `_STORED_CALLS`); most runs of a batch have one."""
    if len(calls) == 1:
        return calls.values()
    return [call for _, call in sorted(calls.items(), key=lambda item: (item[1][0], item[0]))]


def call_sums(call: tuple[Any, ...], resent: int, prices: Any, rate_cache: dict[Any, Any]) -> tuple[Any, ...]:
    """One call's value of every sum, in SUMS's order: ``call`` holds its `CALL_FIELDS`; ``resent`` is
    its re-send estimate (`resent_tokens`)."""
    uncached = max(resent - call[4], 0)  # call[4]: cache_read_tokens
    cost, savings = resend_cost(prices, call[1], call[2], resent, uncached, rate_cache) if resent else (0, 0)
    return _of_call(*call, resent, uncached, cost, savings)


def add_up(
    calls: Iterable[tuple[Any, ...]], prices: Any, rate_cache: dict[Any, Any]
) -> dict[tuple[str, str, str], list[Any]]:
    """SUMS per (run, provider, model) of calls (`CALL_FIELDS` tuples) given run by run, each run's in
    start order."""
    sums: dict[tuple[str, str, str], list[Any]] = {}
    previous: dict[str, int] = {}  # run -> input + output of its previous call
    for row in calls:
        run_id, provider, model, inp, cr, cw, cw1h, out, reasoning = row[:9]
        all_in = inp + cr + cw + cw1h
        resent = resent_tokens(previous.get(run_id, 0), all_in) if run_id is not None else 0
        previous[run_id] = all_in + out + reasoning
        values = call_sums(row, resent, prices, rate_cache)
        key = (run_id, provider, model)
        acc = sums.get(key)
        sums[key] = list(values) if acc is None else list(map(operator.add, acc, values))
    return sums


def create_run_sums(conn: Any) -> None:
    """The per-run table, from the per-run-and-model one (used by the store's migration)."""
    conn.execute(
        f"""CREATE TABLE run_sums (
            run_id TEXT NOT NULL PRIMARY KEY,
            {', '.join(f'{c} INTEGER NOT NULL DEFAULT 0' for c in COLUMNS[3:])}
        ) WITHOUT ROWID"""
    )
    conn.execute(
        f"INSERT INTO run_sums SELECT run_id, {', '.join(f'SUM({c})' for c in COLUMNS[3:])} "
        "FROM run_totals GROUP BY run_id"
    )


def create_table(conn: Any) -> None:
    """The table, and its rows for the calls already stored (used by the store's migration)."""
    conn.execute(
        f"""CREATE TABLE run_totals (
            run_id TEXT NOT NULL, provider TEXT NOT NULL, model TEXT NOT NULL,
            {', '.join(f'{c} INTEGER NOT NULL DEFAULT 0' for c in COLUMNS[3:])},
            PRIMARY KEY (run_id, provider, model)
        ) WITHOUT ROWID"""
    )
    # Filled by the next migration (m010), once run_sums exists too: see backfill().


def backfill(conn: Any) -> None:
    """Both tables' rows for the calls already stored."""
    from ..pricing.book import PriceBook  # start-up time: pydantic, as in resend_rates

    have = {row[1] for row in conn.execute("PRAGMA table_info(calls)")}
    if not set(CALL_FIELDS) <= have:
        return  # an older store mid-migration: the migration that adds the missing call columns backfills
    run_ids = [r[0] for r in conn.execute("SELECT DISTINCT run_id FROM calls WHERE run_id IS NOT NULL")]
    refresh(conn, run_ids, PriceBook())


# The runs whose per-run sums disagree with their calls (or whose calls are gone): one text for every
# backend (it is plain SQL both SQLite and PostgreSQL run).
STALE_RUNS_SQL = (
    "SELECT c.run_id FROM (SELECT run_id, COUNT(*) AS n FROM calls WHERE run_id IS NOT NULL GROUP BY run_id) c "
    "LEFT JOIN (SELECT run_id, SUM(calls) AS n FROM run_totals GROUP BY run_id) t ON t.run_id = c.run_id "
    "LEFT JOIN run_sums s ON s.run_id = c.run_id "
    "WHERE t.n IS NULL OR t.n != c.n OR s.calls IS NULL OR s.calls != c.n "
    "UNION SELECT run_id FROM run_totals "
    "WHERE run_id NOT IN (SELECT run_id FROM calls WHERE run_id IS NOT NULL) "
    "UNION SELECT run_id FROM run_sums "
    "WHERE run_id NOT IN (SELECT run_id FROM calls WHERE run_id IS NOT NULL)"
)


def ensure_fresh(conn: sqlite3.Connection, prices: Any = None) -> None:
    """Refresh the runs whose calls were written by something other than the exporter (a test, an
    import, an older unitcost), so the totals always agree with the calls. Cheap when they agree:
    two counts: the calls of runs (all calls, which SQLite counts from an index's pages without reading
    its rows, less those outside any run), and the calls in run_sums (a row a run; it is written with
    run_totals, so a writer that skips one skips both)."""
    in_calls = conn.execute(
        "SELECT (SELECT COUNT(*) FROM calls) - (SELECT COUNT(*) FROM calls WHERE run_id IS NULL)"
    ).fetchone()[0]
    in_totals = conn.execute("SELECT COALESCE(SUM(calls), 0) FROM run_sums").fetchone()[0]
    if in_calls == in_totals:
        return
    sum_again(conn, prices, lambda: [r[0] for r in conn.execute(STALE_RUNS_SQL)])


def sum_again(conn: sqlite3.Connection, prices: Any, stale_runs: Callable[[], list[str]]) -> None:
    """Refresh the runs ``stale_runs()`` names, read inside the same write transaction (begun here
    unless the caller's is open), with ``prices`` or the default price book."""
    if prices is None:
        from ..pricing.book import PriceBook  # start-up time: pydantic, as in resend_rates

        prices = PriceBook()
    began = not conn.in_transaction
    if began:
        conn.execute("BEGIN IMMEDIATE")
    try:
        refresh(conn, stale_runs(), prices)
        if began:
            conn.execute("COMMIT")
    except BaseException:
        if began and conn.in_transaction:
            conn.execute("ROLLBACK")
        raise

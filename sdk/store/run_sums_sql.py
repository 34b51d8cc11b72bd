"""The per-run sums made by the database, in one statement per table, whatever the number of runs.

The writer refreshes `run_totals` and `run_sums` for the runs each batch touched. Summing them in
Python cost ~12 us of the writer's GIL-held time per call, time a busy program's threads waited
for; made here, the sums run inside SQLite or PostgreSQL, which hold no GIL (SQLite's statement
runs on the writer thread with the GIL released, so on the second core beside the program).

The rule is `unitcost.store.run_totals`'s, written in SQL: each call's re-send estimate is the
smaller of its input and the previous call's input plus output (`LAG` over the run's calls in
start order, span id breaking ties), its uncached part priced at the input rate and the rest at
the cache-read rate. Those rates are the price book's, today, at the base tier: this module keeps
them per connection in a temporary table, in pico-dollars per token. A rate that is not a whole
number of pico-dollars per token (three of genai-prices' ~3,600, float artefacts such as
0.18000000000000002 USD per million) cannot be multiplied exactly by 64-bit integers: `refresh`
then answers False and the caller sums those runs in Python (`run_totals.add_up`), to the same
pico-dollar.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from .run_totals import COLUMNS, SUMS, resend_rates

__all__ = ["RunSumsSql"]

_RATES = "unitcost_resend_rates"
_PICO_PER_TOKEN = 1_000_000  # USD per million tokens -> pico-dollars per token
_IDS = {
    "sqlite": "(SELECT value FROM json_each(?))",
    "postgresql": "(SELECT jsonb_array_elements_text(%s::jsonb))",
}
_MARK = {"sqlite": "?", "postgresql": "%s"}
_INTEGER = {"sqlite": "INTEGER", "postgresql": "BIGINT"}
_RUN_COLUMNS = ("run_id", *COLUMNS[3:])
_ALL_IN = "c.input_tokens + c.cache_read_tokens + c.cache_write_tokens + c.cache_write_1h_tokens"
_CALL_COLUMNS = (
    "run_id", "provider", "model", "input_tokens", "cache_read_tokens", "cache_write_tokens", "cache_write_1h_tokens",
    "output_tokens", "reasoning_tokens", "cost_pico", "reasoning_cost_pico", "estimated", "retries",
    "energy_uwh_min", "energy_uwh_max", "gwp_ug_min", "gwp_ug_max",
)


def _totals_sql(ids: str) -> str:
    """INSERT the run_totals rows of the runs ``ids`` lists: one row per (run, provider, model)."""
    return f"""
        WITH c AS (
            SELECT {', '.join(f'c.{name}' for name in _CALL_COLUMNS)}, r.input_pico, r.cached_pico,
                {_ALL_IN} AS all_in,
                LAG({_ALL_IN} + c.output_tokens + c.reasoning_tokens, 1, 0)
                    OVER (PARTITION BY c.run_id ORDER BY c.started_ns, c.span_id) AS previous
            FROM calls c LEFT JOIN {_RATES} r ON r.provider = c.provider AND r.model = c.model
            WHERE c.run_id IN {ids}
        ), re AS (
            SELECT *, CASE WHEN previous < all_in THEN previous ELSE all_in END AS resent FROM c
        ), un AS (
            SELECT *, CASE WHEN resent > cache_read_tokens THEN resent - cache_read_tokens ELSE 0 END
                AS resent_uncached
            FROM re
        ), priced AS (
            SELECT *,
                CASE WHEN resent = 0 OR input_pico IS NULL THEN 0
                    ELSE resent_uncached * input_pico + (resent - resent_uncached) * cached_pico END
                    AS resend_cost_pico,
                CASE WHEN resent = 0 OR input_pico IS NULL THEN 0
                    ELSE resent_uncached * (input_pico - cached_pico) END AS resend_savings_pico
            FROM un
        )
        INSERT INTO run_totals ({', '.join(COLUMNS)})
        SELECT run_id, provider, model, {', '.join(f'SUM({s.sql})' for s in SUMS)}
        FROM priced GROUP BY run_id, provider, model
    """


def _sums_sql(ids: str) -> str:
    """INSERT the run_sums rows of the runs ``ids`` lists, from their run_totals rows."""
    return (
        f"INSERT INTO run_sums ({', '.join(_RUN_COLUMNS)}) "
        f"SELECT run_id, {', '.join(f'SUM({c})' for c in _RUN_COLUMNS[1:])} "
        f"FROM run_totals WHERE run_id IN {ids} GROUP BY run_id"
    )


def _unrated_sql(ids: str) -> str:
    """The models of these runs' calls that the rates table does not hold yet."""
    return (
        f"SELECT DISTINCT c.provider, c.model FROM calls c WHERE c.run_id IN {ids} "
        f"AND NOT EXISTS (SELECT 1 FROM {_RATES} r WHERE r.provider = c.provider AND r.model = c.model)"
    )


def _whole(rate: Any) -> int | None:
    """A rate in USD per million tokens as whole pico-dollars per token, or None when it is not whole."""
    pico = rate * _PICO_PER_TOKEN
    whole = int(pico)
    return whole if whole == pico else None


class RunSumsSql:
    """The per-run sums of one connection's store, made by its database (one per connection: the
    rates table is the connection's own)."""

    def __init__(self, dialect: str) -> None:
        ids = _IDS[dialect]
        self._create = (
            f"CREATE TEMP TABLE IF NOT EXISTS {_RATES} (provider TEXT NOT NULL, model TEXT NOT NULL, "
            f"input_pico {_INTEGER[dialect]}, cached_pico {_INTEGER[dialect]}, "  # NULL: unpriced
            "PRIMARY KEY (provider, model))"
        )
        mark = _MARK[dialect]
        self._insert_rate = f"INSERT INTO {_RATES} VALUES ({mark}, {mark}, {mark}, {mark})"
        self._unrated = _unrated_sql(ids)
        self._statements = (
            f"DELETE FROM run_totals WHERE run_id IN {ids}",
            f"DELETE FROM run_sums WHERE run_id IN {ids}",
            _totals_sql(ids),
            _sums_sql(ids),
        )
        self._rated_on: str | None = None  # the UTC day the table's rates are for (None: no table yet)
        # The models whose rates are not whole pico-dollars per token (never in the table)
        self._fractional: set[tuple[str, str]] = set()

    def forget(self) -> None:
        """After a rolled-back transaction: the table (or rows) made in it are gone; make them again."""
        self._rated_on = None

    def refresh(
        self, execute: Callable[..., Any], execute_many: Callable[[str, Sequence[Sequence[Any]]], Any],
        runs: str, prices: Any,
    ) -> bool:
        """Make the sums of the runs ``runs`` (a JSON array of run ids) again, inside the caller's
        transaction. False, having changed nothing, when a model of theirs has a rate SQL cannot
        multiply exactly: the caller sums them in Python."""
        today = datetime.now(tz=UTC).date().isoformat()
        if self._rated_on != today:
            # Today's rates, as the Python sums take them (and a new day's price change is seen)
            execute(self._create)
            execute(f"DELETE FROM {_RATES}")
            self._fractional.clear()
            self._rated_on = today
        unrated = execute(self._unrated, (runs,)).fetchall()
        if unrated:
            added: list[tuple[str, str, int | None, int | None]] = []
            cache: dict[Any, Any] = {}
            for provider, model in unrated:
                rates = resend_rates(prices, provider, model, cache)
                if rates is None:  # unpriced: its re-send costs 0 (as in Python), never read as a price
                    added.append((provider, model, None, None))
                    continue
                input_pico, cached_pico = _whole(rates[0]), _whole(rates[1])
                if input_pico is None or cached_pico is None:
                    self._fractional.add((provider, model))
                    continue
                added.append((provider, model, input_pico, cached_pico))
            if added:
                execute_many(self._insert_rate, added)
            if any(tuple(key) in self._fractional for key in unrated):
                return False
        for statement in self._statements:
            execute(statement, (runs,))
        return True

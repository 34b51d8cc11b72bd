"""The report engines agree on PostgreSQL too: the random stores of test_report_engines.py, written
into SQLite and into PostgreSQL, give the same rows from PostgreSQL's engine (`unitcost.report.pg_sql`),
SQLite's and the Python reference engine."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from test_report_engines import (
    BY_ATTRIBUTE,
    IN_A_WINDOW,
    MIDNIGHT,
    MODELS,
    NO_CALL,
    OF_ONE_OUTCOME,
    OF_SMALL_GROUPS,
    PLAIN,
    WINDOWS,
    _both,
    _names_no_attribute,
    _one_attribute,
    _write,
    attribute_tasks,
    outcome_tasks,
    outcomes,
    part_and_kind_tasks,
    requests,
    runs,
    small_groups_tasks,
    stray,
)

from unitcost.report import engine as _reports
from unitcost.report.engine import ReportError, report, row_for_json
from unitcost.store.connect import open_backend
from unitcost.store.schema import open_store


class _Writes:
    """What `_write` needs of a store (``.conn.execute`` with ``?``), over a PostgreSQL backend."""

    def __init__(self, backend: Any) -> None:
        self.conn = self
        self._backend = backend

    def execute(self, sql: str, params: Any = ()) -> Any:
        return self._backend.execute(sql, params)


@pytest.fixture
def stores(tmp_path: Any, pg_url: str) -> Any:
    sqlite_db = open_store(tmp_path / "engines.db")
    backend = open_backend(pg_url)
    yield sqlite_db, backend
    sqlite_db.conn.close()
    backend.close()


def _postgres_rows(backend: Any, monkeypatch: pytest.MonkeyPatch, **options: Any) -> tuple[Any, bool]:
    """PostgreSQL's rows (read from its rollups when the request names no task attribute; the rows
    summed by joining them, `pg_sql`, must be the same), and whether the server summed them."""
    used = []
    in_store = _reports._group_in_store
    in_rollups = _reports._group_in_rollups
    in_attributes = _reports._group_in_attribute_rollups
    rollups_used = []
    attributes_used = []

    def recording_attributes(db_: Any, request: Any) -> Any:
        grouped = in_attributes(db_, request)
        attributes_used.append(grouped is not None)
        return grouped

    def recording(db_: Any, request: Any) -> Any:
        grouped = in_store(db_, request)
        used.append(grouped is not None)
        return grouped

    def recording_rollups(db_: Any, request: Any) -> Any:
        grouped = in_rollups(db_, request)
        rollups_used.append(grouped is not None)
        return grouped

    def run() -> Any:
        try:
            return [row_for_json(r) for r in report(backend, **options)]
        except ReportError as exc:
            return f"ReportError: {exc}"

    with monkeypatch.context() as m:
        m.setattr(_reports, "_group_in_store", recording)
        m.setattr(_reports, "_group_in_rollups", recording_rollups)
        m.setattr(_reports, "_group_in_attribute_rollups", recording_attributes)
        rows = run()
    if _names_no_attribute(options) and not isinstance(rows, str) and used == [True] and not _odd(backend):
        assert rollups_used == [True], "the rollups were not read"
    if _one_attribute(options) and not isinstance(rows, str) and not _odd(backend):
        assert attributes_used == [True], "the attribute rollups were not read"
    with monkeypatch.context() as m:
        m.setattr(_reports, "_group_in_rollups", lambda db_, request: None)
        m.setattr(_reports, "_group_in_attribute_rollups", lambda db_, request: None)
        assert run() == rows, "PostgreSQL's rollups and its joined rows differ"
    return rows, used == [True]


def _odd(backend: Any) -> bool:
    return bool(backend.execute(
        "SELECT EXISTS (SELECT 1 FROM outcomes WHERE run_id IS NULL AND kind = '' AND key IS NOT NULL)"
    ).fetchone()[0])


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(runs=runs, outcomes=outcomes, stray=stray, requests_=st.lists(requests, min_size=1, max_size=4))
@example(runs=[], outcomes=[], stray=[("gone", [(MODELS[1], *NO_CALL), (MODELS[3], *NO_CALL)])], requests_=[PLAIN])
@example(
    runs=[("ticket", "K1", MIDNIGHT - 1, "{}", [(MODELS[0], 10, 0, 5, 0, 7, False, 0)], [("tool", 3)]),
          ("ticket", "K1", MIDNIGHT + 1, "{}", [(MODELS[1], 10, 2, 5, 1, None, True, 1)], [])],
    outcomes=[("kind and key", 0, 5, ("resolved", 1), 9), ("run", 1, 5, ("escalated", 0), None)],
    stray=[(None, [(MODELS[2], 1, 0, 1, 0, 3, False, 0)])],
    requests_=[{**PLAIN, "by": "kind"}, {**PLAIN, "by": "outcome", "every": "day"}, {**PLAIN, "every": "week"}],
)
# by outcome, of one kind: a group's percentiles are ranked among its own tasks, not the kind's
@example(
    runs=[("ticket", None, MIDNIGHT - 1 + i % 2, "{}", [], []) for i in range(7)],
    outcomes=[("run", 0, 0, ("resolved", 1), None)], stray=[],
    requests_=[{**PLAIN, "by": "outcome", "kind": "ticket"}, {**PLAIN, "by": "kind,outcome"}],
)
def test_postgres_gives_the_rows_sqlite_and_python_give(stores, monkeypatch, runs, outcomes, stray, requests_):
    sqlite_db, backend = stores
    _write(sqlite_db, runs, outcomes, stray)
    _write(_Writes(backend), runs, outcomes, stray)
    for request in requests_:
        since, until = request["window"]
        options = {k: v for k, v in request.items() if k != "window"}
        sql_rows, python_rows = _both(sqlite_db, monkeypatch, since_ns=since, until_ns=until, **options)
        pg_rows, in_server = _postgres_rows(backend, monkeypatch, since_ns=since, until_ns=until, **options)
        assert pg_rows == sql_rows == python_rows, request
        # Reports that name no task attribute are summed in the server.
        names = [n for n in (request["by"] or "").split(",") if n] + [w.split("=")[0] for w in request["where"] or []]
        if all(n in ("kind", "model", "provider", "outcome") for n in names) and not isinstance(pg_rows, str):
            assert in_server, request


@pytest.mark.parametrize("every", [None, "week"])
def test_postgres_reads_an_outcomes_percentiles_from_an_index(stores, monkeypatch, every):
    # As on SQLite (test_an_outcomes_percentiles_are_read_from_an_index): a group of one outcome is
    # ranked from the indexes in the server, never in Python, and gives the rows SQLite and Python give.
    from unitcost.report import rollup_sql

    sqlite_db, backend = stores
    _write(sqlite_db, *outcome_tasks(), [])
    _write(_Writes(backend), *outcome_tasks(), [])

    def ranked_in_python(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the costs were ranked in Python")

    for request in OF_ONE_OUTCOME:
        sql_rows, python_rows = _both(sqlite_db, monkeypatch, every=every, **request)
        with monkeypatch.context() as m:
            m.setattr(rollup_sql, "_entry_costs", ranked_in_python)
            pg_rows, in_server = _postgres_rows(backend, monkeypatch, every=every, **request)
        assert in_server and pg_rows == sql_rows == python_rows, request


@pytest.mark.parametrize("every", [None, "day", "week"])
def test_postgres_reads_a_windows_whole_days_from_the_per_day_rows_and_indexes(stores, monkeypatch, every):
    # As on SQLite (test_a_windows_whole_days_are_read_from_the_per_day_rows_and_indexes): in a time
    # window, only the tasks of the days its edges cut through are read from their rows, and the rows
    # equal SQLite's and Python's.
    from unitcost.report import rollup_sql

    sqlite_db, backend = stores
    _write(sqlite_db, *part_and_kind_tasks(), [])
    _write(_Writes(backend), *part_and_kind_tasks(), [])
    entry_costs = rollup_sql._entry_costs

    def at_the_edges(*args: Any) -> Any:
        assert args[6] - args[5] <= 86_400 * 10**9 + 2 * 10**9, "a window's tasks were read from their rows"
        return entry_costs(*args)

    for since, until in WINDOWS:
        for request in IN_A_WINDOW:
            sql_rows, python_rows = _both(sqlite_db, monkeypatch, every=every, since_ns=since, until_ns=until,
                                          **request)
            with monkeypatch.context() as m:
                m.setattr(rollup_sql, "_entry_costs", at_the_edges)
                pg_rows, in_server = _postgres_rows(backend, monkeypatch, every=every, since_ns=since,
                                                    until_ns=until, **request)
            assert in_server and pg_rows == sql_rows == python_rows, (since, until, request)


@pytest.mark.parametrize("every", [None, "day", "week"])
def test_postgres_reads_an_attributes_report_from_the_attribute_rollups(stores, monkeypatch, every):
    # As on SQLite (test_an_attributes_report_is_read_from_the_attribute_rollups): a report by or of one
    # task attribute is read from the attribute rollups (m020) in the server, and gives the rows SQLite
    # and Python give.
    sqlite_db, backend = stores
    _write(sqlite_db, *attribute_tasks(), [])
    _write(_Writes(backend), *attribute_tasks(), [])
    for since, until in [(None, None), (MIDNIGHT - 30 * 86_400 * 10**9, None), (MIDNIGHT - 30 * 86_400 * 10**9 + 7,
                                                                                   MIDNIGHT - 9 * 86_400 * 10**9)]:
        for request in BY_ATTRIBUTE:
            sql_rows, python_rows = _both(sqlite_db, monkeypatch, every=every, since_ns=since, until_ns=until,
                                          **request)
            pg_rows, in_server = _postgres_rows(backend, monkeypatch, every=every, since_ns=since, until_ns=until,
                                                **request)
            assert in_server and pg_rows == sql_rows == python_rows, (since, until, request)


@pytest.mark.parametrize("every", [None, "day", "month"])
def test_postgres_ranks_many_small_groups_from_the_indexes(stores, monkeypatch, every):
    # As on SQLite (test_many_small_groups_are_ranked_from_the_indexes): hundreds of small groups with
    # tied costs, ranked from the indexes in the server, never in Python, give the rows SQLite and
    # Python give.
    from unitcost.report import rollup_sql

    sqlite_db, backend = stores
    _write(sqlite_db, *small_groups_tasks(), [])
    _write(_Writes(backend), *small_groups_tasks(), [])

    def ranked_in_python(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the costs were ranked in Python")

    for request in OF_SMALL_GROUPS:
        sql_rows, python_rows = _both(sqlite_db, monkeypatch, every=every, **request)
        with monkeypatch.context() as m:
            m.setattr(rollup_sql, "_entry_costs", ranked_in_python)
            pg_rows, in_server = _postgres_rows(backend, monkeypatch, every=every, **request)
        assert in_server and pg_rows == sql_rows == python_rows, request

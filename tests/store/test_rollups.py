"""The per-task and per-day rollups (unitcost.store.rollups) stay what a full rebuild makes, whatever
writes the store and in whatever order: the store writer's batches (runs replaced by later spans with
another start, kind or key; calls and steps arriving before or after their run), outcomes recorded
later by run, by kind and key and by key alone, outcome import, prune, and rows written by something
other than unitcost (a test, an older unitcost), on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from unitcost.pricing.book import PriceBook
from unitcost.store.attr_rollups import rebuild as rebuild_attributes
from unitcost.store.attr_rollups import refresh_attributes
from unitcost.store.backend import CALL_COLUMNS, TABLES, Batch
from unitcost.store.connect import open_backend
from unitcost.store.prune import prune
from unitcost.store.rollups import (
    DAY_COUNTS,
    SUM_COLUMNS,
    ended_and_buckets_sql,
    mark_all_sql,
    month_of_day,
    refresh_statements,
    week_of_day,
)
from unitcost.store.rollups import refresh as refresh_rollups

DAY = 86_400 * 10**9
T0 = 1_764_028_800 * 10**9
KINDS = ["ticket", "chat"]
KEYS = [None, "K1", "K2"]
MODELS = [("openai", "gpt-4o-mini"), ("openai", "gpt-4o"), ("acme", "gpt-4o")]

run_rows = st.tuples(st.integers(0, 4), st.sampled_from(KINDS), st.sampled_from(KEYS), st.integers(0, 6),
                     st.one_of(st.none(), st.integers(0, 10**9)))
call_rows = st.tuples(st.integers(0, 5), st.integers(0, 4), st.sampled_from(MODELS),
                      st.one_of(st.none(), st.integers(0, 10**10)))
step_rows = st.tuples(st.integers(0, 3), st.integers(0, 4), st.sampled_from(["tool", "step", "session"]),
                      st.one_of(st.none(), st.integers(0, 10**9)))
outcome_rows = st.tuples(st.sampled_from(["run", "kind and key", "key alone"]), st.integers(0, 4),
                         st.sampled_from(KINDS), st.sampled_from(["K1", "K2"]), st.integers(0, 9), st.booleans())
operations = st.lists(
    st.one_of(
        st.tuples(st.just("batch"), st.lists(run_rows, max_size=3), st.lists(call_rows, max_size=4),
                  st.lists(step_rows, max_size=2), st.lists(outcome_rows, max_size=2)),
        st.tuples(st.just("import"), st.lists(outcome_rows, min_size=1, max_size=2)),
        st.tuples(st.just("prune"), st.integers(0, 6)),
        st.tuples(st.just("foreign call"), call_rows),
        st.tuples(st.just("foreign run"), run_rows),
    ),
    min_size=1, max_size=6,
)


def _run(n: int, kind: str, key: str | None, day: int, runtime: int | None) -> tuple[Any, ...]:
    # (task attributes that differ from run to run of a task, and when a run is written again: m020)
    attributes = "{}" if day % 4 == 1 else json.dumps(
        {"customer": ("acme", 1, "1", None, True)[(n + day) % 5], **({"plan": "pro"} if day % 3 == 0 else {})})
    return (f"r{n}", "t", None, None, kind, key, "svc", T0 + day * DAY, T0 + day * DAY + 10, None, attributes,
            runtime)


def _call(span: int, run: int, model: tuple[str, str], cost: int | None) -> tuple[Any, ...]:
    return tuple((dict.fromkeys(CALL_COLUMNS, 0) | {
        "span_id": f"c{span}", "trace_id": "t", "parent_span_id": None, "run_id": f"r{run}", "started_ns": T0 + span,
        "ended_ns": T0 + span + 1, "provider": model[0], "operation": "chat", "model": model[1],
        "response_model": None, "cost_pico": cost, "reasoning_cost_pico": 0, "price_source": None, "error_type": None,
        "service_tier": None, "price_modifiers": None, "usage_parts": None, "input_tokens": 100 + span,
        "output_tokens": 7, "energy_uwh_min": None, "energy_uwh_max": None, "gwp_ug_min": None, "gwp_ug_max": None,
        "energy_source": None,
    }).values())


def _outcome(row: tuple[Any, ...], origin: str | None) -> tuple[Any, ...]:
    target, run, kind, key, recorded, success = row
    run_id = f"r{run}" if target == "run" else None
    kind_ = kind if target == "kind and key" else None
    key_ = None if target == "run" else key
    return (T0 + recorded, run_id, kind_, key_, "resolved" if success else "escalated", int(success), 5, "test", origin)


_INSERT_OUTCOME = ("INSERT INTO outcomes (recorded_ns, run_id, kind, key, label, success, value_pico, source) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?, ?)")


def _apply(db: Any, operations_: list[Any]) -> None:
    serial = iter(range(1, 10**6))
    for op in operations_:
        if op[0] == "batch":
            _, runs, calls, steps, outcomes = op
            rows: tuple[list[tuple[Any, ...]], ...] = tuple([] for _ in TABLES)
            rows[0].extend(_run(*r) for r in runs)
            rows[1].extend(_call(span, run, model, cost) for span, run, model, cost in calls)
            rows[2].extend((f"s{span}", "t", None, f"r{run}", type_, "lookup", T0, T0 + 1, cost, None)
                           for span, run, type_, cost in steps)
            rows[3].extend(_outcome(o, f"o{next(serial)}") for o in outcomes)
            db.write_batch(Batch(rows), PriceBook())
        elif op[0] == "import":
            with db.transaction():
                db.execute_many(_INSERT_OUTCOME, [_outcome(o, None)[:8] for o in op[1]])
        elif op[0] == "prune":
            prune(db, T0 + op[1] * DAY)
        elif op[0] == "foreign call":
            with db.transaction():
                marks = ", ".join("?" * len(CALL_COLUMNS))
                db.execute(f"INSERT INTO calls ({', '.join(CALL_COLUMNS)}) VALUES ({marks}) "
                           "ON CONFLICT (span_id) DO NOTHING", _call(*op[1]))
        else:
            with db.transaction():
                db.execute("DELETE FROM runs WHERE run_id = ?", [f"r{op[1][0]}"])
                db.execute(f"INSERT INTO runs ({', '.join(TABLES[0].columns)}) VALUES "
                           f"({', '.join('?' * len(TABLES[0].columns))})", _run(*op[1]))
        db.ensure_fresh()


_TABLES = {
    "task_rollup": "task_kind, task_key", "task_model_rollup": "task_kind, task_key, model, provider",
    "rollup_days": "kind, start_day, outcome_label, state, part_kind, part, has_part",
    "task_attributes": "task_kind, task_key, name",
    "attribute_days": "name, value, start_day, kind, outcome_label, state",
}


def _snapshot(db: Any) -> dict[str, list[Any]]:
    return {table: [tuple(r) for r in db.execute(f"SELECT * FROM {table} ORDER BY {order}")]
            for table, order in _TABLES.items()}


def _rebuilt(db: Any) -> dict[str, list[Any]]:
    """The rollups made from scratch (in a transaction rolled back: the store is left as it was)."""
    class Undo(Exception):
        pass

    made: dict[str, list[Any]] = {}
    try:
        with db.transaction():
            for table in _TABLES:
                db.execute(f"DELETE FROM {table}")
            db.execute(mark_all_sql())
            refresh_rollups(_raw_execute(db), db.dialect)
            made.update(_snapshot(db))
            raise Undo()
    except Undo:
        pass
    return made


def _plain(db: Any) -> dict[str, list[Any]]:
    """The rollups made from scratch by the plain forms of the refresh's statements (every task summed
    from its runs, none taken as its one run; every task's outcome, split models and providers' costs
    written whatever it has), in a transaction rolled back: what the narrower forms must equal."""
    class Undo(Exception):
        pass

    made: dict[str, list[Any]] = {}
    execute = _raw_execute(db)
    try:
        with db.transaction():
            for table in _TABLES:
                db.execute(f"DELETE FROM {table}")
            db.execute(mark_all_sql())
            statements = refresh_statements(db.dialect, plain=True)
            for statement in statements[:-1]:
                execute(statement)
            refresh_attributes(execute, db.dialect)
            execute(statements[-1])
            made.update(_snapshot(db))
            raise Undo()
    except Undo:
        pass
    return made


def _backfilled(db: Any) -> dict[str, list[Any]]:
    """The rollups as m017 leaves a store whose rollups were made before it: its last ends, weeks and
    months made from the rows (in a transaction rolled back)."""
    class Undo(Exception):
        pass

    made: dict[str, list[Any]] = {}
    try:
        with db.transaction():
            db.execute("UPDATE task_rollup SET ended_ns = 0, start_week = 0, start_month = 0")
            db.execute("UPDATE task_model_rollup SET start_week = 0, start_month = 0")
            for statement in ended_and_buckets_sql(db.dialect):
                db.execute(statement)
            made.update(_snapshot(db))
            raise Undo()
    except Undo:
        pass
    return made


def _raw_execute(db: Any) -> Any:
    """The connection's own ``execute`` (placeholders ``?`` or ``%s``), as the writer hands `refresh` it."""
    return db.conn.execute if db.dialect == "sqlite" else db.connection().execute


def _migrated(db: Any) -> dict[str, list[Any]]:
    """The rollups with the task attributes' made again as m020 makes them (in a transaction rolled back)."""
    class Undo(Exception):
        pass

    made: dict[str, list[Any]] = {}
    try:
        with db.transaction():
            rebuild_attributes(_raw_execute(db), db.dialect)
            made.update(_snapshot(db))
            raise Undo()
    except Undo:
        pass
    return made


def _days_in_python(db: Any) -> list[tuple[Any, ...]]:
    """rollup_days as its rules make it from the task and per-model rows, summed in Python: per kind,
    start day, outcome and part (the whole task; each model, a task counted once a model whatever its
    providers; each provider; no model or provider for a task without calls), the tasks' counts and sums."""
    zeros = (0,) * len(SUM_COLUMNS)
    days: dict[tuple[Any, ...], list[int]] = {}

    def add(key: tuple[Any, ...], values: tuple[int, ...]) -> None:
        days[key] = [a + b for a, b in zip(days.get(key, [0] * len(values)), values, strict=True)]

    models: dict[tuple[str, str], list[tuple[Any, ...]]] = {}
    for row in db.execute(f"SELECT task_kind, task_key, provider, model, {', '.join(SUM_COLUMNS)} "
                          "FROM task_model_rollup"):
        models.setdefault((row[0], row[1]), []).append(tuple(row[2:]))
    cost_at = SUM_COLUMNS.index("cost_pico")
    for (task_kind, task_key, kind, day, label, outcome, success, value, runs, with_calls, tools, blocks, tool_cost,
         runtime_cost, split, *sums) in db.execute(
        "SELECT task_kind, task_key, kind, start_day, outcome_label, outcome_id, outcome_success, outcome_value_pico, "
        "runs, runs_with_calls, tool_calls, step_blocks, tool_cost_pico, runtime_cost_pico, split_models, "
        f"{', '.join(SUM_COLUMNS)} FROM task_rollup"
    ):
        head = (kind, day, label or "", 0 if outcome is None else 1 if success else 2)
        task = (1, runs, with_calls, value or 0)
        add((*head, "", "", 1), (*task, sums[cost_at] + tool_cost + runtime_cost, tools, blocks, tool_cost,
                                 runtime_cost, split, *sums))
        for part_kind, at in (("provider", 0), ("model", 1)):
            parts: dict[str, list[int]] = {}
            for row in models.get((task_kind, task_key), []):
                parts[row[at]] = [a + b for a, b in zip(parts.get(row[at], [0] * len(zeros)), row[2:], strict=True)]
            for part, part_sums in parts.items():
                add((*head, part_kind, part, 1), (*task, part_sums[cost_at], 0, 0, 0, 0, 0, *part_sums))
            if with_calls == 0:
                add((*head, part_kind, "", 0), (*task, 0, 0, 0, 0, 0, 0, *zeros))
    assert len(DAY_COUNTS) == 10
    return sorted((*key, *values) for key, values in days.items())


def _check_ends_and_buckets(db: Any) -> None:
    """Each task's last end is its runs' latest; its week and month are its start day's."""
    ends: dict[tuple[str, str], int] = {}
    for kind, key, run_id, ended in db.execute("SELECT kind, key, run_id, ended_ns FROM runs"):
        identity = ("", run_id) if key is None else (kind, key)
        ends[identity] = max(ends.get(identity, ended), ended)
    for kind, key, ended, day, week, month in db.execute(
        "SELECT task_kind, task_key, ended_ns, start_day, start_week, start_month FROM task_rollup"
    ):
        assert (ended, week, month) == (ends[(kind, key)], week_of_day(day), month_of_day(day))
    for day, week, month in db.execute("SELECT start_day, start_week, start_month FROM task_model_rollup"):
        assert (week, month) == (week_of_day(day), month_of_day(day))


def _check(db: Any, operations_: list[Any]) -> None:
    for table in (*_TABLES, "outcomes", "steps", "calls", "run_totals", "run_sums", "runs"):
        with db.transaction():
            db.execute(f"DELETE FROM {table}")
    db.ensure_fresh()
    _apply(db, operations_)
    assert db.execute("SELECT COUNT(*) FROM rollup_dirty").fetchone()[0] == 0
    kept = _snapshot(db)
    assert kept == _rebuilt(db)
    assert kept == _plain(db)
    assert [tuple(r) for r in kept["rollup_days"]] == _days_in_python(db)
    assert kept == _migrated(db)
    assert kept == _backfilled(db)
    _check_ends_and_buckets(db)
    assert db.execute("SELECT COUNT(*) FROM task_rollup").fetchone()[0] == db.execute(
        "SELECT COUNT(*) FROM (SELECT DISTINCT kind, COALESCE(key, run_id) FROM runs) AS t").fetchone()[0]


@pytest.fixture(scope="module")
def sqlite_store(tmp_path_factory: pytest.TempPathFactory) -> Any:
    db = open_backend(Path(tmp_path_factory.mktemp("rollups")) / "rollups.db")
    yield db
    db.close()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations_=operations)
def test_sqlite_rollups_are_what_a_rebuild_makes(sqlite_store, operations_):
    _check(sqlite_store, operations_)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations_=operations)
def test_postgres_rollups_are_what_a_rebuild_makes(pg_url, operations_):
    with open_backend(pg_url) as db:
        _check(db, operations_)


def test_a_report_reads_the_rollups_the_writer_kept(tmp_path):
    # The writer's own transaction leaves nothing dirty: a reader has nothing to refresh.
    with open_backend(tmp_path / "s.db") as db:
        _apply(db, [("batch", [(0, "ticket", "K1", 0, None), (1, "ticket", "K1", 1, 5)],
                     [(1, 0, MODELS[0], 7), (2, 1, MODELS[1], None)], [(1, 0, "tool", 3)],
                     [("kind and key", 0, "ticket", "K1", 3, True)])])
        row = db.execute("SELECT runs, calls, cost_pico, unpriced_calls, tool_calls, tool_cost_pico, "
                         "runtime_cost_pico, outcome_label FROM task_rollup").fetchall()
        assert row == [(2, 2, 7, 1, 1, 3, 5, "resolved")]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_new_tasks_and_tasks_made_again_alike(backend, tmp_path, request):
    """A refresh of new tasks only (nothing to take away; a keyless task's rows taken from its one run)
    and the ones after it, of tasks that have rows: a keyed task's second run, an outcome recorded later,
    a run of kind '' whose key is another run's id (one task, two runs: summed, not taken as one run), a
    model under two providers, a provider with two models. Each ends as the plain statements make it."""
    location = request.getfixturevalue("pg_url") if backend == "postgresql" else tmp_path / "s.db"
    with open_backend(location) as db:
        if backend == "postgresql":
            for table in (*_TABLES, "outcomes", "steps", "calls", "run_totals", "run_sums", "runs"):
                with db.transaction():
                    db.execute(f"DELETE FROM {table}")
            db.ensure_fresh()
        steps = [(1, 0, "tool", 3), (2, 0, "session", 4)]
        first = [("batch", [(0, "ticket", None, 0, 5), (1, "ticket", "K1", 1, None), (2, "chat", None, 2, None)],
                  [(1, 0, MODELS[0], 7), (2, 0, MODELS[1], 9), (3, 1, MODELS[1], 11), (4, 2, MODELS[2], None)],
                  steps, [])]
        _apply(db, first)
        assert db.execute("SELECT task_kind, task_key, runs, calls, cost_pico, tool_cost_pico, runtime_cost_pico, "
                          "task_cost_pico FROM task_rollup ORDER BY 1, 2").fetchall() == [
            ("", "r0", 1, 2, 16, 3, 9, 28), ("", "r2", 1, 1, 0, 0, 0, 0), ("ticket", "K1", 1, 1, 11, 0, 0, 11)]
        assert _snapshot(db) == _plain(db)
        later = [
            # (a second run of K1 calling gpt-4o under another provider: split; an outcome of r0's task)
            ("batch", [(3, "ticket", "K1", 3, None)], [(5, 3, MODELS[2], 13)], [],
             [("run", 0, "ticket", "K1", 4, True)]),
            ("import", [("kind and key", 0, "ticket", "K1", 5, False)]),
            # (a run of kind '' keyed by r2's id: r2's task has two runs now)
            ("batch", [(4, "", "r2", 4, 6)], [(6, 4, MODELS[2], 17)], [], []),
        ]
        _apply(db, later)
        rows = db.execute("SELECT task_kind, task_key, runs, calls, cost_pico, runtime_cost_pico, split_models, "
                          "outcome_label FROM task_rollup ORDER BY 1, 2").fetchall()
        assert [tuple(r) for r in rows] == [
            ("", "r0", 1, 2, 16, 9, 0, "resolved"), ("", "r2", 2, 2, 17, 6, 0, None),
            ("ticket", "K1", 2, 2, 24, 0, 1, "escalated")]
        assert [tuple(r) for r in db.execute(
            "SELECT task_key, provider, model, cost_pico, provider_cost_pico FROM task_model_rollup "
            "ORDER BY task_key, provider, model")] == [
            ("K1", "acme", "gpt-4o", 13, 13), ("K1", "openai", "gpt-4o", 11, 11),
            ("r0", "openai", "gpt-4o", 9, 16), ("r0", "openai", "gpt-4o-mini", 7, None),
            ("r2", "acme", "gpt-4o", 17, 17)]
        kept = _snapshot(db)
        assert kept == _plain(db)
        assert kept == _rebuilt(db)
        assert [tuple(r) for r in kept["rollup_days"]] == _days_in_python(db)

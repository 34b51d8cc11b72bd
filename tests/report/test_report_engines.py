"""The two report engines give the same rows: SQLite's (every report that does not re-price) and the
Python one it replaced (still used by `unitcost whatif`, and for stores the SQL would read otherwise).

Random stores, written row by row: retried tasks (runs sharing a key), runs without a key, outcomes
by run id, by kind and key, by key alone, late ones overriding earlier ones, for unknown runs and
keys; calls outside any task and of runs that never reached the store; tools and step blocks;
several models a task, one model under two providers, unpriced and estimated calls; runs starting
a nanosecond either side of midnight. Each is reported grouped, bucketed, filtered and windowed in
many ways, by both engines.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from unitcost.report import engine as _reports
from unitcost.report.engine import ReportError, report, row_for_json
from unitcost.store.schema import open_store

DAY = 86_400 * 10**9
HOUR = 3_600 * 10**9
MIDNIGHT = 1_764_028_800 * 10**9  # 2025-11-25T00:00:00Z, a Tuesday
MODELS = [("openai", "gpt-4o-mini"), ("openai", "gpt-4o"), ("anthropic", "claude-sonnet-4-5"), ("acme", "gpt-4o")]

# Starts: around midnights (where rounding to the microsecond moves a start to the next day), and
# anywhere in five weeks (so days, weeks and months differ).
starts = st.one_of(
    st.builds(lambda d, e: MIDNIGHT + d * DAY + e, st.integers(-40, 10), st.sampled_from([-1, -500, -499, 0, 1, 999])),
    st.integers(MIDNIGHT - 35 * DAY, MIDNIGHT + 5 * DAY),
)
calls = st.lists(
    st.tuples(
        st.sampled_from(MODELS),
        st.integers(0, 5000),  # input
        st.integers(0, 500),  # cache read
        st.integers(0, 300),  # output
        st.integers(0, 200),  # reasoning
        st.one_of(st.none(), st.integers(0, 10**11)),  # cost (None: unpriced)
        st.booleans(),  # estimated
        st.integers(0, 2),  # SDK retries
    ),
    max_size=3,
)
steps = st.lists(
    st.tuples(st.sampled_from(["tool", "step", "session"]), st.one_of(st.none(), st.integers(0, 10**10))), max_size=2
)
_ABSENT = object()  # (an attribute the run does not set; None: set to JSON null)
attributes = st.one_of(
    st.just("{}"),
    st.builds(
        lambda c, p: json.dumps({k: v for k, v in (("customer", c), ("prompt", p)) if v is not _ABSENT}),
        # (odd values: the report key is str() of the decoded value, so 1 and "1" are one group, True is
        # "True", 1.0 "1.0", a float, a list or an object as Python writes it, null as no value)
        st.sampled_from([_ABSENT, "acme", "globex", None, True, 1, "1", 1.0, 0.1 + 0.2, [1, "a"], {"a": [None]},
                         "None", ""]),
        st.sampled_from([_ABSENT, "v1", "v2", 2, False]),
    ),
)
runs = st.lists(
    st.tuples(
        st.sampled_from(["ticket", "chat"]),
        st.sampled_from([None, "K1", "K2", "K3", "K4"]),  # shared keys: retried tasks
        starts,
        attributes,
        calls,
        steps,
    ),
    max_size=8,
)
outcomes = st.lists(
    st.tuples(
        st.sampled_from(["run", "unknown run", "kind and key", "key alone"]),
        st.integers(0, 7),  # which run (its id, or its kind and key)
        st.integers(0, 10),  # recorded at (ties are broken by insertion order)
        st.sampled_from([("resolved", 1), ("escalated", 0), ("refunded", 0)]),
        st.one_of(st.none(), st.integers(1, 10**13)),  # value
    ),
    max_size=8,
)
stray = st.lists(st.tuples(st.sampled_from([None, "gone"]), calls), max_size=2)  # outside any task
requests = st.fixed_dictionaries(
    {
        "by": st.sampled_from(
            ["kind", "model", "provider", "outcome", "customer", "kind,customer", "outcome,model", "prompt,provider",
             "attr.kind", "customer,prompt", "", "customer,outcome", "outcome,prompt", "attr.customer"]
        ),
        "every": st.sampled_from([None, "day", "week", "month"]),
        "where": st.sampled_from([None, ["customer=acme"], ["outcome=resolved"], ["kind=ticket"], ["prompt=2"],
                                  ["customer=1"], ["customer=True"], ["prompt=v1"]]),
        "kind": st.sampled_from([None, "ticket"]),
        "window": st.sampled_from(
            [(None, None), (MIDNIGHT - 7 * DAY, None), (None, MIDNIGHT), (MIDNIGHT - DAY, MIDNIGHT + DAY),
             (MIDNIGHT - 9 * DAY + 7 * HOUR, MIDNIGHT + 13 * HOUR)]  # (its edges cut through days)
        ),
    }
)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Any:
    db = open_store(Path(tmp_path_factory.mktemp("engines")) / "engines.db")
    yield db
    db.conn.close()


def _write(db: Any, runs_: list, outcomes_: list, stray_: list) -> None:
    conn = db.conn
    for table in ("runs", "calls", "steps", "outcomes", "run_totals", "run_sums"):
        conn.execute(f"DELETE FROM {table}")
    span = iter(range(1, 10**6))

    def add_calls(run_id: str | None, started: int, calls_: list) -> None:
        for i, ((provider, model), inp, cached, out, reasoning, cost, estimated, retries) in enumerate(calls_):
            conn.execute(
                "INSERT INTO calls (span_id, trace_id, run_id, started_ns, ended_ns, provider, operation, model, "
                "input_tokens, cache_read_tokens, output_tokens, reasoning_tokens, cost_pico, reasoning_cost_pico, "
                "estimated, retries) VALUES (?, 't', ?, ?, ?, ?, 'chat', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (f"c{next(span)}", run_id, started + i, started + i + 1, provider, model, inp, cached, out, reasoning,
                 cost, None if cost is None else cost // 3, int(estimated), retries),
            )

    for n, (kind, key, started, attrs, calls_, steps_) in enumerate(runs_):
        run_id = f"r{n}"
        # A [[runtime]] charge on two runs of three (derived, so the strategies' examples keep their shape).
        runtime = None if n % 3 == 2 else (started % 997 + n) * 10**6
        conn.execute(
            "INSERT INTO runs (run_id, trace_id, kind, key, started_ns, ended_ns, attributes, runtime_cost_pico) "
            "VALUES (?, 't', ?, ?, ?, ?, ?, ?)",
            (run_id, kind, key, started, started + 10, attrs, runtime),
        )
        add_calls(run_id, started, calls_)
        for type_, cost in steps_:
            conn.execute(
                "INSERT INTO steps (span_id, trace_id, run_id, type, name, started_ns, ended_ns, cost_pico) "
                "VALUES (?, 't', ?, ?, 'lookup', ?, ?, ?)",
                (f"s{next(span)}", run_id, type_, started, started + 1, cost),
            )
    for run_id, calls_ in stray_:
        add_calls(run_id, MIDNIGHT - 3 * DAY, calls_)
    conn.execute(
        "INSERT INTO steps (span_id, trace_id, run_id, type, name, started_ns, ended_ns, cost_pico) "
        "VALUES ('s-stray', 't', NULL, 'tool', 'lookup', ?, ?, 5), ('s-stray-session', 't', NULL, 'session', "
        "'browser', ?, ?, 7)", (MIDNIGHT - DAY, MIDNIGHT - DAY + 1, MIDNIGHT - DAY, MIDNIGHT - DAY + 1)
    )
    for target, which, recorded, (label, success), value in outcomes_:
        run = runs_[which] if which < len(runs_) else ("ticket", "K9", 0, "{}", [], [])
        run_id = kind = key = None
        if target == "run":
            run_id = f"r{which}"
        elif target == "unknown run":
            run_id = "nope"
        elif target == "kind and key":
            kind, key = run[0], run[1] or "K9"
        else:
            key = run[1] or "K9"
        conn.execute(
            "INSERT INTO outcomes (recorded_ns, run_id, kind, key, label, success, value_pico, source) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, 'test')",
            (recorded, run_id, kind, key, label, success, value),
        )


def _both(db: Any, monkeypatch: pytest.MonkeyPatch, **options: Any) -> tuple[Any, Any]:
    """(the SQL engine's rows or error, the Python engine's), each as JSON rows or the error's text.

    The SQL engine's rows are read twice, from the store's per-task rollups (unitcost.report.rollup_sql,
    for every request that names no task attribute; unitcost.report.attr_rollup_sql for one that names
    one) and by joining the rows (unitcost.report.sql), and must be the same."""
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
            return [row_for_json(r) for r in report(db, **options)]
        except ReportError as exc:
            return f"ReportError: {exc}"

    with monkeypatch.context() as m:
        m.setattr(_reports, "_group_in_store", recording)
        m.setattr(_reports, "_group_in_rollups", recording_rollups)
        m.setattr(_reports, "_group_in_attribute_rollups", recording_attributes)
        sql_rows = run()
    assert used == [True] or isinstance(sql_rows, str), "the SQL engine was not used"
    if _names_no_attribute(options) and not isinstance(sql_rows, str) and not _odd_identities(db):
        assert rollups_used == [True], "the rollups were not read"
    if _one_attribute(options) and not isinstance(sql_rows, str) and not _odd_identities(db):
        assert attributes_used == [True], "the attribute rollups were not read"
    with monkeypatch.context() as m:
        m.setattr(_reports, "_group_in_store", recording)
        m.setattr(_reports, "_group_in_rollups", lambda db_, request: None)
        m.setattr(_reports, "_group_in_attribute_rollups", lambda db_, request: None)
        joined_rows = run()
    assert joined_rows == sql_rows, "the rollups and the joined rows differ"
    with monkeypatch.context() as m:
        m.setattr(_reports, "_group_in_store", lambda db_, request: None)
        python_rows = run()
    return sql_rows, python_rows


def _names_no_attribute(options: dict[str, Any]) -> bool:
    """The request is one the rollups answer: it names no task attribute."""
    names = [n for n in (options.get("by") or "").split(",") if n]
    names += [w.split("=")[0] for w in options.get("where") or []]
    return all(n in ("kind", "model", "provider", "outcome") for n in names)


def _one_attribute(options: dict[str, Any]) -> bool:
    """The request is one the attribute rollups answer: one task attribute in --by (once) and --where, no
    model or provider."""
    by = [n for n in (options.get("by") or "").split(",") if n]
    where = [w.split("=")[0] for w in options.get("where") or []]
    fields = ("kind", "model", "provider", "outcome")
    named = [n.removeprefix("attr.") for n in by if n not in fields]
    filtered = [n.removeprefix("attr.") for n in where if n not in fields]
    return not {"model", "provider"} & set(by) and len(set(named + filtered)) == 1 and len(named) <= 1 \
        and len(filtered) <= 1


def _odd_identities(db: Any) -> bool:
    """A store whose task identities of kind '' the SQL engines leave to Python."""
    return bool(db.conn.execute(
        "SELECT EXISTS (SELECT 1 FROM outcomes WHERE run_id IS NULL AND kind = '' AND key IS NOT NULL)"
    ).fetchone()[0])


NO_CALL = (0, 0, 0, 0, None, False, 0)
PLAIN = {"by": "model", "every": None, "where": None, "kind": None, "window": (None, None)}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(runs=runs, outcomes=outcomes, stray=stray, requests_=st.lists(requests, min_size=1, max_size=4))
# no task, and a model under two providers: the only entries are the (none) row's
@example(runs=[], outcomes=[], stray=[("gone", [(MODELS[1], *NO_CALL), (MODELS[3], *NO_CALL)])], requests_=[PLAIN])
# Found by Hypothesis: by outcome, of one kind, the rollups ranked the 'resolved' group's costs among
# all the kind's tasks (read from the kind's cost index, which holds no outcome): p50 was another
# task's cost. (Its runs started at the same nanosecond, which had nothing to do with it.)
@example(
    runs=[("ticket", None, T, "{}", [], []) for T in (1764028799999999999, 1764028799999999999,
          1_761_004_800_000_000_000, 1764028799999999999, 1764028799999999999, 1_761_004_800_000_000_000,
          1_761_004_800_000_000_000)],
    outcomes=[("run", 0, 0, ("resolved", 1), None)], stray=[],
    requests_=[{"by": "outcome", "every": None, "where": None, "kind": "ticket", "window": (None, None)}],
)
def test_both_engines_give_the_same_rows(store, monkeypatch, runs, outcomes, stray, requests_):
    _write(store, runs, outcomes, stray)
    for request in requests_:
        since, until = request["window"]
        options = {k: v for k, v in request.items() if k != "window"}
        sql_rows, python_rows = _both(store, monkeypatch, since_ns=since, until_ns=until, **options)
        assert sql_rows == python_rows, request


def test_a_store_the_sql_would_read_otherwise_is_reported_by_the_python_engine(store, monkeypatch):
    # A run of kind "" keyed by another run's id meets that run's task in the Python engine only.
    _write(store, [("ticket", None, MIDNIGHT, "{}", [], []), ("", "r0", MIDNIGHT + 1, "{}", [], [])], [], [])
    assert _reports._group_in_store(store, _reports._Request(["kind"], None, None, None, None, None)) is None
    row = report(store)[0]
    assert (row["group"], row["tasks"], row["runs"]) == ({"kind": "ticket"}, 1, 2)


def _both_from_indexes(store: Any, monkeypatch: pytest.MonkeyPatch, **options: Any) -> Any:
    """`_both`, failing if the rollups' engine ranked any group's costs in Python (read them all and
    sorted them) rather than reading each rank from an index."""
    from unitcost.report import rollup_sql

    def ranked_in_python(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the costs were ranked in Python")

    with monkeypatch.context() as m:
        m.setattr(rollup_sql, "_entry_costs", ranked_in_python)
        return _both(store, monkeypatch, **options)


@pytest.mark.parametrize("every", ["day", "week", "month"])
@pytest.mark.parametrize("by", ["kind", "model"])
def test_a_weeks_or_months_percentiles_are_read_from_an_index(store, monkeypatch, every, by):
    # Tasks over six weeks and two months, several a day: each bucket's p50/p95 are read at their rank
    # from the (kind or model, bucket, cost) indexes (m017), never by ranking every cost in Python,
    # and equal the Python engine's.
    runs_ = [(("ticket", "chat")[n % 2], None, MIDNIGHT - 40 * DAY + n * 7 * DAY // 5 + n % 3, "{}",
              [(MODELS[n % 3], 100, 0, 10, 0, (n * 7919) % 10**9, False, 0)], []) for n in range(30)]
    _write(store, runs_, [], [])
    sql_rows, python_rows = _both_from_indexes(store, monkeypatch, by=by, every=every)
    assert sql_rows == python_rows
    assert len({r["group"][every] for r in python_rows}) > 2


# Requests whose groups are each of one outcome (by outcome, or an outcome filter).
OF_ONE_OUTCOME = [
    {"by": "outcome"}, {"by": "kind,outcome"}, {"by": "outcome", "kind": "ticket"},
    {"by": "kind", "where": ["outcome=resolved"]}, {"by": "model", "where": ["outcome=escalated"]},
    {"by": "outcome,model"}, {"by": "model,outcome"},
]


def outcome_tasks() -> tuple[list, list]:
    """(runs, outcomes): tasks of two kinds over six weeks and two months, several a day, some without
    calls, most with one of three outcomes."""
    runs_ = [(("ticket", "chat")[n % 2], None, MIDNIGHT - 40 * DAY + n * 7 * DAY // 5 + n % 3, "{}",
              [(MODELS[n % 3], 100, 0, 10, 0, (n * 7919) % 10**9, False, 0)] if n % 7 else [], [])
             for n in range(40)]
    labels = [("resolved", 1), ("escalated", 0), ("refunded", 0)]
    return runs_, [("run", n, n, labels[n % 5 % 3], None) for n in range(40) if n % 4]


@pytest.mark.parametrize("every", [None, "day", "week", "month"])
@pytest.mark.parametrize("request_", OF_ONE_OUTCOME)
def test_an_outcomes_percentiles_are_read_from_an_index(store, monkeypatch, every, request_):
    # The p50/p95 of a group of one outcome, by bucket or not, are read at their rank from the
    # per-outcome and per-model indexes (m018), never by ranking every cost in Python, and equal the
    # Python engine's.
    _write(store, *outcome_tasks(), [])

    sql_rows, python_rows = _both_from_indexes(store, monkeypatch, every=every, **request_)
    assert sql_rows == python_rows
    assert len({r["group"].get("outcome") for r in python_rows}) > 1 or "where" in request_
    if every:
        assert len({r["group"][every] for r in python_rows}) > 2


# Requests by provider, or by model or provider and kind (m019): each group's costs in an index's order.
BY_PART_AND_KIND = [
    {"by": "provider"}, {"by": "provider,outcome"}, {"by": "provider", "where": ["outcome=resolved"]},
    {"by": "kind,provider"}, {"by": "kind,model"}, {"by": "model", "kind": "ticket"},
    {"by": "kind,model,outcome"}, {"by": "provider", "kind": "chat", "where": ["outcome=escalated"]},
]


@pytest.mark.parametrize("every", [None, "day", "week", "month"])
@pytest.mark.parametrize("request_", BY_PART_AND_KIND)
def test_a_providers_or_a_kinds_models_percentiles_are_read_from_an_index(store, monkeypatch, every, request_):
    # Keyed tasks of two kinds, of several runs, some calling two models of one provider (a task's cost
    # under a provider is then its models' added): the p50/p95 of a provider, and of a model or a
    # provider of one kind, by bucket or not, are read at their rank from the per-provider (m019) and
    # per-model indexes, never by ranking every cost in Python, and equal the Python engine's.
    def calls(n: int) -> list:
        one = [(MODELS[n % 3], 100, 0, 10, 0, (n * 7919) % 10**9, False, 0)]
        return one + [(MODELS[1], 50, 0, 5, 0, (n * 104729) % 10**8, False, 0)] if n % 3 == 0 else one

    runs_ = [(("ticket", "chat")[n % 2], f"K{n % 18}", MIDNIGHT - 40 * DAY + n * 7 * DAY // 5 + n % 3, "{}",
              calls(n) if n % 7 else [], []) for n in range(48)]
    labels = [("resolved", 1), ("escalated", 0), ("refunded", 0)]
    _write(store, runs_, [("run", n, n, labels[n % 5 % 3], None) for n in range(48) if n % 4], [])

    sql_rows, python_rows = _both_from_indexes(store, monkeypatch, every=every, **request_)
    assert sql_rows == python_rows
    assert len(python_rows) > 1


def part_and_kind_tasks() -> tuple[list, list]:
    """(runs, outcomes): keyed tasks of two kinds over six weeks and two months, several a day, of
    several runs, some without calls, some calling two models of one provider, most with an outcome."""
    def calls(n: int) -> list:
        one = [(MODELS[n % 3], 100, 0, 10, 0, (n * 7919) % 10**9, False, 0)]
        return one + [(MODELS[1], 50, 0, 5, 0, (n * 104729) % 10**8, False, 0)] if n % 3 == 0 else one

    runs_ = [(("ticket", "chat")[n % 2], f"K{n % 120}", MIDNIGHT - 60 * DAY + n * DAY // 3 + n % 3, "{}",
              calls(n) if n % 7 else [], []) for n in range(240)]
    labels = [("resolved", 1), ("escalated", 0), ("refunded", 0)]
    return runs_, [("run", n, n, labels[n % 5 % 3], None) for n in range(120) if n % 4]


# Windows over the tasks' forty days (from 2025-09-26): from a Monday's midnight on (a whole month,
# whole weeks and days); cutting through a day at each end; up to a midnight (a Saturday's: it cuts
# through a week).
WINDOWS = [(MIDNIGHT - 57 * DAY, None), (MIDNIGHT - 50 * DAY + 5 * HOUR, MIDNIGHT - 24 * DAY + 17 * HOUR),
           (None, MIDNIGHT - 31 * DAY)]
IN_A_WINDOW = [
    {"by": "model"}, {"by": "provider"}, {"by": "outcome"}, {"by": "kind,outcome"}, {"by": "model,outcome"},
    {"by": "kind,model"}, {"by": "provider", "where": ["outcome=resolved"]}, {"by": "kind", "kind": "chat"},
]


@pytest.mark.parametrize("every", [None, "day", "week"])
@pytest.mark.parametrize("window", WINDOWS)
@pytest.mark.parametrize("request_", IN_A_WINDOW)
def test_a_windows_whole_days_are_read_from_the_per_day_rows_and_indexes(store, monkeypatch, every, window,
                                                                          request_):
    # In a time window, the tasks of its whole days are counted from the per-day rows and their costs
    # read from the per-day indexes; only the tasks of the days its edges cut through are read from
    # their rows (never a span of more than a day and its edges' seconds), none when it starts and
    # ends at midnights and no task starts then; a day's bucket of whole days is read at its ranks
    # (never every cost read). The rows equal the Python engine's.
    from unitcost.report import rollup_sql

    _write(store, *part_and_kind_tasks(), [])
    entry_costs, over_days = rollup_sql._entry_costs, rollup_sql._ranked_over_days
    spans: list[int] = []
    read_over_days: list[Any] = []

    def at_the_edges(*args: Any) -> Any:
        since, until = args[5], args[6]
        spans.append(until - since)
        return entry_costs(*args)

    def recorded(*args: Any) -> Any:
        read_over_days.append(args[2])
        return over_days(*args)

    since, until = window
    with monkeypatch.context() as m:
        m.setattr(rollup_sql, "_entry_costs", at_the_edges)
        m.setattr(rollup_sql, "_ranked_over_days", recorded)
        sql_rows, python_rows = _both(store, monkeypatch, every=every, since_ns=since, until_ns=until, **request_)
    assert sql_rows == python_rows
    assert python_rows and (every == "day" or any(r["tasks"] > 2 for r in python_rows))
    # (_both's second, joined, report reads no rollup)
    assert all(span <= DAY + 2 * 10**9 for span in spans), spans
    if (since is None or since % DAY == 0) and (until is None or until % DAY == 0):
        assert not spans
    if every == "day":  # (a day the window cuts through: its tasks' costs, read from their rows)
        assert not any(read_over_days), read_over_days
    elif every is None:
        assert read_over_days


@pytest.mark.parametrize("moment", [-1, -499, -500, 0, 1])
def test_a_task_started_by_a_windows_edge_is_counted_on_its_side(store, monkeypatch, moment):
    # A start less than half a microsecond before midnight is on the next day (start_day rounds it,
    # as the buckets do): in a window from that midnight, it is no task of the window's first day.
    runs_ = [("ticket", None, MIDNIGHT + moment, "{}", [(MODELS[0], 100, 0, 10, 0, 10**6, False, 0)], []),
             ("ticket", None, MIDNIGHT + HOUR, "{}", [(MODELS[0], 100, 0, 10, 0, 3 * 10**6, False, 0)], []),
             ("ticket", None, MIDNIGHT - HOUR, "{}", [(MODELS[0], 100, 0, 10, 0, 5 * 10**6, False, 0)], [])]
    _write(store, runs_, [], [])
    for window in [(MIDNIGHT, None), (None, MIDNIGHT), (MIDNIGHT - DAY, MIDNIGHT + DAY)]:
        for by in ("model", "kind"):
            sql_rows, python_rows = _both(store, monkeypatch, by=by, since_ns=window[0], until_ns=window[1])
            assert sql_rows == python_rows, (window, by)


def attribute_tasks() -> tuple[list, list]:
    """(runs, outcomes): tasks of two kinds over six weeks, several a day, some of several runs whose
    attributes disagree (a later run changes a value, adds one, sets one to null), with odd values
    (ints and strings alike as report keys, bools, floats, nested ones), some without calls, most with
    an outcome."""
    values = ["acme", "globex", 1, "1", True, 1.5, [1, "a"], {"tier": 2}, "initech"]

    def attributes(n: int) -> str:
        found: dict[str, Any] = {"customer": values[n % len(values)]}
        if n % 5 == 0:
            found["plan"] = ("free", "pro", None)[n % 3]
        return json.dumps(found)

    runs_ = [(("ticket", "chat")[n % 2], f"K{n % 90}", MIDNIGHT - 40 * DAY + n * DAY // 4 + n % 3, attributes(n),
              [(MODELS[n % 3], 100, 0, 10, 0, (n * 7919) % 10**9, False, 0)] if n % 7 else [], [])
             for n in range(160)]
    labels = [("resolved", 1), ("escalated", 0), ("refunded", 0)]
    return runs_, [("run", n, n, labels[n % 5 % 3], None) for n in range(160) if n % 4]


# Requests by or of one task attribute (m020).
BY_ATTRIBUTE = [
    {"by": "customer"}, {"by": "plan"}, {"by": "kind,customer"}, {"by": "customer,outcome"},
    {"by": "kind", "where": ["customer=1"]}, {"by": "customer", "where": ["customer=acme"]},
    {"by": "customer", "kind": "chat"}, {"by": "outcome", "where": ["plan=pro"]},
    {"by": "customer", "where": ["outcome=resolved"]}, {"by": "attr.customer", "where": ["kind=ticket"]},
]
ATTRIBUTE_WINDOWS = [(None, None), (MIDNIGHT - 30 * DAY, None), (MIDNIGHT - 30 * DAY + 5 * HOUR, MIDNIGHT - 9 * DAY)]


@pytest.mark.parametrize("every", [None, "day", "week", "month"])
@pytest.mark.parametrize("window", ATTRIBUTE_WINDOWS)
@pytest.mark.parametrize("request_", BY_ATTRIBUTE)
def test_an_attributes_report_is_read_from_the_attribute_rollups(store, monkeypatch, every, window, request_):
    # A report by or filtered by one task attribute reads the attribute rollups (m020): no run's
    # attributes are merged for it (the joined engine's merge fails the test), and a group by value
    # (and bucket) of a whole-day window is ranked from the indexes, not by reading every cost; the rows
    # equal the Python engine's.
    from unitcost.report import attr_rollup_sql, sql

    _write(store, *attribute_tasks(), [])
    since, until = window

    def merged(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the runs' attributes were merged")

    def read_every_cost(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("values", True):
            raise AssertionError("every cost was read")
        return ranked_from_costs(*args, **kwargs)

    ranked_from_costs = attr_rollup_sql._ranked_from_costs
    # (from the indexes: groups by value, kind and outcome without buckets or a window; by value (and bucket)
    # over whole days)
    names = request_["by"].split(",")
    by_value = any(n in ("customer", "plan", "attr.customer") for n in names) and (
        (every is None and window == (None, None))
        or (len(names) == 1 and (since is None or since % DAY == 0) and (until is None or until % DAY == 0)))
    with monkeypatch.context() as m:
        m.setattr(sql.TaskTables, "merged_attributes", merged)
        if by_value:
            m.setattr(attr_rollup_sql, "_ranked_from_costs", read_every_cost)
        rows = [row_for_json(r) for r in report(store, every=every, since_ns=since, until_ns=until, **request_)]
    sql_rows, python_rows = _both(store, monkeypatch, every=every, since_ns=since, until_ns=until, **request_)
    assert rows == sql_rows == python_rows
    assert python_rows and (len(python_rows) > 1 or "where" in request_)


@pytest.mark.parametrize("attributes_", [
    '{"customer": "a\\ud800"}',  # a lone surrogate: no store holds it as text
    '{"": 1, "customer": "acme"}',  # an attribute named ''
])
def test_a_task_whose_attributes_the_rollup_cannot_hold_is_reported_from_its_runs(store, monkeypatch, attributes_):
    # Such a task is marked in the rollup (unitcost.store.attr_rollups): a report by attribute then merges
    # the runs' attributes itself, and gives the Python engine's rows.
    runs_ = [("ticket", None, MIDNIGHT + n, '{"customer": "globex"}' if n else attributes_,
              [(MODELS[0], 100, 0, 10, 0, 10**6 * (n + 1), False, 0)], []) for n in range(3)]
    _write(store, runs_, [], [])
    for request in ({"by": "customer"}, {"by": "kind", "where": ["customer=globex"]}):
        assert _reports._group_in_attribute_rollups(
            _reports.open_backend(store), _reports._Request(request["by"].split(","), None, None, None, None,
                                                            request.get("where"))) is None
        rows = [row_for_json(r) for r in report(store, **request)]
        with monkeypatch.context() as m:
            m.setattr(_reports, "_group_in_store", lambda db_, request: None)
            assert rows == [row_for_json(r) for r in report(store, **request)]


def small_groups_tasks() -> tuple[list, list]:
    """(runs, outcomes): many small groups by day. Keyed tasks of two kinds over seven weeks and two
    months, from none to over twenty a day (several retried), calling one of three models of two
    providers or two of one provider; most costs from a few values (ties within a group and across the
    groups of one model's day), the others apart; most with one of three outcomes. By day, many groups
    of one or two tasks; by model alone, over a hundred (a p99 below the greatest)."""
    costs = [10**6, 3 * 10**6, 10**6, 7 * 10**6, 3 * 10**6]

    def calls(n: int) -> list:
        cost = costs[n % 5] if n % 4 else (n * 7919) % 10**9
        one = [(MODELS[n % 3], 100, 0, 10, 0, cost, False, 0)]
        return one + [(MODELS[(n + 1) % 3], 50, 0, 5, 0, costs[n % 3], False, 0)] if n % 6 == 0 else one

    # (day n * n % 50: some days many tasks, some one or two, some none)
    runs_ = [(("ticket", "chat")[n % 7 % 2], f"K{n % 300}", MIDNIGHT - 50 * DAY + n * n % 50 * DAY + n * HOUR % DAY,
              "{}", calls(n) if n % 11 else [], []) for n in range(330)]
    labels = [("resolved", 1), ("escalated", 0), ("refunded", 0)]
    return runs_, [("run", n, n, labels[n % 7 % 3], None) for n in range(330) if n % 5]


# Requests whose groups are a model's or a provider's of an outcome or kind (walked in its index
# counting those entries), or an outcome's of a kind.
OF_SMALL_GROUPS = [
    {"by": "model,outcome"}, {"by": "kind,model,outcome"}, {"by": "outcome,model"}, {"by": "provider,outcome"},
    {"by": "kind,outcome"}, {"by": "model", "where": ["outcome=resolved"]}, {"by": "model"},
    {"by": "provider", "kind": "ticket"},
]


@pytest.mark.parametrize("every", [None, "day", "week", "month"])
@pytest.mark.parametrize("request_", OF_SMALL_GROUPS)
def test_many_small_groups_are_ranked_from_the_indexes(store, monkeypatch, every, request_):
    # Hundreds of groups of a few tasks each (by day, a model's tasks of one outcome: one, two, a dozen),
    # their costs tied within a group and with the other outcomes' on the model's day: each group's
    # ranks (p50, p90, p95, p99) are read from the indexes, never by ranking every cost in Python, and
    # equal the Python engine's.
    _write(store, *small_groups_tasks(), [])

    sql_rows, python_rows = _both_from_indexes(store, monkeypatch, every=every, **request_)
    assert sql_rows == python_rows
    sizes = {r["tasks"] for r in python_rows}
    if every == "day" and "," in request_["by"]:
        assert {1, 2} <= sizes and len(python_rows) > 100, sorted(sizes)
    if every is None and request_ == {"by": "model"}:
        assert max(sizes) > 100


@pytest.mark.parametrize("every", [None, "day", "week"])
def test_only_some_groups_are_the_same_rows_and_the_others_are_not_ranked(store, monkeypatch, every):
    # `report(only_groups=...)` (the UI's trends of the groups it draws): the rows of those groups, as
    # the whole report has them, from every engine; the rollups rank no other group's costs.
    from unitcost.report import rollup_sql

    _write(store, *small_groups_tasks(), [])
    ranked: list[tuple[Any, ...]] = []
    from_index = rollup_sql._ranked_from_index

    def recording(execute, order, groups, *args, **kwargs):
        ranked.extend(tuple(k[1:] if order[0] == "bucket" else k) for k, _, _ in groups)
        return from_index(execute, order, groups, *args, **kwargs)

    def key(row: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(v for k, v in row["group"].items() if k != every)

    for request in [*OF_SMALL_GROUPS, {"by": "outcome"}]:
        whole = [row_for_json(r) for r in report(store, every=every, **request)]
        keys = sorted({key(r) for r in whole}, key=str)
        only = keys[::3]  # (the no-task row's key among them when it is first)
        wanted = [r for r in whole if key(r) in only]
        ranked.clear()
        with monkeypatch.context() as m:
            m.setattr(rollup_sql, "_ranked_from_index", recording)
            rows = [row_for_json(r) for r in report(store, every=every, only_groups=only, **request)]
        assert rows == wanted and wanted, request
        assert set(ranked) <= set(only), request
        sql_rows, python_rows = _both(store, monkeypatch, every=every, only_groups=only, **request)
        assert sql_rows == python_rows == wanted, request


@pytest.mark.parametrize("every", [None, "day", "week"])
def test_only_some_attribute_groups_are_the_same_rows_and_the_others_are_not_ranked(store, monkeypatch, every):
    # As above, by a task attribute (the attribute rollups, m020): a group without a value among those asked
    # for (the UI's overview then asks for its drawn groups so) gives the same rows, and no other group's
    # costs are read from the value indexes.
    from unitcost.report import attr_rollup_sql

    _write(store, *attribute_tasks(), [])
    ranked: list[tuple[Any, ...]] = []
    in_order, from_index = attr_rollup_sql._ranked_in_order, attr_rollup_sql._ranked_from_index

    def recording(original):
        def record(execute, name, order, groups, *args, **kwargs):
            ranked.extend(tuple(k[1:] if order[0] == "bucket" else k) for k in groups)
            return original(execute, name, order, groups, *args, **kwargs)
        return record

    def key(row: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(v for k, v in row["group"].items() if k != every)

    for request in [{"by": "customer"}, {"by": "plan"}, {"by": "customer", "where": ["outcome=resolved"]},
                    {"by": "kind,customer"}]:
        whole = [row_for_json(r) for r in report(store, every=every, **request)]
        keys = sorted({key(r) for r in whole}, key=str)
        only = keys[::2]  # (the group without a value among them: it sorts first)
        wanted = [r for r in whole if key(r) in only]
        ranked.clear()
        with monkeypatch.context() as m:
            m.setattr(attr_rollup_sql, "_ranked_in_order", recording(in_order))
            m.setattr(attr_rollup_sql, "_ranked_from_index", recording(from_index))
            rows = [row_for_json(r) for r in report(store, every=every, only_groups=only, **request)]
        assert rows == wanted and wanted, request
        assert set(ranked) <= set(only), request
        sql_rows, python_rows = _both(store, monkeypatch, every=every, only_groups=only, **request)
        assert sql_rows == python_rows == wanted, request

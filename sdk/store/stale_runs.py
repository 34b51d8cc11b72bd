"""Which runs' per-run sums are stale: marks kept by triggers, so a report's freshness check is O(1).

The store writer keeps `run_totals` and `run_sums` in the transaction that writes the calls
(`unitcost.store.run_totals`, `unitcost.store.postgres_writer`). Calls written by anything else (a
test, an import, prune, `unitcost serve` of an older version, a hand-written ``DELETE``) leave those
sums stale until a reader's ``ensure_fresh`` sums the runs again. Counting the calls to find out
(``SELECT COUNT(*) FROM calls ...``) reads a million rows on every report; instead a trigger on
``calls`` puts the run of every row that something other than the writer inserts, changes or deletes
into ``run_sums_dirty``, and ``ensure_fresh`` reads one row of it to know there is nothing to do.

The writer says "the sums of what I write are kept" for its own transaction only, so its rows mark
nothing (no work per row beyond the trigger's condition), and the marks of other writers are never
taken away by it:

- SQLite: a row in ``run_sums_writer``, inserted after ``BEGIN IMMEDIATE`` and deleted before
  ``COMMIT`` (`writer_begins`, `writer_ends`). SQLite has one writer at a time, so no other
  connection ever sees the row.
- PostgreSQL: the transaction-local setting ``unitcost.keeps_sums = on`` (``set_config(..., true)``),
  which ends with the transaction whatever way it ends.

A reader takes the marks away in the transaction that sums their runs again (PostgreSQL: ``DELETE
... RETURNING``, then the sums read in a later statement; SQLite: read, then deleted, in a write
transaction no one else can enter). On PostgreSQL a mark is written with ``ON
CONFLICT DO UPDATE``, so a writer marking a run while a reader takes its mark waits for one or the
other: either the reader's sums see the new calls, or the mark outlives it.
"""

from __future__ import annotations

__all__ = [
    "KEEPS_SUMS", "TAKE_MARKS_SQL", "marks_sql", "postgres_triggers", "rollup_statement_triggers", "sqlite_triggers",
    "writer_begins", "writer_ends",
]

# PostgreSQL: the writer's transaction-local setting (a custom setting needs a dotted name).
KEEPS_SUMS = "unitcost.keeps_sums"
# PostgreSQL: the marks, taken away by the reader that sums their runs again (one statement: no mark slips
# between).
TAKE_MARKS_SQL = "DELETE FROM run_sums_dirty RETURNING run_id"


# The runs whose sums disagree with their calls (or whose calls are gone), for the migration: as
# `unitcost.store.run_totals.STALE_RUNS_SQL`, with NOT EXISTS (an anti-join on both stores; PostgreSQL
# runs a NOT IN over a million ids row by row once they no longer fit in work_mem).
_STALE_RUNS_SQL = (
    "SELECT c.run_id FROM (SELECT run_id, COUNT(*) AS n FROM calls WHERE run_id IS NOT NULL GROUP BY run_id) c "
    "LEFT JOIN (SELECT run_id, SUM(calls) AS n FROM run_totals GROUP BY run_id) t ON t.run_id = c.run_id "
    "LEFT JOIN run_sums s ON s.run_id = c.run_id "
    "WHERE t.n IS NULL OR t.n != c.n OR s.calls IS NULL OR s.calls != c.n "
    "UNION SELECT t.run_id FROM run_totals t WHERE NOT EXISTS (SELECT 1 FROM calls c WHERE c.run_id = t.run_id) "
    "UNION SELECT s.run_id FROM run_sums s WHERE NOT EXISTS (SELECT 1 FROM calls c WHERE c.run_id = s.run_id)"
)


def writer_begins() -> str:
    """SQLite: the statement the writer runs first in its transaction."""
    return "INSERT INTO run_sums_writer (writing) VALUES (1)"


def writer_ends() -> str:
    """SQLite: the statement the writer runs last before COMMIT."""
    return "DELETE FROM run_sums_writer"


def marks_sql(dialect: str) -> list[str]:
    """The tables, and the marks of the runs whose sums disagree with their calls now (the migration)."""
    ignore = "OR IGNORE " if dialect == "sqlite" else ""
    conflict = "" if dialect == "sqlite" else " ON CONFLICT DO NOTHING"
    out = [
        "CREATE TABLE run_sums_dirty (run_id TEXT NOT NULL PRIMARY KEY)",
        f"INSERT {ignore}INTO run_sums_dirty (run_id) SELECT run_id FROM ({_STALE_RUNS_SQL}) AS s{conflict}",
    ]
    if dialect == "sqlite":
        out.insert(1, "CREATE TABLE run_sums_writer (writing INTEGER NOT NULL)")
    return out


def sqlite_triggers() -> list[str]:
    """Per row (SQLite has no statement triggers); the writer's rows stop at the WHEN. An INSERT OR REPLACE
    deletes the row it replaces without a delete trigger, so the row about to be replaced marks its run first."""
    others = "NOT EXISTS (SELECT 1 FROM run_sums_writer)"

    def mark(ref: str) -> str:
        return f"INSERT OR IGNORE INTO run_sums_dirty (run_id) SELECT {ref}.run_id WHERE {ref}.run_id IS NOT NULL;"

    return [
        f"CREATE TRIGGER calls_sums_replace BEFORE INSERT ON calls WHEN {others} BEGIN "
        "INSERT OR IGNORE INTO run_sums_dirty (run_id) SELECT run_id FROM calls "
        "WHERE span_id = NEW.span_id AND run_id IS NOT NULL; END",
        f"CREATE TRIGGER calls_sums_insert AFTER INSERT ON calls WHEN {others} BEGIN {mark('NEW')} END",
        f"CREATE TRIGGER calls_sums_delete AFTER DELETE ON calls WHEN {others} BEGIN {mark('OLD')} END",
        f"CREATE TRIGGER calls_sums_update AFTER UPDATE ON calls WHEN {others} BEGIN {mark('OLD')} {mark('NEW')} END",
    ]


def postgres_triggers() -> list[str]:
    """One function, fired per row unless the writer's setting is on (the WHEN is evaluated without
    calling the function). ``DO UPDATE``, not ``DO NOTHING``: it waits for a reader taking the same mark."""
    def mark(ref: str) -> str:
        return (f"IF {ref}.run_id IS NOT NULL THEN INSERT INTO run_sums_dirty (run_id) VALUES ({ref}.run_id) "
                "ON CONFLICT (run_id) DO UPDATE SET run_id = EXCLUDED.run_id; END IF;")

    return [
        "CREATE FUNCTION calls_sums_mark() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"IF TG_OP IN ('UPDATE', 'DELETE') THEN {mark('OLD')} END IF; "
        f"IF TG_OP IN ('INSERT', 'UPDATE') THEN {mark('NEW')} END IF; RETURN NULL; END $$",
        "CREATE TRIGGER calls_sums AFTER INSERT OR UPDATE OR DELETE ON calls FOR EACH ROW "
        f"WHEN (current_setting('{KEEPS_SUMS}', true) IS DISTINCT FROM 'on') EXECUTE FUNCTION calls_sums_mark()",
    ]


# --- the rollups' marks on PostgreSQL, once a statement ------------------------------------------
# `unitcost.store.rollups.postgres_triggers` marks the task of each runs, steps and run_sums row from a
# PL/pgSQL function called once a row: 10-15 us a row, 20-30 ms of each 2,048-span batch's COPY into
# run_sums (measured). The same marks, from the statement's transition tables in one INSERT each.
_IDENT = "CASE WHEN x.key IS NULL THEN '' ELSE x.kind END, COALESCE(x.key, x.run_id)"


def rollup_statement_triggers() -> list[str]:
    """PostgreSQL: the row triggers of runs, steps and run_sums replaced by statement triggers (outcomes
    keep theirs: few rows, and three ways to name a task)."""
    out = []
    for table in ("runs", "steps", "run_sums"):
        def mark(rows: str, table: str = table) -> str:
            source = f"{rows} x" if table == "runs" else f"{rows} r JOIN runs x ON x.run_id = r.run_id"
            return (f"INSERT INTO rollup_dirty (task_kind, task_key) SELECT DISTINCT {_IDENT} FROM {source} "
                    "ON CONFLICT DO NOTHING;")

        out += [
            f"DROP TRIGGER {table}_rollup ON {table}",
            f"DROP FUNCTION {table}_rollup_mark()",
            f"CREATE FUNCTION {table}_rollup_mark_rows() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"IF TG_OP IN ('UPDATE', 'DELETE') THEN {mark('old_rows')} END IF; "
            f"IF TG_OP IN ('INSERT', 'UPDATE') THEN {mark('new_rows')} END IF; RETURN NULL; END $$",
            f"CREATE TRIGGER {table}_rollup_insert AFTER INSERT ON {table} REFERENCING NEW TABLE AS new_rows "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {table}_rollup_mark_rows()",
            f"CREATE TRIGGER {table}_rollup_update AFTER UPDATE ON {table} REFERENCING OLD TABLE AS old_rows "
            f"NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION {table}_rollup_mark_rows()",
            f"CREATE TRIGGER {table}_rollup_delete AFTER DELETE ON {table} REFERENCING OLD TABLE AS old_rows "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {table}_rollup_mark_rows()",
        ]
    return out

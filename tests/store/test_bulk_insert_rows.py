"""`unitcost.store.bulk.insert_rows` stores exactly what `executemany` stores: columns left out because
every row of a statement holds None there, padding rows, and rows split over several statements."""

from __future__ import annotations

import random
import sqlite3

import pytest

from unitcost.store.bulk import insert_rows, nullable_columns, statement_sizes

_SCHEMA = (
    "CREATE TABLE t (id TEXT PRIMARY KEY, n INTEGER NOT NULL DEFAULT 0, maybe INTEGER, label TEXT, "
    "kept TEXT DEFAULT 'x', price INTEGER)"
)
COLUMNS = ("id", "n", "maybe", "label", "kept", "price")


def _tables() -> tuple[sqlite3.Connection, sqlite3.Connection]:
    ours, theirs = sqlite3.connect(":memory:"), sqlite3.connect(":memory:")
    for conn in (ours, theirs):
        conn.execute(_SCHEMA)
    return ours, theirs


def test_only_nullable_columns_without_a_default_may_be_left_out():
    conn, _ = _tables()
    # `kept` has a default and `n` is NOT NULL: left out they would not be NULL; `id` is the key.
    assert nullable_columns(conn, "t", COLUMNS) == frozenset({2, 3, 5})


@pytest.mark.parametrize("count", [1, 7, 8, 9, 100, 2 * statement_sizes(len(COLUMNS))[-1] + 5])
@pytest.mark.parametrize("nones", ["all", "some", "none"])
def test_the_same_rows_as_executemany(count, nones):
    rng = random.Random(count)

    def value(column: int) -> object:
        if nones == "all" or (nones == "some" and rng.random() < 0.5):
            return None
        return rng.choice([0, 7, -3, 2**62, "", "text"]) if column != 3 else rng.choice(["a", ""])

    rows = [(f"id-{i % (count - 2 or 1)}", i, value(2), value(3), None if nones == "all" else "k", value(5))
            for i in range(count)]  # repeated ids: a later row replaces an earlier one, as executemany does
    ours, theirs = _tables()
    insert_rows(ours, "t", COLUMNS, rows, "INSERT OR REPLACE", nullable_columns(ours, "t", COLUMNS))
    theirs.executemany(f"INSERT OR REPLACE INTO t ({', '.join(COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?)", rows)
    query = "SELECT *, typeof(maybe), typeof(label), typeof(kept), typeof(price) FROM t ORDER BY id"
    assert ours.execute(query).fetchall() == theirs.execute(query).fetchall()


def test_a_row_without_its_first_column_is_refused_before_any_is_written():
    conn, _ = _tables()
    with pytest.raises(ValueError):
        insert_rows(conn, "t", COLUMNS, [("a", 1, None, None, None, None), (None, 2, None, None, None, None)])
    assert conn.execute("SELECT COUNT(*) FROM t").fetchone() == (0,)

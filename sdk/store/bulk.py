"""Writing a batch of rows in one SQLite statement per table.

Python's sqlite3 releases the GIL around every step of a statement (and around compiling one), and
`executemany` steps once per row. On the writer thread each release is a hand-off: while the
application's threads run Python flat out, the writer waits up to the interpreter's switch interval
(5 ms) per busy thread to get the GIL back, so a writer that releases it per row, or per chunk of
rows, falls behind a busy program and its queue fills. One ``INSERT ... SELECT * FROM (VALUES (...),
(...), ...)`` of every row of the batch steps once, so it hands off once.

A statement of a new size must be compiled (tens of ms for a thousand rows), so the rows are padded
with rows of NULLs up to one of a few sizes (powers of two and the halves between them: at most a third
is padding), which sqlite3 keeps compiled; the statement's ``WHERE`` skips the padding.

Binding a None costs Python's sqlite3 module ~5 times an integer (~3,300 instructions on Python 3.11: it
looks for an adapter, and the failed look-up on its protocol type formats an AttributeError it then
discards), and a store row holds many (a call's energy, tier, modifiers, parts and error are usually
NULL): so a column that may be left out (``nullable``: no default but NULL) and holds only None in a
statement's rows is left out of it, and a padding row is NULL only in its first column (0 elsewhere).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Sequence
from functools import lru_cache
from itertools import chain
from operator import itemgetter
from typing import Any

__all__ = ["insert_rows", "nullable_columns", "statement_sizes"]

# SQLite's limit on host parameters: 32,766 since 3.32, 999 before.
_MAX_PARAMETERS = 32_766 if sqlite3.sqlite_version_info >= (3, 32, 0) else 999
_MAX_ROWS = 2048  # rows per statement: a batch of the store processor's size (2,048 spans) at most
_SMALLEST = 8  # padding a handful of rows up to 8 costs less than one more compiled statement


@lru_cache(maxsize=64)
def statement_sizes(columns: int) -> tuple[int, ...]:
    """The row counts statements are compiled for, for a table of this many columns: 8, 12, 16, 24,
    32, 48, ... up to what SQLite's limit on host parameters allows (and at most `_MAX_ROWS`)."""
    most = max(1, min(_MAX_ROWS, _MAX_PARAMETERS // columns))
    sizes = []
    size = _SMALLEST
    while size <= most:
        sizes.append(size)
        if size + size // 2 <= most:
            sizes.append(size + size // 2)
        size *= 2
    return tuple(sizes) or (most,)


@lru_cache(maxsize=512)
def _statement(verb: str, table: str, columns: tuple[str, ...], rows: int) -> str:
    row = f"({', '.join('?' * len(columns))})"
    # Padding rows are NULL in their first column, and no row the writer inserts is (each table's first
    # column is its key or its time): `insert_rows` checks it.
    return (
        f"{verb} INTO {table} ({', '.join(columns)}) "
        f"SELECT * FROM (VALUES {', '.join([row] * rows)}) WHERE column1 IS NOT NULL"
    )


def nullable_columns(conn: sqlite3.Connection, table: str, columns: Sequence[str]) -> frozenset[int]:
    """The positions of ``columns`` that an INSERT may leave out and still store NULL: not the key, not
    NOT NULL, no default."""
    # One row read, not one a column: each row read is a GIL hand-off (see the module's docstring)
    listed = conn.execute(
        'SELECT json_group_array(json_array(name, "notnull", dflt_value IS NOT NULL, pk)) FROM pragma_table_info(?)',
        (table,),
    ).fetchone()[0]
    info = {name: (notnull, has_default, pk) for name, notnull, has_default, pk in json.loads(listed)}
    return frozenset(i for i, name in enumerate(columns) if name in info and not any(info[name]))


_first = itemgetter(0)


def insert_rows(
    conn: sqlite3.Connection, table: str, columns: tuple[str, ...], rows: Sequence[Sequence[Any]],
    verb: str = "INSERT OR REPLACE", nullable: Collection[int] = (),
) -> None:
    """Insert ``rows`` (each with one value per column, the first never None) in one statement, or
    one per `_MAX_ROWS` rows. Rows are inserted in order, so with INSERT OR REPLACE a later row wins
    over an earlier one, as with `executemany`. A column whose position is in ``nullable`` (see
    `nullable_columns`) is left out of a statement whose rows hold only None in it: NULL all the same."""
    if not rows:
        return
    if None in map(_first, rows):  # in C: no Python step per row
        raise ValueError(f"a row for {table} has no {columns[0]}")
    sizes = statement_sizes(len(columns))
    most = sizes[-1]
    for start in range(0, len(rows), most):
        chunk = rows[start : start + most]
        count = len(chunk)
        names = columns
        empty: list[int] = []
        if nullable:
            by_column = list(zip(*chunk, strict=True))  # in C
            nones = (None,) * count  # compared in C, by identity first: far cheaper than count(None)
            empty = [i for i in nullable if by_column[i] == nones]
        if empty:
            keep = [i for i in range(len(columns)) if i not in empty]
            names = tuple([columns[i] for i in keep])
            params = list(chain.from_iterable(zip(*[by_column[i] for i in keep], strict=True)))
        else:
            params = list(chain.from_iterable(chunk))
        size = next(s for s in sizes if s >= count)
        if size > count:  # padding rows: NULL in the first column only, which the statement skips
            params += ([None] + [0] * (len(names) - 1)) * (size - count)
        conn.execute(_statement(verb, table, names, size), params)

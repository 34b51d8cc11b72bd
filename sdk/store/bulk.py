"""Writing many rows in few SQLite statements.

Python's sqlite3 releases the GIL around every step of a statement, and `executemany` steps once per
row. On the exporter thread that is one GIL hand-off per row: while the application's thread runs
Python flat out, each hand-off waits up to the interpreter's switch interval (5 ms) to get the GIL
back, and the exporter falls so far behind that its queue fills and spans are dropped. One
``INSERT ... VALUES (...), (...), ...`` of a few hundred rows steps once, so it hands off once.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

__all__ = ["insert_rows"]

# SQLite's limit on host parameters: 32,766 since 3.32, 999 before.
_MAX_PARAMETERS = 32_766 if sqlite3.sqlite_version_info >= (3, 32, 0) else 999
_MAX_ROWS = 256  # rows per statement: past a few hundred, longer statements gain nothing


@lru_cache(maxsize=256)
def _statement(verb: str, table: str, columns: tuple[str, ...], rows: int) -> str:
    row = f"({', '.join('?' * len(columns))})"
    return f"{verb} INTO {table} ({', '.join(columns)}) VALUES {', '.join([row] * rows)}"


def insert_rows(
    conn: sqlite3.Connection, table: str, columns: tuple[str, ...], rows: Sequence[Sequence[Any]],
    verb: str = "INSERT OR REPLACE",
) -> None:
    """Insert ``rows`` (each with one value per column) in as few statements as SQLite allows. Rows
    are inserted in order, so with INSERT OR REPLACE a later row wins over an earlier one, as with
    `executemany`."""
    most = max(1, min(_MAX_ROWS, _MAX_PARAMETERS // len(columns)))
    start = 0
    while start < len(rows):
        # Full statements, then the rest in power-of-two sizes: a statement of a new size must be
        # compiled (a few ms for hundreds of rows), and these few sizes stay in sqlite3's cache.
        left = len(rows) - start
        size = most if left >= most else 1 << (left.bit_length() - 1)
        chunk = rows[start : start + size]
        conn.execute(_statement(verb, table, columns, size), [value for row in chunk for value in row])
        start += size

"""Bulk outcomes from a ticketing system's export: CSV or JSONL rows of (kind, key, label, success,
value), optionally `task_id` instead of kind+key and `recorded_at` for when the outcome happened.

The whole file goes in one transaction: a bad row stops the import with its line number, and
nothing from that file is kept.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..common.attributes import task_key
from ..common.money import to_pico
from ..common.timewindow import parse_time
from ..record.outcomes import Outcome
from .backend import StoreBackend
from .connect import open_backend

__all__ = ["ImportError_", "import_outcomes"]

_TRUE = {"1", "true", "yes", "y", "t", "success"}
_FALSE = {"0", "false", "no", "n", "f", "failure"}


class ImportError_(ValueError):  # noqa: N801 - `ImportError` is a builtin
    """A row of an outcome file cannot be read; the message names the line."""


def _rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ImportError_(f"{path}:{number}: not JSON ({exc.msg})") from None
                if not isinstance(row, dict):
                    raise ImportError_(f"{path}:{number}: each line must be a JSON object")
                yield number, row
    else:
        reader = csv.DictReader(text.splitlines())
        for number, row in enumerate(reader, 2):  # line 1 is the header
            yield number, {k.strip().lower(): (v.strip() if isinstance(v, str) else v) for k, v in row.items() if k}


def _success(value: Any, where: str) -> bool | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ImportError_(f"{where}: success must be true/false, not {value!r}")


def import_outcomes(
    db: StoreBackend, path: str | Path, *, progress: Callable[[int], None] | None = None
) -> int:
    """Add every outcome of the file; returns how many. Raises ImportError_ on a bad row."""
    path = Path(path)
    records = []
    now = time.time_ns()
    for number, row in _rows(path):
        where = f"{path}:{number}"
        label = row.get("label") or row.get("outcome")
        task_id, kind, key = row.get("task_id") or None, row.get("kind") or None, row.get("key")
        key = None if key in (None, "") else task_key(key)
        if not label:
            raise ImportError_(f"{where}: no label")
        if task_id is None and key is None:
            raise ImportError_(f"{where}: needs a key (with kind) or a task_id")
        success = _success(row.get("success"), where)  # its own message names the place: not wrapped again
        try:
            made = Outcome.make(str(label), success, row.get("value") or None)
        except (ValueError, ArithmeticError) as exc:
            raise ImportError_(f"{where}: {exc}") from None
        recorded = row.get("recorded_at")
        try:
            recorded_ns = parse_time(str(recorded)) if recorded else now
        except ValueError as exc:
            raise ImportError_(f"{where}: recorded_at: {exc}") from None
        records.append(
            (recorded_ns, task_id, kind, key, made.label, int(made.success),
             None if made.value is None else to_pico(made.value))
        )
        if progress is not None:
            progress(1)
    db = open_backend(db)  # an open sqlite_utils.Database is taken too
    with db.transaction():
        db.execute_many(
            "INSERT INTO outcomes (recorded_ns, run_id, kind, key, label, success, value_pico, source) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, 'import')",
            records,
        )
    return len(records)

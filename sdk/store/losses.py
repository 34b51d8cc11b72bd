"""Spans that could not be written, counted where the next writer, `doctor` and reports find them.

When the store refuses to take spans until the program ends (locked, disk full, unreachable), the
count cannot go into the store itself. It goes into a small side file instead: beside an SQLite
store (``unitcost.db.lost``), or, for a store that is not a file, in the per-user state directory
under a name derived from the store's address with its password removed. One JSON line per loss
(``{"ns": ..., "reason": ..., "count": ..., "service": ...}``), appended, created ``0600``.

The next writer moves the lines into the store's ``dropped_spans`` table (in the same transaction as
its batch) and removes the file; until then `doctor` and reports add them to what the table holds.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from .backend import redact_url

__all__ = ["LossFile", "dropped_by_reason", "dropped_spans", "loss_file_for"]

_SUFFIX = ".lost"


def loss_file_for(store: str | os.PathLike[str]) -> LossFile:
    """The side file of the store at ``store`` (a path, or a URL such as ``postgresql://...``)."""
    text = os.fspath(store)
    if "://" not in text:
        path = Path(text)
        return LossFile(path.with_name(path.name + _SUFFIX))
    redacted = redact_url(text)
    digest = hashlib.sha256(redacted.encode()).hexdigest()[:16]
    state = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "unitcost"
    return LossFile(state / f"store-{digest}{_SUFFIX}")


class LossFile:
    """The side file for one store (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def add(self, counts: dict[str, int], service: str = "") -> None:
        """Append ``counts`` (reason -> spans). Raises OSError when even this cannot be written."""
        now = time.time_ns()
        lines = "".join(
            json.dumps({"ns": now, "reason": reason, "count": n, "service": service}) + "\n"
            for reason, n in counts.items() if n > 0
        )
        if not lines:
            return
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, lines.encode())  # one write: concurrent writers' lines do not interleave
        finally:
            os.close(fd)

    def exists(self) -> bool:
        """Whether any loss is recorded here (a cheap check: one stat, and a directory listing only
        when a writer has moved a file aside)."""
        return self.path.exists() or bool(self._claimed())

    def read(self) -> list[tuple[int, str, int, str]]:
        """The losses recorded and not yet moved into the store: (ns, reason, count, service)."""
        found: list[tuple[int, str, int, str]] = []
        for path in self._files():
            found.extend(_parse(path))
        return found

    def take(self) -> tuple[list[tuple[int, str, int, str]], list[Path]]:
        """The recorded losses and the files they came from, renamed to this process's name first
        (a rename is atomic: two writers never both take a file), so lines appended from now on go to
        a new file. Call `done` once they are in the store; if not, the files are taken again later."""
        sources = [self.path] if self.path.exists() else []
        sources += [p for p in self._claimed() if not _alive(p)]  # left by a writer that died
        files: list[Path] = []
        for n, source in enumerate(sources):
            claimed = self.path.with_name(f"{self.path.name}.{os.getpid()}-{time.time_ns()}-{n}")
            try:
                os.rename(source, claimed)
            except OSError:
                continue  # another writer took it
            files.append(claimed)
        rows: list[tuple[int, str, int, str]] = []
        for path in files:
            rows.extend(_parse(path))
        return rows, files

    @staticmethod
    def done(files: Iterable[Path]) -> None:
        for path in files:
            try:
                path.unlink()
            except FileNotFoundError:
                pass

    def _claimed(self) -> list[Path]:
        try:
            return sorted(self.path.parent.glob(self.path.name + ".*"))
        except OSError:
            return []

    def _files(self) -> list[Path]:
        return ([self.path] if self.path.exists() else []) + self._claimed()

    def total(self, since_ns: int | None = None, until_ns: int | None = None) -> int:
        return sum(
            count for ns, _, count, _ in self.read()
            if (since_ns is None or ns >= since_ns) and (until_ns is None or ns < until_ns)
        )


# A store's `execute` (``?`` placeholders): an SQLite connection's or a `StoreBackend`'s.
Execute = Callable[[str, Sequence[Any]], Any]


def dropped_spans(
    execute: Execute, has_table: bool, losses: LossFile | None, since_ns: int | None = None,
    until_ns: int | None = None,
) -> int:
    """How many spans were dropped instead of stored (recorded in [since, until) when given): the
    store's ``dropped_spans`` rows (``has_table``: a store older than that table has none) plus what
    writers counted in the store's loss file and no writer has moved into it yet. The one rule every
    backend's `dropped_spans`, and so every report, uses."""
    pending = 0 if losses is None else losses.total(since_ns, until_ns)
    if not has_table:
        return pending
    clauses, params = ["1 = 1"], []
    if since_ns is not None:
        clauses.append("recorded_ns >= ?")
        params.append(since_ns)
    if until_ns is not None:
        clauses.append("recorded_ns < ?")
        params.append(until_ns)
    row = execute(f"SELECT SUM(count) FROM dropped_spans WHERE {' AND '.join(clauses)}", params).fetchone()
    return int(row[0] or 0) + pending


def dropped_by_reason(execute: Execute, has_table: bool, losses: LossFile | None) -> tuple[dict[str, int], int | None]:
    """`doctor`'s view of the same counts as `dropped_spans`: (spans by reason, when the last drop was
    recorded, or None)."""
    dropped: dict[str, int] = {}
    last_drop_ns = None
    if has_table:
        by_reason = execute("SELECT reason, SUM(count) FROM dropped_spans GROUP BY reason ORDER BY reason", ())
        dropped = {reason: int(count) for reason, count in by_reason}
        last_drop_ns = execute("SELECT MAX(recorded_ns) FROM dropped_spans", ()).fetchone()[0]
    for ns, reason, count, _ in losses.read() if losses is not None else ():
        dropped[reason] = dropped.get(reason, 0) + count
        last_drop_ns = max(last_drop_ns or 0, ns)
    return dropped, last_drop_ns


def _alive(claimed: Path) -> bool:
    """Whether the process that took ``claimed`` (its name ends ``.PID-NS-N``) still runs."""
    try:
        pid = int(claimed.name.rsplit(".", 1)[1].split("-", 1)[0])
    except (IndexError, ValueError):
        return False
    if pid == os.getpid():
        return False  # this process's own, from a batch it could not write: take it again
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _parse(path: Path) -> list[tuple[int, str, int, str]]:
    rows: list[tuple[int, str, int, str]] = []
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return rows
    for line in text.splitlines():
        try:
            item: Any = json.loads(line)
            rows.append((int(item["ns"]), str(item["reason"]), int(item["count"]), str(item.get("service") or "")))
        except (ValueError, KeyError, TypeError):
            continue  # a line cut by a crash mid-write
    return rows

"""Looking at single runs: the recent-runs list, one run's span tree, and outcomes entered by hand."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ..common.attributes import task_key
from ..common.money import from_pico, parse_usd, to_pico
from ..record.outcomes import Outcome, is_success, label_note
from ..store.backend import StoreBackend
from ..store.connect import open_backend
from .errors import ReportError
from .tasks import OutcomeRow, Store, Task, task_identity

__all__ = ["Node", "RunDetail", "add_outcome", "outcome_words", "recent_runs", "show_run"]


def recent_runs(db: StoreBackend, *, limit: int = 20, kind: str | None = None) -> list[dict[str, Any]]:
    """The newest runs, each with its cost, LLM calls and the outcome of its task."""
    store = Store(db)
    tasks = store.tasks()
    where, params = ("WHERE r.kind = ?", [kind]) if kind else ("", [])
    rows = db.execute(
        f"""
        SELECT r.run_id, r.kind, r.key, r.started_ns, r.ended_ns, r.error_type,
               (SELECT COUNT(*) FROM calls c WHERE c.run_id = r.run_id),
               (SELECT SUM(cost_pico) FROM calls c WHERE c.run_id = r.run_id),
               (SELECT SUM(CASE WHEN cost_pico IS NULL THEN 1 ELSE 0 END) FROM calls c WHERE c.run_id = r.run_id),
               (SELECT SUM(COALESCE(cost_pico, 0)) FROM steps s WHERE s.run_id = r.run_id)
                   + COALESCE(r.runtime_cost_pico, 0)
        FROM runs r {where} ORDER BY r.started_ns DESC, r.run_id DESC LIMIT ?
        """,
        [*params, limit],
    ).fetchall()
    result = []
    for run_id, kind_, key, started, ended, error, calls, cost, unpriced, tool_cost in rows:
        task = tasks[task_identity(kind_, key, run_id)]
        outcome = task.outcome
        result.append(
            {
                "task_id": run_id,
                "kind": kind_,
                "key": key,
                "started_ns": started,
                "duration_s": (ended - started) / 1e9,
                "llm_calls": calls,
                "cost_usd": (from_pico(cost) or Decimal(0)) + (from_pico(tool_cost) or Decimal(0)),
                "unpriced_calls": unpriced or 0,
                "error": error,
                "outcome": outcome.label if outcome else None,
                "success": outcome.success if outcome else None,
            }
        )
    return result


@dataclass
class Node:
    """One span of a run's tree. Tokens and cost include the node's descendants, like a profiler."""

    span_id: str
    type: str  # task | step | tool | llm
    name: str
    started_ns: int
    ended_ns: int
    self_cost_pico: int = 0
    unpriced: int = 0
    estimated: int = 0
    input_tokens: int = 0  # all input, as in OpenTelemetry
    output_tokens: int = 0  # all output, reasoning included
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0  # both cache lifetimes (5 minutes and 1 hour)
    reasoning_tokens: int = 0
    error: str | None = None
    children: list[Node] = field(default_factory=list)
    # An LLM call's usage priced apart (Anthropic compaction / advisor iterations), from
    # `calls.usage_parts`: their tokens and cost are already in the call's own.
    usage_parts: list[dict[str, Any]] = field(default_factory=list)

    def total(self, attr: str) -> int:
        return getattr(self, attr) + sum(child.total(attr) for child in self.children)

    @property
    def cost_usd(self) -> Decimal:
        return from_pico(self.total("self_cost_pico")) or Decimal(0)


@dataclass
class RunDetail:
    run_id: str
    kind: str
    key: str | None
    attributes: dict[str, Any]
    tree: Node
    runs_of_task: list[str]
    outcome_history: list[OutcomeRow]
    outcome: OutcomeRow | None


def _resolve_run_id(db: StoreBackend, ref: str, kind: str | None = None) -> str:
    """A task id, a unique prefix of one (at least 4 characters), or a key (its task's latest run), as
    `unitcost outcome` takes them."""
    if kind is None and db.execute("SELECT 1 FROM runs WHERE run_id = ?", [ref]).fetchone():
        return ref
    key = task_key(ref)  # as the SDK stored it: a key past 4096 characters is a prefix and a digest
    # (the latest of runs started together: the one whose id sorts last, as `tasks.Store.tasks` orders
    # them; the CAST: PostgreSQL cannot tell a bare parameter's type in `? IS NULL`)
    by_key = db.execute(
        "SELECT kind, run_id FROM runs WHERE key = ? AND (CAST(? AS TEXT) IS NULL OR kind = ?) "
        "ORDER BY started_ns DESC, run_id DESC",
        [key, kind, kind],
    ).fetchall()
    kinds = sorted({k for k, _ in by_key})
    if len(kinds) > 1:
        raise ReportError(f"key {_shown(key)!r} exists in several kinds ({', '.join(kinds)}): pass --kind")
    if by_key:
        return str(by_key[0][1])
    if kind is not None:
        raise ReportError(f"no run of kind {kind!r} has key {_shown(key)!r} (see `unitcost tasks`)")
    matches = (
        [r[0] for r in db.execute(
            "SELECT run_id FROM runs WHERE run_id >= ? AND run_id < ? LIMIT 2", [ref, ref + "\uffff"]
        )]
        if len(ref) >= 4 else []
    )
    if len(matches) != 1:
        raise ReportError(f"no run with task id or key {_shown(key)!r} (see `unitcost tasks`)")
    return str(matches[0])


def _shown(key: str) -> str:
    """A key in a message: a long one by its start and its digest, not thousands of characters."""
    if len(key) <= 120:
        return key
    digest_at = key.rfind("…#sha256:")
    return key[:60] + key[digest_at:] if digest_at >= 0 else key[:100] + "…"


def show_run(db: StoreBackend, ref: str, *, kind: str | None = None) -> RunDetail:
    """One run's tree, its task's runs and its outcome history. `ref` is a task id (or a unique prefix)
    or a key, whose task's latest run is shown. Reads only what it shows (indexed look-ups), so it
    stays quick on a store of millions of calls."""
    run_id = _resolve_run_id(db, ref, kind)
    kind, key, started, ended, error = db.execute(
        "SELECT kind, key, started_ns, ended_ns, error_type FROM runs WHERE run_id = ?", [run_id]
    ).fetchone()
    # The task: every run of this kind and key (or this run alone), oldest first (then by run id, as
    # reports merge its attributes: `tasks.Store.tasks`).
    if key is None:
        task_runs = db.execute("SELECT run_id, attributes FROM runs WHERE run_id = ?", [run_id]).fetchall()
    else:
        task_runs = db.execute(
            "SELECT run_id, attributes FROM runs WHERE kind = ? AND key = ? ORDER BY started_ns, run_id", [kind, key]
        ).fetchall()
    task = Task(kind, key, started)
    for rid, attrs in task_runs:
        task.run_ids.append(rid)
        if attrs and attrs != "{}":
            task._attribute_json.append(attrs)
    # Its outcomes, as the report joins them: by the id of any of its runs, or by kind and key.
    marks = ", ".join("?" * len(task.run_ids))
    by_key = "OR (run_id IS NULL AND key = ? AND (kind = ? OR kind IS NULL))" if key is not None else ""
    history = [
        OutcomeRow(r[0], r[1], bool(r[2]), r[3], r[4], r[5], r[6], r[7])
        for r in db.execute(
            "SELECT recorded_ns, label, success, value_pico, source, run_id, kind, key FROM outcomes "
            f"WHERE run_id IN ({marks}) {by_key} ORDER BY recorded_ns, id",
            [*task.run_ids, *([key, kind] if key is not None else [])],
        )
    ]
    task.outcome = history[-1] if history else None

    # The tree: this run, the runs nested in it (a task inside a tool...), their steps and calls.
    nodes: dict[str, Node] = {run_id: Node(run_id, "task", kind, started, ended, error=error)}
    parents: dict[str, str | None] = {}
    run_ids = _run_and_nested(db, run_id)
    marks = ", ".join("?" * len(run_ids))
    for sid, parent, kind_, started_, ended_, error_, runtime in db.execute(
        "SELECT run_id, parent_span_id, kind, started_ns, ended_ns, error_type, runtime_cost_pico FROM runs "
        f"WHERE run_id IN ({marks})",
        run_ids,
    ):
        if sid != run_id:
            nodes[sid] = Node(sid, "task", kind_, started_, ended_, error=error_)
            parents[sid] = parent
        nodes[sid].self_cost_pico = runtime or 0  # a [[runtime]] charge for the run's wall time
    for sid, parent, type_, name, started_, ended_, cost, error_ in db.execute(
        "SELECT span_id, parent_span_id, type, name, started_ns, ended_ns, cost_pico, error_type "
        f"FROM steps WHERE run_id IN ({marks})",
        run_ids,
    ):
        nodes[sid] = Node(sid, type_, name, started_, ended_, self_cost_pico=cost or 0, error=error_)
        parents[sid] = parent
    for row in db.execute(
        "SELECT span_id, parent_span_id, model, started_ns, ended_ns, cost_pico, estimated, error_type, "
        "input_tokens + cache_read_tokens + cache_write_tokens + cache_write_1h_tokens, "
        "output_tokens + reasoning_tokens, cache_read_tokens, cache_write_tokens + cache_write_1h_tokens, "
        f"reasoning_tokens, usage_parts FROM calls WHERE run_id IN ({marks})",
        run_ids,
    ):
        sid, parent, model, started_, ended_, cost, estimated, error_, inp, out, cached, written, reasoning, parts = row
        nodes[sid] = Node(
            sid, "llm", model, started_, ended_, self_cost_pico=cost or 0, unpriced=int(cost is None),
            estimated=estimated, input_tokens=inp, output_tokens=out, cache_read_tokens=cached,
            cache_write_tokens=written, reasoning_tokens=reasoning, error=error_,
            usage_parts=json.loads(parts) if parts else [],
        )
        parents[sid] = parent
    for sid, parent in parents.items():
        if parent in nodes:
            nodes[parent].children.append(nodes[sid])
    _keep_subtree(nodes[run_id])
    return RunDetail(run_id, kind, key, task.attributes, nodes[run_id], task.run_ids, history, task.outcome)


def _run_and_nested(db: StoreBackend, run_id: str) -> list[str]:
    """The run and every run nested in it (a task started inside its tool...), level by level.

    One plain statement per level, found by the partial index `runs_parent` (m017; a store not yet
    migrated reads the table once a level, ~20 ms over 100,000 runs), where a recursive WITH made
    SQLite build a throw-away index of the whole table (~0.25 s) on every `unitcost show`."""
    found = [run_id]
    seen = {run_id}
    level = [run_id]
    while level:
        marks = ", ".join("?" * len(level))
        rows = db.execute(f"SELECT run_id FROM runs WHERE parent_run_id IN ({marks})", level).fetchall()
        level = [r[0] for r in rows if r[0] not in seen]
        seen.update(level)
        found.extend(level)
    return found


def _keep_subtree(node: Node) -> None:
    node.children.sort(key=lambda n: n.started_ns)
    for child in node.children:
        _keep_subtree(child)


def add_outcome(
    db: StoreBackend,
    ref: str,
    label: str,
    *,
    kind: str | None = None,
    success: bool | None = None,
    value: object = None,
) -> tuple[str, str | None]:
    """Record an outcome from the command line. REF is a task id or a key.

    Returns (what it was matched to, a warning or None). An unknown key is kept, with a warning: the
    task's spans may not have reached the store yet.
    """
    made = Outcome.make(label, success, value)
    value_pico = None if made.value is None else to_pico(parse_usd(made.value))
    run = db.execute("SELECT run_id, kind, key FROM runs WHERE run_id = ?", [ref]).fetchone()
    warning = None
    if run is not None and kind is None:
        run_id, target_kind, key = run[0], None, None
        matched = f"run {ref}"
    else:
        key = task_key(ref)  # as the SDK stored it: a key past 4096 characters is a prefix and a digest
        kinds = [r[0] for r in db.execute("SELECT DISTINCT kind FROM runs WHERE key = ?", [key])]
        if kind is None and len(kinds) > 1:
            raise ReportError(f"key {_shown(key)!r} exists in several kinds ({', '.join(sorted(kinds))}): pass --kind")
        target_kind = kind if kind is not None else (kinds[0] if kinds else None)
        run_id = None
        matched = f"{target_kind or 'any kind'} key {_shown(key)}"
        if target_kind not in kinds:
            in_kind = f" in kind {kind!r}" if kind else ""
            warning = f"no run has key {_shown(key)!r}{in_kind} yet; the outcome is kept"
    with open_backend(db).transaction():  # (an open sqlite_utils.Database is taken too)
        db.execute(
            "INSERT INTO outcomes (recorded_ns, run_id, kind, key, label, success, value_pico, source) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, 'cli')",
            [time.time_ns(), run_id, target_kind, key, made.label, int(made.success), value_pico],
        )
    return matched, warning


def outcome_words(label: str, success: bool | None) -> tuple[bool, str | None]:
    """Whether `label` counts as a success (an explicit `success` wins), and the one-line note the CLI
    prints when it counts as a failure only because it is not a success word."""
    return is_success(label, success), label_note(label, success)

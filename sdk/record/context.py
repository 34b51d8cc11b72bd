"""The task a piece of code runs in, carried by a context variable.

Context variables follow asyncio tasks and `contextvars.copy_context()`; the span of the task is
kept on the OpenTelemetry context beside it, so other instrumentations nest under it too.
"""

from __future__ import annotations

from contextvars import ContextVar
from decimal import Decimal
from typing import Any

from ..common.errors import internal_error, logger
from .outcomes import Outcome

__all__ = ["TaskRun", "current_run", "current_task", "outcome"]


_NOTHING = Decimal(0)  # a run's spending at its start (a Decimal is immutable: one for every run)


class TaskRun:
    """One run of a task: what ``with unitcost.task(...) as t`` gives and `current_task()` returns.

    ``id`` is the task id shown by ``unitcost tasks`` and accepted by ``unitcost show`` and
    ``record_outcome(task_id=...)``.
    """

    __slots__ = (
        "id", "kind", "key", "attributes", "outcome", "parent", "budget", "on_budget", "spent", "over_budget",
        "__weakref__",
    )

    def __init__(
        self,
        id: str,
        kind: str,
        key: str | None,
        attributes: dict[str, Any],
        parent: TaskRun | None,
        budget: Decimal | None = None,
        on_budget: str = "warn",
    ) -> None:
        self.id = id
        self.kind = kind
        self.key = key
        self.attributes = attributes
        self.outcome: Outcome | None = None
        self.parent = parent
        self.budget = budget  # USD, or None
        self.on_budget = on_budget
        self.spent = _NOTHING  # what this run's priced calls and tools cost so far (budgeted runs only)
        self.over_budget = False

    def set_outcome(self, label: str, success: bool | None = None, value: object = None) -> None:
        """Record this run's outcome; the latest call wins."""
        self.outcome = Outcome.keeping_label(label, success, value)  # a bad value is dropped, the label kept

    def __repr__(self) -> str:
        return f"TaskRun(id={self.id!r}, kind={self.kind!r}, key={self.key!r})"


current_run: ContextVar[TaskRun | None] = ContextVar("unitcost_current_run", default=None)


def current_task() -> TaskRun | None:
    """The run of the innermost task around this code, or None outside any task."""
    return current_run.get()


def outcome(label: str, success: bool | None = None, value: object = None) -> None:
    """Record the outcome of the current task (the innermost ``unitcost.task`` around this code).

    ``label`` is a word such as ``resolved`` or ``escalated``; resolved, success, succeeded,
    completed and passed count as successes unless ``success`` says otherwise. ``value`` is what the
    outcome was worth in USD (revenue, or cost saved). Outside any task this logs a warning and
    does nothing; use `record_outcome` for an outcome that arrives later.
    """
    try:
        run = current_run.get()
        if run is None:
            logger.warning("unitcost.outcome(%r) called outside any task; use record_outcome()", label)
            return
        run.set_outcome(label, success, value)
    except Exception as exc:  # noqa: BLE001
        internal_error("outcome", exc)

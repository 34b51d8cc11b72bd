"""The task a piece of code runs in, carried by a context variable.

Context variables follow asyncio tasks and `contextvars.copy_context()`; the span of the task is
kept on the OpenTelemetry context beside it, so other instrumentations nest under it too.
"""

from __future__ import annotations

from contextvars import ContextVar
from decimal import Decimal
from typing import Any

from ._outcomes import Outcome


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
        self.spent = Decimal(0)  # what this run's priced calls and tools cost so far (budgeted runs only)
        self.over_budget = False

    def set_outcome(self, label: str, success: bool | None = None, value: object = None) -> None:
        """Record this run's outcome; the latest call wins."""
        self.outcome = Outcome.make(label, success, value)

    def __repr__(self) -> str:
        return f"TaskRun(id={self.id!r}, kind={self.kind!r}, key={self.key!r})"


current_run: ContextVar[TaskRun | None] = ContextVar("unitcost_current_run", default=None)


def current_task() -> TaskRun | None:
    """The run of the innermost task around this code, or None outside any task."""
    return current_run.get()

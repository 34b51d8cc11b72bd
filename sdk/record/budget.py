"""Task budgets: ``@unitcost.task(..., budget_usd=0.50)`` warns, or raises if asked, once a run has
spent its budget.

This is the one place where a price is needed on the caller's thread. It costs a dictionary look-up
and a few Decimal multiplications per call, and only inside a task that has a budget: the price
book resolves each (provider, model, price period) once and keeps it.

What happens when a run goes over its budget:
- ``on_budget="warn"`` (the default): one warning (Python ``warnings`` and the ``unitcost`` logger)
  naming the task, its budget and what it has spent. The program carries on.
- ``on_budget="raise"``: the same warning, and the NEXT LLM call or tool call of that run raises
  `BudgetExceeded` before it is made, so no more money is spent. The call that crossed the line has
  already been paid for, so its result is returned as usual.
"""

from __future__ import annotations

import logging
import time
import warnings
from decimal import Decimal
from typing import TYPE_CHECKING

from ..common.errors import UnitcostError
from ..common.money import from_pico
from ..pipeline.config import pipeline

if TYPE_CHECKING:
    from ..pricing.usage import TokenUsage
    from .context import TaskRun

__all__ = ["BudgetExceeded", "BudgetWarning", "charge", "charge_call", "check_before_spending"]

logger = logging.getLogger("unitcost")


class BudgetExceeded(UnitcostError):
    """A task with ``on_budget="raise"`` tried to spend more after going over its budget."""

    def __init__(self, run: TaskRun) -> None:
        self.task_id = run.id
        self.kind = run.kind
        self.key = run.key
        self.budget_usd = run.budget
        self.spent_usd = run.spent
        super().__init__(
            f"task {run.kind}{' ' + run.key if run.key else ''} (task id {run.id}) has spent "
            f"${run.spent:.6f} of its ${run.budget} budget"
        )


class BudgetWarning(UserWarning):
    """A task went over its budget (``on_budget="warn"``)."""


def check_before_spending(run: TaskRun | None) -> None:
    """Raise `BudgetExceeded` if this run is over its budget and was asked to raise."""
    if run is not None and run.over_budget and run.on_budget == "raise":
        raise BudgetExceeded(run)


def charge(run: TaskRun, amount: Decimal) -> None:
    run.spent += amount
    if not run.over_budget and run.budget is not None and run.spent > run.budget:
        run.over_budget = True
        message = str(BudgetExceeded(run))
        logger.warning("unitcost: %s", message)
        warnings.warn(message, BudgetWarning, stacklevel=4)


def charge_call(run: TaskRun, provider: str, model: str, usage: TokenUsage, service_tier: str | None) -> None:
    """Price one finished LLM call against the run's budget (unpriced calls cost nothing here), its
    parts priced apart (an advisor's iterations by the advisor's model) as the store prices them."""
    from ..pricing.usage import Buckets, usage_parts  # here: `import unitcost` needs no pricing (start-up time)

    attrs = usage.span_attributes()
    buckets = Buckets.from_span_attributes(attrs)
    now = time.time_ns()
    cost = pipeline().prices.call_cost_pico(provider, model, now, now, buckets, usage_parts(attrs), service_tier)
    if cost is not None:
        charge(run, from_pico(cost[0]) or Decimal(0))

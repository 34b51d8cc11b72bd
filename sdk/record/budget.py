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
import warnings
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ..common import attributes as A
from ..common.errors import UnitcostError
from ..common.money import from_pico
from ..pipeline.config import pipeline

if TYPE_CHECKING:
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


def charge_call(run: TaskRun, span: Any) -> None:
    """Charge the run for one finished LLM call: its ended span, priced by `unitcost.pricing.call`
    exactly as the store writer prices it (the same attributes, times, tier and price modifiers, so
    a Batch API call at its batch price and a model priced by the hour for its duration). An unpriced
    call costs nothing here, as it costs nothing in the store's sums."""
    # Here: `import unitcost` needs no pricing (start-up time).
    from ..pricing.call import call_terms, price_call

    attrs = getattr(span, "attributes", None)
    if not attrs:  # a span that records nothing: nothing to price
        return
    error_type = attrs.get(A.ERROR_TYPE)
    buckets, provider, model, response_model, tier, _, context, usage_known, parts = call_terms(attrs, error_type)
    started = span.start_time or 0
    cost, _, _, _ = price_call(
        pipeline().prices, provider, model, started, span.end_time or started, buckets, parts,
        response_model=response_model, tier=tier, context=context, usage_known=usage_known,
    )
    spent = from_pico(cost)
    if spent is not None:
        charge(run, spent)

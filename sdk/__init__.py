"""unitcost: what one successful outcome of your LLM agent costs.

Example::

    import unitcost

    unitcost.configure(service_name="support-bot")
    unitcost.instrument()

    @unitcost.task("support_ticket", key=lambda ticket: ticket.id)
    def handle(ticket):
        ...
        unitcost.outcome("resolved", value=12.0)

Then ``unitcost report`` prints the cost per resolved ticket.
"""

from ._budget import BudgetExceeded, BudgetWarning
from ._config import configure, flush, shutdown
from ._context import TaskRun, current_task
from ._errors import ConfigurationError, StoreError, UnitcostError
from ._instrument import instrument, uninstrument
from ._outcomes import outcome, record_outcome
from ._record import record_usage
from ._scopes import step, task, tool
from .version import __version__


def __getattr__(name: str) -> object:
    # `unitcost.query` loads the report engine (sqlite-utils...) only when it is used.
    if name == "query":
        import importlib

        return importlib.import_module(".query", __name__)
    raise AttributeError(f"module 'unitcost' has no attribute {name!r}")


__all__ = [
    "BudgetExceeded",
    "BudgetWarning",
    "ConfigurationError",
    "StoreError",
    "TaskRun",
    "UnitcostError",
    "__version__",
    "configure",
    "current_task",
    "flush",
    "instrument",
    "outcome",
    "query",
    "record_outcome",
    "record_usage",
    "shutdown",
    "step",
    "task",
    "tool",
    "uninstrument",
]

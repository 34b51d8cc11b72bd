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

from typing import TYPE_CHECKING

from .common.errors import ConfigurationError, StoreError, UnitcostError
from .pipeline.config import configure, flush, shutdown
from .record.budget import BudgetExceeded, BudgetWarning
from .record.context import TaskRun, current_task, outcome
from .record.instrument import instrument, uninstrument
from .record.outcomes import record_outcome
from .record.scopes import session, step, task, tool
from .version import __version__

if TYPE_CHECKING:
    from .record.usage_api import record_usage


def __getattr__(name: str) -> object:
    # `unitcost.query` loads the report engine (sqlite-utils...) only when it is used, and
    # `record_usage` the LLM-call machinery (wrapt): the `unitcost` command needs neither.
    if name == "query":
        import importlib

        return importlib.import_module(".query", __name__)
    if name == "record_usage":
        from .record.usage_api import record_usage

        globals()["record_usage"] = record_usage  # found directly from now on
        return record_usage
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
    "session",
    "shutdown",
    "step",
    "task",
    "tool",
    "uninstrument",
]

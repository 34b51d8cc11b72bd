"""unitcost's exceptions, and the rule for its own errors on an instrumented path.

Exception tree::

    UnitcostError
    ├── ConfigurationError   configure() was given something it cannot use
    └── StoreError           the database cannot be opened or is not a unitcost store

Only ``configure()`` and the CLI raise these at the user. Anywhere else, an error inside unitcost is
logged once and swallowed, so the program being observed runs on with less telemetry. Under
``UNITCOST_STRICT=1`` (set by unitcost's own test suite) such errors are raised instead, so bugs show.
"""

from __future__ import annotations

import logging
import os

__all__ = ["ConfigurationError", "StoreError", "UnitcostError", "internal_error", "logger", "strict"]

logger = logging.getLogger("unitcost")


class UnitcostError(Exception):
    """Base class of every exception unitcost raises."""


class ConfigurationError(UnitcostError):
    """``configure()`` was given a setting it cannot use (a bad path, an unreadable price file...)."""


class StoreError(UnitcostError):
    """The store cannot be opened, or the file is not a unitcost database."""


_already_logged: set[str] = set()


def strict() -> bool:
    return os.environ.get("UNITCOST_STRICT", "") not in ("", "0", "false", "False")


def internal_error(where: str, exc: BaseException) -> None:
    """Handle an error raised by unitcost's own code: log it once per place, or raise when strict."""
    if strict():
        raise exc
    if where not in _already_logged:
        _already_logged.add(where)
        logger.warning(
            "unitcost: internal error in %s; your code still runs, with less telemetry", where, exc_info=exc
        )

"""The error every report raises when asked for something it cannot give; a module of its own so that
commands which only look up one run (`unitcost show`) need not load the report engine to catch it."""

from __future__ import annotations

__all__ = ["ReportError"]


class ReportError(ValueError):
    """A report was asked for with options that cannot be met (the message says which)."""

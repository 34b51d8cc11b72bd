"""Reading the time bounds users type: ISO dates and times (UTC unless they say otherwise) or
relative spans such as ``7d``, ``24h``, ``30m`` and ``2w`` counted back from now."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

__all__ = ["parse_time"]

_RELATIVE = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_NS_LIMIT = 2**63 - 1
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_time(text: str, *, now_ns: int | None = None) -> int:
    """A time bound as Unix nanoseconds. Raises ValueError with a message fit for the user."""
    now = datetime.fromtimestamp((now_ns if now_ns is not None else time.time_ns()) / 1e9, tz=UTC)
    match = _RELATIVE.match(text)
    if match:
        amount, unit = int(match.group(1)), match.group(2)
        try:
            moment = now - timedelta(**{_UNITS[unit]: amount})
        except OverflowError:  # further back than any date: from the beginning of what the store holds
            return -_NS_LIMIT
    else:
        try:
            moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(
                f"cannot read {text!r} as a time: use an ISO date or time (2026-11-01, "
                "2026-11-01T09:00) in UTC, or a span back from now such as 7d, 24h or 30m"
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
    ns = int(moment.timestamp() * 1_000_000_000)
    # The store keeps Unix nanoseconds in SQLite's 64-bit integers: years 1677 to 2262.
    return max(-_NS_LIMIT, min(ns, _NS_LIMIT))
